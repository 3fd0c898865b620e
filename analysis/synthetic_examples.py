"""Synthetic progress measures (Nanda phases) and per-example traces with known answers.

``nanda_trace(seed)``: progress measures whose rates of change switch smoothly (logistic
corners in log step) at known boundaries ``b1 < b2 < b3`` (memorization / circuit formation /
cleanup, then nearly flat), with autocorrelated AR(1) noise: not the straight-line,
independent-noise model the phase segmenter fits.

``corrupted_examples(seed)``: per-example correctness arrays (names as in
``phasewatch.analysis.memorization``) where clean examples are learned early and each
corrupted example i is memorized at a known step ``tau_i`` (then stays correct), with a
few forgetting flips before; ``random_target_examples(seed)``: per-example NLL on random
targets with a known number of memorized examples.

Example:
    >>> t, truth = nanda_trace(0)
    >>> sorted(truth) == ["b1", "b2", "b3", "val_midpoint"]
    True
"""
from __future__ import annotations

import math

import numpy as np

from .memtrace import MemoryTrace

__all__ = ["nanda_trace", "score_phase_oracle", "corrupted_examples", "random_target_examples"]


# total change of each measure over memorization / circuit formation / cleanup / after
# (log10 for losses and the weight norm), from the signatures of docs/science.md
PHASE_CHANGES = {
    "train/loss": (-2.5, -0.5, -1.0, 0.0), "val/loss": (0.5, 0.0, -2.5, 0.0),
    "circuit/excluded_loss": (-1.5, 1.0, 0.2, 0.0), "circuit/restricted_loss": (-0.1, -0.6, -1.5, 0.0),
    "weights/sum_sq": (0.15, -0.25, -0.35, -0.02), "circuit/gini": (0.0, 0.1, 0.4, 0.0),
    "train/acc": (0.95, 0.0, 0.0, 0.0), "val/acc": (0.0, 0.03, 0.95, 0.0)}
START = {"train/loss": 0.6, "val/loss": 0.6, "circuit/excluded_loss": 0.6, "circuit/restricted_loss": 0.6,
         "weights/sum_sq": 2.5, "circuit/gini": 0.2, "train/acc": 0.02, "val/acc": 0.02}
LINEAR = ("circuit/gini", "train/acc", "val/acc")


def _softplus(z):
    return np.logaddexp(0.0, z)


def _smooth_ramps(u, edges, changes, width):
    """Sum over phases of ``change / length`` per decade, switched on and off along logistics.

    The rate of change is constant inside a phase and moves to the next phase's rate along a
    logistic of ``width`` decades centred on each boundary: smooth corners, no kinks.
    """
    rates = [c / (b - a) for c, a, b in zip(changes, edges[:-1], edges[1:])]
    y = rates[0] * (u - u[0])
    for c, r0, r1 in zip(edges[1:-1], rates[:-1], rates[1:]):
        y += (r1 - r0) * width * (_softplus((u - c) / width) - _softplus((u[0] - c) / width))
    return y


def _ar1(rng, n, phi, sd):
    e = np.empty(n)
    e[0] = rng.normal(0, sd)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + rng.normal(0, sd * np.sqrt(1 - phi * phi))
    return e


def nanda_trace(seed: int, phi: float = 0.5, noise: float = 0.05, every: int = 20):
    """Progress measures with known phase boundaries; returns ``(MemoryTrace, truth)``.

    Boundaries ``b1 < b2 < b3`` (ends of memorization, circuit formation, cleanup) are
    log-uniform; each measure's rate of change in log10(step) switches between phases along
    a logistic (``_smooth_ramps``), with AR(1) noise (lag-1 correlation ``phi``, ``noise``
    decades for the log measures, a fifth of it for Gini and accuracies). The circuit
    measures and the weight norm are sampled at probe steps (8 per decade from 50, at most
    500 apart, every 200 from b2 / 1.5 to b3); losses and accuracies every ``every`` steps.
    ``truth`` holds b1, b2, b3 and the val-accuracy midpoint (middle of cleanup).
    """
    rng = np.random.default_rng(seed)
    b1 = float(10 ** rng.uniform(np.log10(250), np.log10(600)))
    b2 = b1 * float(rng.uniform(4, 8))
    b3 = b2 * float(rng.uniform(1.6, 2.5))
    budget = int(b3 * rng.uniform(1.6, 2.5))
    width = float(rng.uniform(0.02, 0.05))
    geo = np.round(np.geomspace(50, budget, int(8 * np.log10(budget / 50)) + 1) / 50) * 50
    probes = np.unique(np.concatenate([[0], geo, np.arange(0, budget + 1, 500),
                                       np.arange(200 * np.ceil(b2 / 300), b3, 200)])).astype(int)
    probes = probes[probes <= budget]
    evals = np.arange(0, budget + 1, every)
    edges = np.log10([50, b1, b2, b3, budget])
    out = {}
    for name, changes in PHASE_CHANGES.items():
        s = evals if name.startswith(("train/", "val/")) else probes
        u = np.log10(np.maximum(s, 50))
        sd = noise if name not in LINEAR else noise / 5
        y = START[name] + _smooth_ramps(u, edges, changes, width) + _ar1(rng, s.size, phi, sd)
        out[name] = (s, np.clip(y, 0, 1) if name.endswith("acc") else y if name in LINEAR else 10 ** y)
    return MemoryTrace(out), {"b1": b1, "b2": b2, "b3": b3, "val_midpoint": float(np.sqrt(b2 * b3))}


def score_phase_oracle(seeds, n_boot: int = 200, check=None) -> dict:
    """How many true boundaries of ``nanda_trace(seed)`` are named, and how many lie in their interval.

    ``check(trace, result)``, when given, is called on every seed's phase result.
    """
    from .phases import nanda_phases_from_trace
    n = named = covered = 0
    for seed in seeds:
        t, truth = nanda_trace(seed)
        r = nanda_phases_from_trace(t, val_midpoint=truth["val_midpoint"], n_boot=n_boot)
        if check is not None:
            check(t, r)
        got = {b["name"]: b for b in r["boundaries"] if b["name"]}
        for name, key in (("memorization_end", "b1"), ("circuit_formation_end", "b2"), ("cleanup_end", "b3")):
            n += 1
            if name in got:
                named += 1
                covered += got[name]["low"] <= truth[key] <= got[name]["high"]
    return {"boundaries": n, "named": named, "covered": covered}


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
