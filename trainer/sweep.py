"""``phasewatch sweep SPEC.yaml --out DIR``: a grid of ordinary runs on Dask distributed.

The driver validates every trial's ``phasewatch fit`` arguments with fit's own parser, records
the trials in ``DIR/sweep.sqlite`` (``phasewatch.analysis.sweep_state``), and submits the
unfinished ones to a Dask cluster: a ``LocalCluster`` of one single-threaded worker process per
core by default, or the scheduler at ``--scheduler ADDRESS``. Each trial runs inside a
long-lived worker (``sweep_trial.run_trial``: torch is imported once per worker, not once
per trial). A trial that raises, or whose worker dies, is recorded with its error and
submitted again (resuming from its last checkpoint) up to ``--retries`` times; the others go
on. Only the driver writes the state, so ``DIR`` needs no locking beyond SQLite's own.

Example:
    $ phasewatch sweep sweeps/modadd_wd_frac.yaml --out sweeps/out/wd_frac
    $ phasewatch sweep sweeps/modadd_wd_frac.yaml --out sweeps/out/wd_frac   # again: no-op
    $ phasewatch sweep SPEC.yaml --out /shared/wd --scheduler tcp://10.0.0.5:8786
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import uuid
import warnings
from collections import Counter
from typing import Optional

from phasewatch.analysis.sweep_state import SweepState, is_sweep_dir

from .sweep_spec import SpecError, SweepSpec, did_you_mean, load_spec
from .sweep_trial import run_trial
from .threads import available_cores

__all__ = ["validate", "run_sweep", "DEFAULT_RETRIES"]

DEFAULT_RETRIES = 2


class _Parsed(Exception):
    pass


def _fit_parser():
    """``phasewatch fit``'s own parser, raising instead of exiting on a bad argument."""
    from .cli import PhaseCLI
    from .data import TaskDataModule
    from .module import PhaseModule

    class _ParseOnly(PhaseCLI):
        def before_instantiate_classes(self) -> None:
            raise _Parsed(self.parser)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _ParseOnly(PhaseModule, TaskDataModule, args=["fit"], auto_configure_optimizers=False,
                       seed_everything_default=False)
    except _Parsed as parsed:
        parser = parsed.args[0]
    for p in (parser, parser._subcommands_action._name_parser_map["fit"]):
        p.exit_on_error = False
    return parser


def validate(spec: SweepSpec, params: list[dict]) -> None:
    """Raise ``SpecError`` (one line) for a key fit does not know or a value it rejects."""
    parser = _fit_parser()
    known = set(parser.parse_args(["fit", "--config", spec.base]).fit.keys())
    for key in spec.all_keys():
        if key not in known and not any(key.startswith(k + ".") for k in known):
            raise SpecError(f"{spec.source}: unknown config key {key!r}{did_you_mean(key, known)}")
    for p in params:
        try:
            parser.parse_args(["fit", *spec.fit_args(p)])
        except Exception as e:  # jsonargparse's ArgumentError, or a base config that fails
            msg = " ".join(str(e).split())
            raise SpecError(f"{spec.source}: trial {p}: {msg}") from None


def _one_line(err: BaseException) -> str:
    if type(err).__name__ == "KilledWorker":
        return "KilledWorker: the worker process died while running this trial"
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text}"[:500]


def _client(scheduler: Optional[str], workers: Optional[int]):
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler)
    # a trial whose worker dies comes back to the driver at once, which records and resubmits it;
    # and no MALLOC_TRIM_THRESHOLD_ or stack profiler in the workers (see sweep_trial); the
    # scheduler and nannies read these when created, and the caller's own config is left as it was
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                          "distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(n_workers=workers or available_cores(), threads_per_worker=1,
                               processes=True, dashboard_address=":0",
                               silence_logs=logging.CRITICAL)
    return Client(cluster)


def _cores_per_worker(client) -> dict:
    """Each worker's share of its host's cores (workers on a host split its cores)."""
    info = client.scheduler_info()["workers"]
    per_host = Counter(w["host"] for w in info.values())
    cores = client.run(available_cores)
    return {addr: max(1, cores.get(addr, 1) // per_host[w["host"]]) for addr, w in info.items()}


def _cores_here(shares: dict) -> int:
    from distributed import get_worker
    return shares.get(get_worker().address, 1)


def _trial_on_worker(sweep_dir, trial_id, fit_args, name, shares):
    return run_trial(sweep_dir, trial_id, fit_args, name, cores=_cores_here(shares))


class _Progress:
    """The trials bar: done / running / failed, ETA, and the classes found so far."""

    def __init__(self, total: int, done: int, classes: Counter) -> None:
        from tqdm import tqdm
        self.bar = tqdm(total=total, initial=done, unit="trial", file=sys.stderr, dynamic_ncols=True,
                        disable=None)
        self.classes, self.failed = classes, 0

    def update(self, running: int, advance: int = 0) -> None:
        cls = ", ".join(f"{c} {n}" for c, n in self.classes.most_common())
        self.bar.set_postfix_str(f"running {running} failed {self.failed} | {cls or 'no classes yet'}")
        self.bar.update(advance)

    def close(self) -> None:
        self.bar.close()


def run_sweep(spec_path: str, out: str, scheduler: Optional[str] = None,
              workers: Optional[int] = None, retries: Optional[int] = None) -> int:
    """Run (or continue) the sweep; return 0 when every trial is done, 1 if some failed.

    The config keys and values are checked on a worker (``validate``) while the others import
    torch and Lightning, so the driver never imports them: the workers need them for their
    trials anyway, and on 2 cores the driver's import (~6 s) would come before any trial."""
    spec = load_spec(spec_path)
    params = spec.trial_params()
    retries = retries if retries is not None else (spec.retries if spec.retries is not None
                                                   else DEFAULT_RETRIES)
    out = os.path.abspath(out)
    if is_sweep_dir(out):  # a re-run with every trial done needs no cluster
        with contextlib.closing(SweepState(out)) as st:
            if not _todo(st, params):
                print(f"sweep {spec.name}: all {len(params)} trials done -> {out}", file=sys.stderr)
                return 0
    from distributed import wait

    client = _client(scheduler, workers)
    state = None
    try:
        checked = client.submit(validate, spec, params, pure=False)
        warm = [client.submit(_import_fit, workers=[address], allow_other_workers=True, pure=False)
                for address in client.scheduler_info()["workers"]]  # each worker (or, if it died, any)
        wait([checked, *warm])
        checked.result()  # a SpecError comes back here
        state = SweepState(out)
        todo = _todo(state, params)
        state.set_info("spec", {"source": os.path.abspath(spec_path), "name": spec.name,
                                "base": spec.base, "swept": spec.swept_keys()})
        done = len(params) - len(todo)
        print(f"sweep {spec.name}: {len(params)} trials, {done} done, {len(todo)} to run -> {out}",
              file=sys.stderr)
        return _drive(client, spec, state, todo, done, retries, out)
    finally:
        if state is not None:
            state.close()
        cluster = client.cluster
        client.close()
        if cluster is not None and not scheduler:
            cluster.close()


def _import_fit() -> None:
    from . import cli  # noqa: F401 - torch and Lightning, imported once per worker


def _todo(state: SweepState, params: list[dict]) -> list:
    """This spec's trials not yet done (recording any the state does not hold yet)."""
    return [t for t in state.trials(state.add_trials(params)) if t.status != "done"]


def _drive(client, spec, state, todo, done, retries, out) -> int:
    from distributed import wait
    from distributed.utils import TimeoutError as DaskTimeout

    shares = _cores_per_worker(client)
    progress = _Progress(done + len(todo), done,
                         Counter(t.run_class for t in state.trials() if t.status == "done"))
    futures, attempts = {}, Counter()

    def submit(trial) -> None:
        attempts[trial.id] += 1
        state.mark(trial.id, "running", new_attempt=True)
        key = f"{spec.name}-{trial.id}-{uuid.uuid4().hex[:8]}"
        fut = client.submit(_trial_on_worker, out, trial.id, spec.fit_args(trial.params), spec.name,
                            shares, key=key, pure=False)
        futures[fut] = trial

    for t in todo:
        submit(t)
    try:
        while futures:
            try:
                finished = wait(list(futures), timeout=2, return_when="FIRST_COMPLETED").done
            except (DaskTimeout, TimeoutError):
                finished = set()
            for fut in finished:
                trial = futures.pop(fut)
                if fut.status == "finished":
                    res = fut.result()
                    state.mark(trial.id, "done", run_dir=os.path.relpath(res["run_dir"], out),
                               run_class=res["run_class"])
                    progress.classes[res["run_class"]] += 1
                    progress.bar.write(f"trial {trial.id} {trial.params}: {res['run_class']} "
                                       f"({'trained' if res['trained'] else 'already finished'}, "
                                       f"{res['seconds']:.0f} s)", file=sys.stderr)
                    progress.update(_running(client, futures), advance=1)
                    continue
                err = _one_line(fut.exception())
                progress.bar.write(f"trial {trial.id} {trial.params} attempt {attempts[trial.id]}: "
                                   f"{err}", file=sys.stderr)
                if attempts[trial.id] <= retries:
                    state.mark(trial.id, "pending", error=err)
                    submit(trial)
                else:
                    state.mark(trial.id, "failed", error=err)
                    progress.failed += 1
                    progress.update(_running(client, futures), advance=1)
            progress.update(_running(client, futures))
    finally:
        progress.close()
    failed = [t for t in state.trials([t.id for t in todo]) if t.status == "failed"]
    for t in failed:
        print(f"failed: {t.id} {t.params} after {t.attempts} attempts: {t.error}", file=sys.stderr)
    print(f"sweep {spec.name}: {len(todo) - len(failed)} trials done now, {len(failed)} failed; "
          f"diagram: phasewatch aggregate {out}", file=sys.stderr)
    return 1 if failed else 0


def _running(client, futures) -> int:
    keys = {f.key for f in futures}
    try:
        return sum(1 for ks in client.processing().values() for k in ks if k in keys)
    except (OSError, socket.error):
        return 0
