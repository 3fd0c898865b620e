"""PhaseMonitor on real Lightning training (built-in x+y task, real TraceLogger / SQLite store).

The run: embedding MLP, p=59, frac 0.9 (SCIENCE.md: comprehension, memorizes ~180, generalizes
~540-580) -- the quickest built-in run that generalizes.
"""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from phasewatch.analysis import analyze_run, load_run
from phasewatch.analysis.watch import live_events
from phasewatch.callbacks import PhaseMonitor, TraceLogger, default_callbacks, dense_requested

STEPS = 900


class DenseProbe(pl.Callback):
    """Records the dense flag the monitor exposes, at every validation (after the monitor)."""

    def __init__(self):
        self.seen = []

    def on_validation_end(self, trainer, pl_module):
        self.seen.append((int(trainer.global_step), dense_requested(trainer)))


def fit(tmp_path, callbacks, steps=STEPS, logger=True):
    from phasewatch.trainer.data import TaskDataModule
    from phasewatch.trainer.module import PhaseModule
    pl.seed_everything(0)
    torch.set_num_threads(1)
    dm = TaskDataModule("x+y", p=59, frac=0.9, seed=0)
    module = PhaseModule(dm.task, lr=3e-3, weight_decay=1.0)
    lg = TraceLogger(str(tmp_path / "runs"), name="pm") if logger else False
    trainer = pl.Trainer(max_steps=steps, val_check_interval=20, check_val_every_n_epoch=None,
                         log_every_n_steps=20, logger=lg, callbacks=callbacks,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, enable_checkpointing=False, accelerator="cpu")
    trainer.fit(module, datamodule=dm)
    return trainer


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pm_full")
    mon, probe = PhaseMonitor(every=20, wandb=False), DenseProbe()
    trainer = fit(tmp, [mon, probe])
    return trainer, mon, probe


def test_online_events_equal_offline_analysis(full_run):
    trainer, mon, _ = full_run
    run_dir = trainer.logger.log_dir
    offline = analyze_run(run_dir)
    with load_run(run_dir) as run:
        online = {e["name"]: e for e in run.events() if e["payload"].get("source") == "PhaseMonitor"}
        assert run.meta["phasewatch"]["run_class"] == offline.run_class == "comprehension"
    assert set(online) == {"memorization", "generalization"}
    for name in ("memorization", "generalization"):
        assert online[name]["step"] == offline.event(name).step
        # the interval is the one known at detection time (the offline one sees later samples)
        assert online[name]["payload"]["low"] <= online[name]["step"] <= online[name]["payload"]["high"]
    # detected within the confirmation window: the step is interpolated inside its bracket of
    # evaluations; 2 more evaluations after the bracket's end (40 steps) + the check cadence
    gen = online["generalization"]
    lo, hi = gen["payload"]["evidence"]["bracket"]
    assert lo < gen["step"] <= hi and hi - lo == 20
    assert hi + 40 <= gen["payload"]["detected_at"] <= hi + 40 + 20
    assert 500 <= gen["step"] <= 700 and online["memorization"]["step"] < 250
    # every event once: online ones, then the final-only ones (transition fits), no duplicates
    with load_run(run_dir) as run:
        names = [e["name"] for e in run.events()]
    assert len(names) == len(set(names)) and "generalization_midpoint" in names
    assert (trainer.logger.log_dir + "/analysis/analysis.json") and mon.result.run_class == "comprehension"


def test_dense_flag_on_during_the_transition_only(full_run):
    _, mon, probe = full_run
    gen = mon.logged["generalization"]
    dense = [s for s, d in probe.seen if d]
    assert dense, "the dense flag never went up"
    assert min(dense) < gen                      # up while val accuracy climbs
    assert max(dense) <= gen + 60 + 20 + mon.dense_after
    assert not any(d for s, d in probe.seen if s < 100)  # not before memorization


def test_stop_after_generalization_saves_steps(tmp_path, full_run):
    trainer_full, mon_full, _ = full_run
    mon = PhaseMonitor(every=20, stop_after_generalization=40, wandb=False)
    trainer = fit(tmp_path, [mon])
    gen = mon.logged["generalization"]
    assert gen == mon_full.logged["generalization"]          # same seed, same trace
    assert trainer.global_step == mon.stopped_at
    # confirmed 2-3 evaluations (40-60 steps) after the interpolated step, then stop once 40
    # steps past it, at the next check
    assert gen + 40 <= mon.stopped_at <= gen + 60 + 40 + 20
    assert STEPS - trainer.global_step >= 150
    steps, val = load_run(trainer.logger.log_dir).series("val/acc")
    assert steps[-1] == trainer.global_step and val[-1] >= 0.99
    assert load_run(trainer.logger.log_dir).meta["phasewatch_stopped"]["generalization"] == gen


def test_without_trace_logger_uses_callback_metrics(tmp_path):
    mon = PhaseMonitor(every=20, stop_after_generalization=0, wandb=False)
    trainer = fit(tmp_path, [mon], logger=False)
    assert 500 <= mon.logged["generalization"] <= 700
    assert mon.result is not None and mon.result.event("generalization").step == mon.logged["generalization"]
    assert trainer.global_step == mon.stopped_at


def test_default_set_stands_down_for_a_user_monitor(tmp_path):
    user = PhaseMonitor(every=20, wandb=False)
    default = [c for c in default_callbacks(examples=False) if isinstance(c, PhaseMonitor)][0]
    assert default.default and not user.default and default.state_key != PhaseMonitor(every=100).state_key
    fit(tmp_path, [default, user], steps=60)
    assert user.active and not default.active and default.checks == 0 and user.checks >= 2


@pytest.mark.parametrize("kwargs, bad", [({"every": 0}, "every"), ({"every": 2.5}, "every"),
                                         ({"stop_after_generalization": -1}, "stop_after_generalization"),
                                         ({"confirm": 2}, "confirm"), ({"dense_rise": 1.5}, "dense_rise")])
def test_bad_arguments_name_the_value(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        PhaseMonitor(**kwargs)


def test_live_events_confirmation_window():
    from phasewatch.analysis.memtrace import MemoryTrace
    s = np.arange(0, 700, 20)
    val = (s >= 600).astype(float)
    for last, expect in ((620, False), (640, False), (660, True)):
        keep = s <= last
        t = MemoryTrace({"train/acc": (s[keep], np.ones(keep.sum())), "val/acc": (s[keep], val[keep])})
        names = [e.name for e in live_events(t)[1]]
        assert ("generalization" in names) is expect, last


class Crash(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 400:
            raise RuntimeError("simulated crash at step 400")


def test_resume_after_a_crash_logs_each_event_once(tmp_path, full_run):
    """Memorization (step 180) is detected at 240, after the checkpoint (200), and written; the crash
    comes at 400. The resumed run (monitor state of step 200) ends with the uninterrupted run's
    events, each once (the monitor takes stored events as logged; the store also keys events
    by (step, name))."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from phasewatch.trainer.data import TaskDataModule
    from phasewatch.trainer.module import PhaseModule
    ckpt_dir = tmp_path / "ckpt"

    def trainer_for(version, callbacks):
        lg = TraceLogger(str(tmp_path / "runs"), name="pm", version=version)
        return pl.Trainer(max_steps=STEPS, val_check_interval=20, check_val_every_n_epoch=None,
                          log_every_n_steps=20, logger=lg, enable_progress_bar=False,
                          enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
                          callbacks=[ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=200,
                                                     save_last=True), *callbacks])

    pl.seed_everything(0)
    torch.set_num_threads(1)
    dm = TaskDataModule("x+y", p=59, frac=0.9, seed=0)
    first = trainer_for("v1", [PhaseMonitor(every=20, wandb=False), Crash()])
    with pytest.raises(RuntimeError, match="simulated crash"):
        first.fit(PhaseModule(dm.task, lr=3e-3, weight_decay=1.0), datamodule=dm)
    mon = PhaseMonitor(every=20, wandb=False)
    second = trainer_for("v1", [mon])
    second.fit(PhaseModule(dm.task, lr=3e-3, weight_decay=1.0), datamodule=dm,
               ckpt_path=str(ckpt_dir / "last.ckpt"))
    with load_run(second.logger.log_dir) as run:
        online = [(e["name"], e["step"]) for e in run.events() if e["payload"].get("source") == "PhaseMonitor"]
    _, mon_full, _ = full_run
    assert sorted(online) == sorted((k, v) for k, v in mon_full.logged.items()
                                    if k in ("memorization", "generalization"))


def test_a_failed_read_of_the_live_store_delays_the_stop_but_does_not_cancel_it(tmp_path, monkeypatch,
                                                                                full_run):
    """An I/O error on one live read (seen on a real run, with another process opening the
    store) costs one check: generalization is still found and the run still stops."""
    import phasewatch.analysis.watch as watch
    from phasewatch.analysis.store import TraceStoreError

    real, calls = watch.read_live_trace, []

    def flaky(*args, **kwargs):  # the third read fails as the real one did: disk I/O error
        calls.append(1)
        if len(calls) == 3:
            raise TraceStoreError("trace.sqlite: read failed (disk I/O error)")
        return real(*args, **kwargs)

    monkeypatch.setattr(watch, "read_live_trace", flaky)
    mon = PhaseMonitor(every=20, stop_after_generalization=40, wandb=False)
    with pytest.warns(RuntimeWarning, match="reading it again at the next check"):
        trainer = fit(tmp_path, [mon])
    assert mon.failure is None and len(calls) > 3
    assert mon.logged["generalization"] == full_run[1].logged["generalization"]
    assert trainer.global_step == mon.stopped_at < STEPS
