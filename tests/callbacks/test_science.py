"""Science check on real grokking runs (SCIENCE.md section 2), read back from the trace store.

Slow: config A (embedding MLP, p=59, frac 0.5, lr 3e-3, wd 1, full batch; with these callbacks
val acc >= 0.99 at ~3100 steps), 3500 steps, every 50. Measured here: restricted loss < 1 at
1600 while val loss < 1 only at 2300; excluded loss 0.0006 -> 2.9 between memorization and
grokking; sum_sq 4047 at memorization, peak 5131, 3758 at the end; the key frequencies present
at grokking all persist (new ones keep joining as more neurons become single-frequency);
``circuit/ipr_mean`` 0.066 at init, 0.076 at memorization (150), 0.65 at grokking (3050), 0.71
at the end, rising steadily in between.
Fast: the same model at frac 0.9 ("comprehension": memorize at ~200, val acc >= 0.99 at ~580),
800 steps, every 40: the same orderings in miniature (restricted-before-val at threshold 0.1);
IPR 0.257 at memorization (200), 0.680 at generalization (600), 0.766 at 800.
"""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from phasewatch.analysis import load_run
from phasewatch.callbacks import (CircuitCheckpoint, ExampleTracker, FourierProbe, TraceLogger,
                                  WeightNormMonitor)
from phasewatch.trainer.data import TaskDataModule
from phasewatch.trainer.module import PhaseModule


def _stays(steps, values, thr):
    """First step from which ``values`` stay >= thr (None if never)."""
    below = np.flatnonzero(values < thr)
    if len(below) == 0:
        return int(steps[0])
    return int(steps[below[-1] + 1]) if below[-1] + 1 < len(steps) else None


def _grok_run(root, steps, frac, every):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread is faster, and immune to busy neighbours
    try:
        return _fit(root, steps, frac, every)
    finally:
        torch.set_num_threads(threads)


def _fit(root, steps, frac, every):
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    dm = TaskDataModule("x+y", p=59, frac=frac, seed=0, steps_per_epoch=steps)
    module = PhaseModule(dm.task, model="embedding_mlp", lr=3e-3, weight_decay=1.0)
    cad = f"every:{every}"
    cbs = [WeightNormMonitor(cad), ExampleTracker(cad),
           CircuitCheckpoint([FourierProbe()], cadence=cad, on_error="raise")]
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, callbacks=cbs,
                         logger=TraceLogger(str(root), name="grok"), limit_val_batches=0,
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    return load_run(trainer.logger.log_dir)


def check_orderings(run, min_gap, loss_thrs=(1.0, 0.1)):
    steps, train_acc = run.series("examples/train/acc")
    _, val_acc = run.series("examples/val/acc")
    t_mem, t_gen = _stays(steps, train_acc, 0.99), _stays(steps, val_acc, 0.99)
    assert t_mem is not None and t_gen is not None and t_gen - t_mem >= min_gap, (t_mem, t_gen)
    rs, restricted = run.series("circuit/restricted_loss")
    es, excluded = run.series("circuit/excluded_loss")
    vs, val_loss = run.series("examples/val/loss")
    assert rs[0] == 0 and es[0] == 0  # logged from the start (K empty -> plain definitions)
    # restricted loss falls before val loss does (first step below each threshold after t_mem)
    for thr in loss_thrs:
        t_r = int(rs[np.flatnonzero((rs >= t_mem) & (restricted < thr))[0]])
        t_v = int(vs[np.flatnonzero((vs >= t_mem) & (val_loss < thr))[0]])
        assert t_r < t_v, (thr, t_r, t_v)
    # excluded loss rises between memorization and generalization
    window = (es >= t_mem) & (es <= t_gen)
    low = excluded[window].min()
    at_gen = excluded[es == t_gen][0]
    assert es[window][excluded[window].argmin()] < t_gen and at_gen > 10 * low, (low, at_gen)
    # key frequencies found at grokking persist to the end
    ks, masks = run.arrays("circuit/key_freqs")
    after = masks[ks >= t_gen].astype(bool)
    assert after[0].sum() >= 1 and (after >= after[0]).all(), np.argwhere(after)
    # Doshi et al.: the neurons' input weights turn Fourier-sparse as the model generalizes
    ss, ipr = run.series("circuit/ipr_mean")
    at_mem, at_gen = ipr[ss == t_mem][0], ipr[ss == t_gen][0]
    assert 2 * at_mem < at_gen < ipr[-1], (at_mem, at_gen, ipr[-1])
    return t_mem, t_gen


def test_orderings_fast_comprehension_run(tmp_path):
    run = _grok_run(tmp_path, steps=800, frac=0.9, every=40)
    # no grokking delay here: both losses fall together to ~1 (restricted < 1 at 420, val at
    # 380), but the restricted loss reaches 0.1 long before the val loss (440 vs 600)
    check_orderings(run, min_gap=100, loss_thrs=(0.1,))


@pytest.mark.slow
def test_orderings_on_a_grokking_run(tmp_path):
    run = _grok_run(tmp_path, steps=3500, frac=0.5, every=50)
    t_mem, t_gen = check_orderings(run, min_gap=1000)
    ws, sum_sq = run.series("weights/sum_sq")
    # weight norm falls from memorization to the end (after a rise while memorizing)
    at_mem = sum_sq[ws == t_mem][0]
    assert sum_sq[-1] < at_mem and sum_sq[-1] < 0.8 * sum_sq[ws >= t_mem].max()
    assert (np.diff(sum_sq[ws >= t_gen]) < 0).all()
