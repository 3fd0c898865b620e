"""phasewatch's SGLD LLC estimator next to devinterp's, on the same model, data and settings.

    python scripts/llc_vs_devinterp.py                       # the regular model only (d/2 known)
    python scripts/llc_vs_devinterp.py --run RUN --step 4000  # plus one weight snapshot of RUN

Needs devinterp importable (1.x: ``estimate_learning_coeff_with_summary`` + ``SGLD``; 2.x:
``devinterp.slt.llc.llc``), best in a separate venv: ``python -m venv /tmp/di && /tmp/di/bin/pip
install torch "devinterp<2" && /tmp/di/bin/pip install --no-deps -e . && /tmp/di/bin/pip install
pytorch-lightning scipy pyyaml 'jsonargparse[signatures]'``. Cases: (a) least squares with d = 11 parameters (n = 1,000, known LLC
d/2 = 5.5; eps 3e-4, gamma 1, 4 chains x 400 steps, first 100 discarded, as
tests/callbacks/test_llc.py); (b) a snapshot of a ``phasewatch fit`` run on its training set
(eps 1e-4, gamma 100, 4 chains x 200 steps, first 50 discarded, batches of 512, as
``llc_series``). Both estimators get nbeta = n / log n, the same batches in the same order and
the same number of SGLD steps (devinterp counts burn-in apart from the draws). Prints one line
per estimator and case: mean, sd over chains (ddof 1), per-chain values, seconds (one torch\nthread).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import statistics
import sys
import time

import torch

from phasewatch.callbacks.llc import estimate_llc, fitted_least_squares


def regular_case(n: int = 1000):
    """The least-squares model of tests/callbacks/test_llc.py (d = 11) at its fitted weights."""
    lin, x, y = fitted_least_squares(n, 10, 0)
    per_sample = lambda m, xb, yb: (m(xb)[:, 0] - yb) ** 2  # noqa: E731
    settings = dict(lr=3e-4, localization=1.0, chains=4, draws=400, burn_in=100, batch_size=n)
    return lin, x, y, per_sample, settings


def snapshot_case(run: str, step: int):
    """A ``phasewatch fit`` run's model at its weight snapshot ``step``, on its training set."""
    from phasewatch.callbacks.snapshots import list_snapshots, load_snapshot
    from phasewatch.trainer.llc_snapshots import load_run_module

    steps, paths = list_snapshots(run)
    if step not in steps:
        sys.exit(f"--step {step}: {run} has snapshots at {steps}")
    module = load_run_module(run)
    state = {k: torch.from_numpy(v) for k, v in load_snapshot(paths[steps.index(step)]).items()}
    module.model.load_state_dict(state)
    per_sample = lambda m, xb, yb: module.loss_fn(m(xb), yb, reduction="none")  # noqa: E731
    settings = dict(lr=1e-4, localization=100.0, chains=4, draws=200, burn_in=50, batch_size=512)
    return module.model, module.task.train_x, module.task.train_y, per_sample, settings


def ours(model, x, y, per_sample, s):
    batches = [(x[i:i + s["batch_size"]], y[i:i + s["batch_size"]])
               for i in range(0, len(x), s["batch_size"])]
    est = estimate_llc(model, lambda m, b: per_sample(m, *b).mean(), batches, n=len(x),
                       lr=s["lr"], localization=s["localization"], chains=s["chains"],
                       draws=s["draws"], burn_in=s["burn_in"])
    return list(est.chains), ""


def devinterp_1(model, x, y, per_sample, s):
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x, y), batch_size=s["batch_size"], shuffle=False)
    res = estimate_learning_coeff_with_summary(
        model, loader, evaluate=lambda m, b: per_sample(m, *b).mean(), sampling_method=SGLD,
        optimizer_kwargs=dict(lr=s["lr"], localization=s["localization"],
                              nbeta=len(x) / math.log(len(x))),
        num_chains=s["chains"], num_draws=s["draws"] - s["burn_in"],
        num_burnin_steps=s["burn_in"], seed=0, device="cpu", verbose=False)
    return [res[f"llc-chain/{i}"] for i in range(s["chains"])], ""


def devinterp_2(model, x, y, per_sample, s):
    """2.x takes token sequences only: each row's ``input_ids`` is [i, i] (the example index),
    and the loss looks the example up, one 'token' loss per row. Its ``llc_mean`` averages the
    loss over every step, burn-in included; the returned chains drop the burn-in like ours."""
    from datasets import Dataset
    from devinterp.slt.llc import llc

    ds = Dataset.from_dict({"input_ids": [[i, i] for i in range(len(x))]}).with_format("torch")
    loss = lambda m, ids: per_sample(m, x[ids[:, 0]], y[ids[:, 0]])[:, None]  # noqa: E731
    nbeta = len(x) / math.log(len(x))
    res = llc(model, ds, {}, lr=s["lr"], n_beta=nbeta, loss_fn=loss,
              localization=s["localization"], num_chains=s["chains"],
              num_draws=s["draws"] - s["burn_in"], num_burnin_steps=s["burn_in"],
              batch_size=s["batch_size"], shuffle=False, device="cpu",
              num_init_loss_batches=math.ceil(len(x) / s["batch_size"]))
    trace = res.loss_trace.values[:, s["burn_in"]:]
    chains = [nbeta * (float(c.mean()) - float(res.init_loss)) for c in trace]
    return chains, f"(its llc_mean, burn-in included: {float(res.llc_mean):.3f})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a phasewatch fit run directory with weight snapshots")
    ap.add_argument("--step", type=int, help="the snapshot step of --run")
    args = ap.parse_args(argv)
    if (args.run is None) != (args.step is None):
        ap.error("give --run and --step together")
    try:
        version = importlib.metadata.version("devinterp")
        import devinterp  # noqa: F401
    except (ImportError, importlib.metadata.PackageNotFoundError):
        print("devinterp is not importable here: pip install 'devinterp<2' (or '>=2') into a "
              "separate venv with phasewatch (--no-deps -e .), then rerun with that python")
        return 2
    torch.set_num_threads(1)
    theirs = devinterp_1 if int(version.split(".")[0]) < 2 else devinterp_2
    cases = [("regular d=11 (LLC 5.5)", regular_case())]
    if args.run:
        cases.append((f"{args.run} @ {args.step}", snapshot_case(args.run, args.step)))
    for name, (model, x, y, per_sample, s) in cases:
        for label, fn in (("phasewatch", ours), (f"devinterp {version}", theirs)):
            t0 = time.perf_counter()
            chains, note = fn(model, x, y, per_sample, s)
            print(f"{name:28s} {label:16s} llc {statistics.mean(chains):8.3f} +- "
                  f"{statistics.stdev(chains):6.3f}  chains {[round(c, 2) for c in chains]}  "
                  f"{time.perf_counter() - t0:6.1f} s {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
