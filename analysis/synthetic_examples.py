"""Synthetic progress measures (Nanda phases) and per-example traces with known answers.

``nanda_trace(seed)``: piecewise-linear (in step) log excluded / restricted loss, log
sum of squared weights, Gini and log val loss with boundaries ``b1 < b2 < b3``
(memorization / circuit formation / cleanup, then flat), plus noise.

``corrupted_examples(seed)``: per-example correctness arrays (names as in
``phasewatch.analysis.memorization``) where clean examples are learned early and each
corrupted example i is memorized at a known step ``tau_i`` (then stays correct), with a
few forgetting flips before; ``random_target_examples(seed)``: per-example NLL on random
targets with a known number of memorized examples.

Example:
    >>> t, truth = nanda_trace(0)
    >>> sorted(truth) == ["b1", "b2", "b3"]
    True
"""
from __future__ import annotations

import math

import numpy as np

from .memtrace import MemoryTrace

__all__ = ["nanda_trace", "corrupted_examples", "random_target_examples"]


def _pw(steps, knots, levels):
    return np.interp(steps, knots, levels)


def nanda_trace(seed: int, budget: int = 20000, every: int = 50, noise: float = 0.02):
    """Progress measures with known phase boundaries; returns ``(MemoryTrace, truth)``."""
    rng = np.random.default_rng(seed)
    b1 = float(rng.uniform(1000, 2000))
    b2 = float(rng.uniform(6000, 9500))
    b3 = b2 + float(rng.uniform(2500, 4500))
    s = np.arange(0, budget + 1, every)
    k = [0, b1, b2, b3, budget]
    series = {
        "circuit/excluded_loss": 10 ** (_pw(s, k, [0.6, -1.0, -0.2, 1.0, 1.05])),
        "circuit/restricted_loss": 10 ** (_pw(s, k, [0.8, 0.7, 0.2, -2.0, -2.05])),
        "weights/sum_sq": 10 ** (_pw(s, k, [2.5, 2.7, 2.35, 1.8, 1.78])),
        "circuit/gini": _pw(s, k, [0.2, 0.2, 0.33, 0.8, 0.81]),
        "val/loss": 10 ** (_pw(s, k, [0.6, 1.4, 1.3, -1.8, -1.85])),
        "train/loss": 10 ** (_pw(s, k, [0.6, -3.0, -3.1, -5.0, -5.0])),
    }
    out = {}
    for name, v in series.items():
        if name == "circuit/gini":
            out[name] = (s, v + rng.normal(0, noise * 0.5, s.size))
        else:
            out[name] = (s, v * 10 ** rng.normal(0, noise, s.size))
    acc_t = np.clip(_pw(s, [0, b1 * 0.7, budget], [0.02, 1.0, 1.0]), 0, 1)
    acc_v = np.clip(_pw(s, [0, b2, b3, budget], [0.02, 0.05, 1.0, 1.0]), 0, 1)
    out["train/acc"] = (s, acc_t)
    out["val/acc"] = (s, acc_v)
    return MemoryTrace(out), {"b1": b1, "b2": b2, "b3": b3}


def corrupted_examples(seed: int, n_train: int = 400, xi: float = 0.3, n_classes: int = 10,
                       budget: int = 3000, every: int = 20, flips: float = 0.02):
    """Per-example traces for a corrupted-label run; returns ``(MemoryTrace, truth)``.

    Clean example i becomes correct at ``c_i`` ~ logU(30, 200); corrupted example i is
    memorized at ``tau_i`` ~ logU(300, 2000) and stays correct; before that it is correct
    w.r.t. its assigned label only by chance flips (probability ``flips`` per eval), and
    correct w.r.t. its TRUE label once the rule is learned (after 200).
    """
    rng = np.random.default_rng(seed)
    steps = np.arange(0, budget + 1, every)
    corrupted = np.zeros(n_train, dtype=bool)
    corrupted[rng.choice(n_train, int(round(xi * n_train)), replace=False)] = True
    learn = 10 ** rng.uniform(math.log10(30), math.log10(200), n_train)
    tau = 10 ** rng.uniform(math.log10(300), math.log10(2000), n_train)
    S = steps[:, None]
    correct = np.where(corrupted[None, :], S >= tau[None, :], S >= learn[None, :])
    noise = rng.random(correct.shape) < flips
    noise[:, ~corrupted] = False
    before = S < tau[None, :]
    correct = correct | (noise & before)
    correct_true = np.where(corrupted[None, :], (S >= 200) & ~correct, correct)
    # p(assigned label): high when correct, low otherwise
    p_label = np.where(correct, rng.uniform(0.7, 1.0, correct.shape), rng.uniform(0.0, 0.2, correct.shape))
    loss = -np.log(np.maximum(p_label, 1e-6))
    arrays = {
        "examples/train/correct": (steps, correct.astype(np.uint8)),
        "examples/train/correct_true": (steps, correct_true.astype(np.uint8)),
        "examples/train/loss": (steps, loss.astype(np.float32)),
        "examples/train/p_true": (steps, p_label.astype(np.float32)),
        "examples/train/corrupted": (np.array([0]), corrupted[None, :].astype(np.uint8)),
    }
    acc = correct.mean(1)
    val = np.clip((steps >= 200) * 0.9 - np.maximum(0, steps - 800) / budget * 0.3, 0, 1)
    series = {"train/acc": (steps, acc), "val/acc": (steps, val),
              "train/acc_corrupted": (steps, correct[:, corrupted].mean(1)),
              "train/acc_clean": (steps, correct[:, ~corrupted].mean(1))}
    t_corr = tau[corrupted]
    truth = {"tau": np.where(corrupted, tau, learn), "corrupted": corrupted,
             "t50": float(np.quantile(t_corr, 0.5)), "t90": float(np.quantile(t_corr, 0.9)),
             "val_peak": 800}
    return MemoryTrace(series, arrays, meta={"model/n_params": 1000}), truth


def random_target_examples(seed: int, n: int = 500, vocab: int = 16, out_len: int = 4,
                           n_params: int = 5000, budget: int = 2000, every: int = 50):
    """Per-example NLL (nats, mean over ``out_len`` positions) on random targets.

    Example i becomes fully memorized (NLL ~ 0) at a random step, others stay at chance
    (NLL = out_len * ln vocab). Returns ``(MemoryTrace, truth)`` with the final bits.
    """
    rng = np.random.default_rng(seed)
    steps = np.arange(0, budget + 1, every)
    at = rng.uniform(100, 3 * budget, n)               # about 1/3 memorized by the end
    chance = out_len * math.log(vocab)
    nll = np.where(steps[:, None] >= at[None, :], 1e-3, chance * rng.uniform(0.98, 1.05, (steps.size, n)))
    arrays = {"examples/train/loss": (steps, (nll / out_len).astype(np.float32))}
    bits_final = float(np.sum(np.maximum(0.0, out_len * math.log2(vocab) - nll[-1] / math.log(2))))
    meta = {"task/random_targets": True, "task/n_classes": vocab, "task/out_len": out_len,
            "model/n_params": n_params}
    return MemoryTrace({"train/acc": (steps, (steps[:, None] >= at[None, :]).mean(1))}, arrays, meta), \
        {"bits_final": bits_final, "bits_per_param": bits_final / n_params}
