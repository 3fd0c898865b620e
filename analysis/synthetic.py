"""Synthetic traces with known answers: the test oracle of the analyzer.

Transitions are logistic on the log10-step axis, ``lo + (hi-lo) / (1 + exp(-(x-x0)/w))``;
accuracies get binomial noise of a finite dataset. ``make_run(kind, seed)`` returns a
:class:`SyntheticRun` whose ``truth`` holds the expected class, flags and event steps:
``memorization`` / ``generalization`` (noiseless curve reaches the threshold), and
``generalization_onset`` / ``_midpoint`` / ``_completion`` (10/50/90% of the final rise).

Kinds: ``grokking`` (optionally with the symmetry plateau val acc ~ frac), ``comprehension``,
``memorization`` and ``plateau`` (controls: val at chance / at the training fraction),
``confusion``, ``noise`` (flat noisy control), ``ungrokking``, ``semi_grokking``,
``slingshot`` (grokking + loss spikes), ``diverged``.

Example:
    >>> r = make_run("grokking", seed=0)
    >>> r.truth["run_class"], sorted(r.trace.names())[:2]
    ('grokking', ['train/acc', 'train/loss'])
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .memtrace import MemoryTrace

__all__ = ["SyntheticRun", "KINDS", "CONTROLS", "make_run", "sample_steps", "logistic", "crossing_step"]

KINDS = ("grokking", "plateau_grokking", "comprehension", "memorization", "plateau", "confusion",
         "noise", "ungrokking", "semi_grokking", "slingshot", "diverged")
CONTROLS = ("memorization", "plateau", "confusion", "noise", "comprehension")


@dataclass(frozen=True)
class SyntheticRun:
    kind: str
    seed: int
    trace: MemoryTrace
    truth: dict = field(default_factory=dict)


def logistic(steps, lo: float, hi: float, x0: float, w: float) -> np.ndarray:
    """``lo + (hi-lo) * sigmoid((log10(step) - x0) / w)``; step 0 counts as 0.5."""
    x = np.log10(np.maximum(np.asarray(steps, dtype=float), 0.5))
    return lo + (hi - lo) / (1.0 + np.exp(-np.clip((x - x0) / w, -60, 60)))


def crossing_step(lo: float, hi: float, x0: float, w: float, level: float) -> float:
    """Step at which the noiseless logistic reaches ``level`` (between lo and hi)."""
    frac = (level - lo) / (hi - lo)
    return 10 ** (x0 + w * math.log(frac / (1 - frac)))


def sample_steps(budget: int, scheme: str, rng: np.random.Generator, every: int = 10,
                 per_decade: int = 60) -> np.ndarray:
    """Evaluation steps: ``linear`` (every N), ``log`` (log-spaced), ``irregular`` (jittered gaps)."""
    if scheme == "linear":
        return np.arange(0, budget + 1, every, dtype=np.int64)
    if scheme == "log":
        n = int(per_decade * math.log10(budget)) + 1
        return np.unique(np.concatenate([[0], np.geomspace(1, budget, n).astype(np.int64)]))
    if scheme == "irregular":
        gaps = rng.integers(1, 2 * every, size=2 * budget // every + 10)
        s = np.concatenate([[0], np.cumsum(gaps)])
        return s[s <= budget].astype(np.int64)
    raise ValueError(f"unknown sampling scheme {scheme!r}; use linear, log or irregular")


def _binom(p: np.ndarray, n: int, rng) -> np.ndarray:
    return rng.binomial(n, np.clip(p, 0.0, 1.0)) / n


def _loss_from_acc(acc: np.ndarray, n_classes: int, rng) -> np.ndarray:
    base = math.log(n_classes)
    return np.maximum(base * (1.0 - acc) ** 1.5 + 1e-4, 1e-7) * np.exp(rng.normal(0, 0.05, acc.size))


def make_run(kind: str, seed: int, *, threshold: float = 0.99, scheme: str | None = None,
             n_eval: int = 2000, n_classes: int = 59, frac: float = 0.5,
             duplicate: bool | None = None) -> SyntheticRun:
    """One synthetic run of ``kind`` (see module docstring) with its known answers."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; choose from {KINDS}")
    rng = np.random.default_rng(seed)
    scheme = scheme or ("linear", "log", "irregular")[seed % 3]
    chance = 1.0 / n_classes
    xm = rng.uniform(1.7, 2.5)                       # train midpoint: 50 .. 300 steps
    wm = rng.uniform(0.03, 0.08)
    wg = rng.uniform(0.02, 0.08)
    truth: dict = {"flags": [], "events": {}}
    gen = None                                       # (lo, hi, x0, w) of the final val rise
    val_plateau = chance
    train_hi = 1.0
    if kind in ("grokking", "plateau_grokking", "slingshot", "ungrokking", "diverged"):
        xg = xm + rng.uniform(0.9, 1.6)
        if kind == "plateau_grokking":
            val_plateau = frac
        gen = (val_plateau, 1.0, xg, wg)
        truth["run_class"] = "grokking"
    elif kind == "comprehension":
        xg = xm + rng.uniform(0.05, 0.35)
        gen = (chance, 1.0, xg, wg)
        truth["run_class"] = "comprehension"
    elif kind == "semi_grokking":
        xg = xm + rng.uniform(1.0, 1.5)
        gen = (chance, rng.uniform(0.45, 0.8), xg, wg)
        truth["run_class"] = "memorization"
        truth["flags"].append("semi_grokking")
    elif kind in ("memorization", "plateau"):
        if kind == "plateau":
            val_plateau = frac
        truth["run_class"] = "memorization"
    elif kind in ("confusion", "noise"):
        train_hi = rng.uniform(0.2, 0.6) if kind == "confusion" else chance
        truth["run_class"] = "confusion"
    x_end = (gen[2] + 0.8) if gen is not None else xm + rng.uniform(1.4, 2.0)
    budget = int(10 ** x_end)
    steps = sample_steps(budget, scheme, rng, every=max(5, budget // 2000))
    train_p = logistic(steps, chance, train_hi, xm, wm) if kind != "noise" else np.full(steps.size, 0.3)
    val_p = np.full(steps.size, chance)
    if val_plateau != chance:
        val_p = logistic(steps, chance, val_plateau, xm, wm)
    if gen is not None:
        val_p = val_p + logistic(steps, 0.0, gen[1] - gen[0], gen[2], gen[3])
    if kind == "ungrokking":
        xu = math.log10(crossing_step(*gen, threshold)) + rng.uniform(0.3, 0.5)
        val_p = val_p - logistic(steps, 0.0, 0.5, xu, 0.03)
        truth["run_class"] = "memorization"  # val reached but did not stay: final state
        truth["flags"].append("ungrokking")
        truth["events"]["ungrokking"] = crossing_step(0, 0.5, xu, 0.03, 0.11)
    train_acc = _binom(train_p, n_eval, rng)
    val_acc = _binom(val_p, n_eval, rng)
    train_loss = _loss_from_acc(train_p, n_classes, rng)
    val_loss = _loss_from_acc(val_p, n_classes, rng)
    if train_hi >= threshold:
        truth["events"]["memorization"] = crossing_step(chance, train_hi, xm, wm, threshold)
    if gen is not None:
        lo, hi, x0, w = gen
        if hi >= threshold and kind != "ungrokking":
            truth["events"]["generalization"] = crossing_step(lo, hi, x0, w, threshold)
        for name, k in (("onset", -math.log(9)), ("midpoint", 0.0), ("completion", math.log(9))):
            truth["events"][f"generalization_{name}"] = 10 ** (x0 + k * w)
    if kind == "ungrokking":
        truth["reached"] = crossing_step(*gen, threshold)
        for name in ("onset", "midpoint", "completion"):   # the last change is the fall
            truth["events"].pop(f"generalization_{name}")
    if kind == "slingshot":
        after = np.flatnonzero(steps > 10 ** (xm + 0.3))
        picks = np.sort(rng.choice(after[5:-10], size=2, replace=False))
        while picks[1] - picks[0] < 12:
            picks = np.sort(rng.choice(after[5:-10], size=2, replace=False))
        train_loss[picks] *= 10 ** rng.uniform(1.5, 3.0, size=2)
        truth["flags"].append("slingshot")
        truth["spikes"] = steps[picks].tolist()
    if kind == "diverged":
        d = int(rng.integers(steps.size // 2, steps.size - 5))
        train_loss[d:] = np.nan
        train_loss[d + 1:] = np.inf
        truth["flags"].append("diverged")
        truth["events"]["diverged"] = int(steps[d])
    series = {"train/acc": train_acc, "val/acc": val_acc, "train/loss": train_loss, "val/loss": val_loss}
    if duplicate if duplicate is not None else (seed % 4 == 1):
        # resume artifact: a chunk of steps logged twice, the re-run's values last
        a = int(rng.integers(0, steps.size - 20))
        idx = np.arange(a, a + 15)
        steps = np.concatenate([steps, steps[idx]])
        series = {k: np.concatenate([v, v[idx]]) for k, v in series.items()}
    trace = MemoryTrace({k: (steps, v) for k, v in series.items()},
                        meta={"synthetic": kind, "seed": seed, "scheme": scheme})
    truth["budget"] = budget
    return SyntheticRun(kind, seed, trace, truth)
