"""Memorization from per-example traces (docs/science.md#memorization).

Per-example arrays read from the run (``n_train`` = number of training examples, one
array per evaluation step unless noted):

| array | shape / dtype | meaning |
|---|---|---|
| ``examples/train/correct`` | [n_train] uint8/bool | prediction == assigned (trained-on) label |
| ``examples/train/loss`` | [n_train] float16/32 | NLL (nats) of the assigned label, mean over the L output positions |
| ``examples/train/p_true`` | [n_train] float16/32 | p(assigned label) (geometric mean over positions); optional, else exp(-loss) (alias ``p_label``) |
| ``examples/train/corrupted`` | [n_train] uint8/bool, logged once (step 0) | subset tag: True = label corrupted |
| ``examples/train/correct_true`` | [n_train] uint8/bool | prediction == TRUE label (differs only for corrupted) |

Capacity (memorized bits) is computed when the run is a random-target task: meta keys
``task/random_targets`` (bool), ``task/n_classes`` (V), ``task/out_len`` (L, default 1),
``model/n_params``, or the same given as ``capacity={"random_targets": True, "n_classes": V,
"out_len": L, "n_params": P}`` (CLI: ``--random-targets --vocab V --out-len L --n-params P``).

Computed: O1 (corrupted-subset onset: accuracy above its early baseline + delta for k
consecutive evals; t50, t90), O2 (argmax of smoothed val acc, with the plateau within the
noise of the maximum as its interval; event ``best_val_plateau``), O3 (per-example
tau_i = start of the final correct streak; quantiles and F(s); also the first k-eval correct
streak and how many memorizations were undone by the end), O4 (clean - corrupted
accuracy gap: peak and fall), forgetting events (1 -> 0, counted on a uniform step grid),
cartography (confidence, variability, correctness, time-weighted; AUROC of low confidence vs
corrupted), memorized bits. Definitions: docs/science.md#memorization.

Example:
    >>> from phasewatch.analysis.synthetic_examples import corrupted_examples
    >>> t, truth = corrupted_examples(0)
    >>> r = memorization_from_trace(t)
    >>> r["o1"]["t50"] is not None and r["cartography"]["auroc_low_confidence_vs_corrupted"] > 0.9
    True
"""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import uniform_filter1d

from .events import plateau_argmax

__all__ = ["ARRAY_NAMES", "memorized_at", "first_memorized", "o1_onset", "forgetting_events", "uniform_rows",
           "step_weights", "cartography", "auroc",
           "memorized_bits", "memorization_from_trace"]

ARRAY_NAMES = {"correct": "examples/train/correct", "loss": "examples/train/loss",
               "p_true": "examples/train/p_true", "corrupted": "examples/train/corrupted",
               "correct_true": "examples/train/correct_true"}
ALIASES = {"p_true": ("examples/train/p_label",)}
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _dedup(steps, stacked):
    steps = np.asarray(steps)
    order = np.argsort(steps, kind="stable")
    steps, stacked = steps[order], np.asarray(stacked)[order]
    last = np.ones(steps.size, dtype=bool)
    last[:-1] = steps[1:] != steps[:-1]
    return steps[last].astype(np.int64), stacked[last]


def memorized_at(steps: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """tau_i: step where example i's final correct streak starts (inf if wrong at the end).

    >>> memorized_at(np.array([0, 10, 20]), np.array([[0, 1], [1, 0], [1, 1]])).tolist()
    [10.0, 20.0]
    """
    c = np.asarray(correct).astype(bool)
    T = c.shape[0]
    wrong = ~c
    # index of the last wrong evaluation per example (-1 if never wrong)
    last_wrong = np.where(wrong.any(0), T - 1 - np.argmax(wrong[::-1], axis=0), -1)
    tau = np.full(c.shape[1], np.inf)
    ok = last_wrong < T - 1
    tau[ok] = steps[last_wrong[ok] + 1]
    return tau


def first_memorized(steps: np.ndarray, correct: np.ndarray, k: int = 3) -> np.ndarray:
    """Step where example i is first correct for ``k`` consecutive evaluations (inf if never).

    Unlike :func:`memorized_at` it sees memorization that is later undone (weight decay
    un-memorizing corrupted labels).

    >>> first_memorized(np.array([0, 10, 20, 30]), np.array([[0], [1], [1], [0]]), k=2).tolist()
    [10.0]
    """
    c = np.asarray(correct).astype(np.int32)
    T = c.shape[0]
    k = max(1, min(k, T))
    cs = np.vstack([np.zeros((1, c.shape[1]), np.int32), np.cumsum(c, 0)])
    runs = (cs[k:] - cs[:-k]) == k                        # [T-k+1, n]: window starting at row i
    hit = runs.any(0)
    out = np.full(c.shape[1], np.inf)
    out[hit] = steps[np.argmax(runs, axis=0)[hit]]
    return out


def o1_onset(steps, acc, delta: float = 0.1, k: int = 3, n_base: int = 3) -> dict:
    """O1: first step where ``acc`` > early baseline + ``delta`` for ``k`` consecutive evals; t50, t90."""
    acc = np.asarray(acc, dtype=float)
    if acc.size < n_base + k:
        return {"onset": None, "t50": None, "t90": None, "insufficient": f"{acc.size} evaluations"}
    base = float(np.median(acc[:n_base]))
    above = acc > base + delta
    run = np.convolve(above.astype(int), np.ones(k, dtype=int), mode="valid") == k
    hit = np.flatnonzero(run)
    out = {"baseline": base, "delta": delta, "k": k}

    def _first(mask):
        i = np.flatnonzero(mask)
        return None if i.size == 0 else int(i[0])
    i = None if hit.size == 0 else int(hit[0])
    out["onset"] = None if i is None else int(steps[i])
    out["onset_low"] = None if i is None else int(steps[max(i - 1, 0)])
    for name, q in (("t50", 0.5), ("t90", 0.9)):
        j = _first(acc >= q)
        out[name] = None if j is None else int(steps[j])
        out[f"{name}_low"] = None if j is None else int(steps[max(j - 1, 0)])
    return out


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """Number of 1 -> 0 transitions per example (Toneva et al. 2019)."""
    c = np.asarray(correct).astype(np.int8)
    return ((c[:-1] == 1) & (c[1:] == 0)).sum(0)


def uniform_rows(steps: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resample evaluations to a uniform step grid at their largest spacing (each grid step takes
    the last evaluation at or before it), so dense early evaluations do not count more than
    sparse late ones (docs/science.md#memorization).

    >>> g, r = uniform_rows(np.array([0, 1, 2, 3, 10, 20]), np.array([0, 1, 0, 1, 1, 0]))
    >>> g.tolist(), r.tolist()
    ([0, 10, 20], [0, 1, 0])
    """
    steps = np.asarray(steps)
    if steps.size < 2:
        return steps, np.asarray(rows)
    gap = int(np.max(np.diff(steps)))
    grid = np.arange(steps[0], steps[-1] + 1, max(gap, 1))
    return grid, np.asarray(rows)[np.searchsorted(steps, grid, side="right") - 1]


def step_weights(steps: np.ndarray) -> np.ndarray:
    """Share of the run each evaluation stands for: half the gap to each neighbour (trapezoid rule).

    >>> step_weights(np.array([0, 10, 20, 60])).tolist()
    [0.0833..., 0.1666..., 0.4166..., 0.3333...]
    """
    s = np.asarray(steps, dtype=np.float64)
    if s.size < 2 or s[-1] == s[0]:
        return np.full(s.size, 1.0 / max(s.size, 1))
    d = np.diff(s)
    w = np.r_[d, 0.0] / 2 + np.r_[0.0, d] / 2
    return w / w.sum()


def auroc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``score`` for ``positive`` (Mann-Whitney, ties averaged)."""
    from scipy.stats import rankdata
    positive = np.asarray(positive).astype(bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return None
    r = rankdata(score)
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def cartography(p_label: np.ndarray, correct: np.ndarray, steps: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Swayamdipta et al. 2020: per-example confidence (mean p), variability (std, ddof 0), correctness.

    With ``steps`` the means are over training time (:func:`step_weights`), not over evaluations.
    """
    p = np.asarray(p_label, dtype=np.float64)
    w = np.full(p.shape[0], 1.0 / p.shape[0]) if steps is None else step_weights(steps)
    mean = w @ p
    return {"confidence": mean, "variability": np.sqrt(np.maximum(w @ (p - mean) ** 2, 0.0)),
            "correctness": w @ np.asarray(correct, dtype=np.float64)}


def memorized_bits(nll_nats: np.ndarray, vocab: int, out_len: int = 1) -> np.ndarray:
    """B(s) = sum_i max(0, L log2 V - NLL_i / ln 2) per row (evaluation); NLL_i summed over positions."""
    cap = out_len * math.log2(vocab)
    return np.maximum(0.0, cap - np.asarray(nll_nats, dtype=np.float64) / math.log(2)).sum(-1)


def _subsample(n: int, m: int = 200) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, m)).astype(int))


def _quantiles(tau):
    fin = tau[np.isfinite(tau)]
    return {"n": int(tau.size), "memorized": int(fin.size),
            **{f"q{int(q * 100)}": (float(np.quantile(fin, q)) if fin.size else None) for q in QUANTILES}}


def _arr(trace, key):
    names = set(trace.array_names())
    for n in (ARRAY_NAMES[key], *ALIASES.get(key, ())):
        if n in names:
            return _dedup(*trace.arrays(n))
    return None


def memorization_from_trace(trace, val=None, delta: float = 0.1, k: int = 3,
                            capacity: dict | None = None) -> dict:
    """All per-example results of a run; ``{"insufficient": ...}`` without per-example arrays.

    ``val``: optional cleaned ``(steps, values)`` of val accuracy for O2; ``capacity``:
    overrides of the random-target meta (see module docstring).
    """
    out: dict = {}
    if val is not None and len(val[0]) >= 3:
        best = plateau_argmax(*val, name="best_val_plateau", signal="val")
        out["o2"] = {"step": best.step, "low": best.low, "high": best.high,
                     "smoothed_val_acc": best.evidence["smoothed_max"],
                     "tolerance": best.evidence["tolerance"]}
    got = _arr(trace, "correct")
    loss = _arr(trace, "loss")
    if got is None and loss is None:
        out["insufficient"] = ("insufficient data for per-example memorization: no "
                               f"{ARRAY_NAMES['correct']} / {ARRAY_NAMES['loss']} arrays")
        return out
    meta = dict(getattr(trace, "meta", {}) or {})
    cap = {k_: meta.get(f"{'model' if k_ == 'n_params' else 'task'}/{k_}")
           for k_ in ("random_targets", "n_classes", "out_len", "n_params")}
    cap.update({k_: v_ for k_, v_ in (capacity or {}).items() if v_ is not None})
    if loss is not None and cap.get("random_targets"):
        s, nll = loss
        V, L = int(cap.get("n_classes") or 0), int(cap.get("out_len") or 1)
        if V < 2:
            out["capacity"] = {"insufficient": "insufficient data for memorized bits: vocabulary "
                               "size unknown (meta task/n_classes or --vocab)"}
        else:
            bits = memorized_bits(L * nll.reshape(nll.shape[0], -1).astype(np.float64), V, L)
            idx = _subsample(s.size)
            n_params = cap.get("n_params")
            out["capacity"] = {"vocab": V, "out_len": L, "n_params": n_params,
                               "bits_final": float(bits[-1]), "bits_max": float(bits.max()),
                               "bits_per_param_final": (float(bits[-1]) / n_params) if n_params else None,
                               "curve": [[int(s[i]), float(bits[i])] for i in idx]}
    if got is None:
        return out
    steps, C = got
    C = C.reshape(C.shape[0], -1).astype(bool)
    n = C.shape[1]
    corr_arr = _arr(trace, "corrupted")
    corrupted = corr_arr[1][-1].reshape(-1).astype(bool) if corr_arr is not None else None
    if corrupted is not None and corrupted.size != n:
        raise ValueError(f"{ARRAY_NAMES['corrupted']} has {corrupted.size} entries, "
                         f"{ARRAY_NAMES['correct']} has {n}")
    tau = memorized_at(steps, C)
    subsets = {"all": np.ones(n, dtype=bool)}
    if corrupted is not None and corrupted.any():
        subsets.update({"clean": ~corrupted, "corrupted": corrupted})
    out["n_examples"] = n
    out["o3"] = {name: _quantiles(tau[m]) for name, m in subsets.items()}
    first = first_memorized(steps, C, k)
    out["o3"]["first_memorized"] = {name: {**_quantiles(first[m]),
                                           "undone": int(np.sum(np.isfinite(first[m]) & ~np.isfinite(tau[m])))}
                                    for name, m in subsets.items()}
    idx = _subsample(steps.size)
    out["o3"]["F"] = {"steps": steps[idx].tolist(),
                      **{name: [float(np.mean(tau[m] <= steps[i])) for i in idx] for name, m in subsets.items()}}
    grid, Cg = uniform_rows(steps, C)
    fe = forgetting_events(Cg)
    out["forgetting"] = {"grid_step": int(grid[1] - grid[0]) if grid.size > 1 else None,
                         **{name: {"mean_events": float(fe[m].mean()), "never_forgotten": float(np.mean(fe[m] == 0))}
                            for name, m in subsets.items()}}
    if "corrupted" in subsets:
        acc_c = C[:, corrupted].mean(1)
        acc_k = C[:, ~corrupted].mean(1)
        out["o1"] = o1_onset(steps, acc_c, delta=delta, k=k)
        gap = acc_k - acc_c
        g = uniform_filter1d(gap, size=3, mode="nearest") if gap.size >= 3 else gap   # no zero padding
        ip = int(np.argmax(g))
        fall = np.flatnonzero(g[ip:] < g[ip] / 2)
        out["o4"] = {"peak_step": int(steps[ip]), "peak_gap": float(g[ip]),
                     "fall_step": None if fall.size == 0 else int(steps[ip + fall[0]]),
                     "final_gap": float(gap[-1])}
        ct = _arr(trace, "correct_true")
        if ct is not None:
            cs, CT = ct
            CT = CT.reshape(CT.shape[0], -1).astype(bool)[:, corrupted].mean(1)
            j = int(np.argmax(CT))
            out["corrupted_true_label"] = {"peak_step": int(cs[j]), "peak_acc": float(CT[j]),
                                           "final_acc": float(CT[-1])}
        out["subset_acc"] = {"steps": steps[idx].tolist(), "clean": acc_k[idx].tolist(),
                             "corrupted": acc_c[idx].tolist()}
    else:
        out["o1"] = o1_onset(steps, C.mean(1), delta=delta, k=k)
        out["o1"]["subset"] = "all (no examples/train/corrupted tag)"
    pl = _arr(trace, "p_true")
    if pl is None and loss is not None and loss[1].reshape(loss[1].shape[0], -1).shape[1] == n:
        pl = (loss[0], np.exp(-loss[1].astype(np.float64)))
    if pl is not None:
        ps, P = pl
        common = np.intersect1d(ps, steps)
        P = P.reshape(P.shape[0], -1)[np.isin(ps, common)]
        Cc = C[np.isin(steps, common)]
        cart = cartography(P, Cc, common)
        res = {"source": "p_true" if _arr(trace, "p_true") is not None else "exp(-loss)",
               "weighting": "training time (trapezoid step weights)"}
        for name, m in subsets.items():
            res[name] = {key: float(np.median(val_[m])) for key, val_ in cart.items()}
        if corrupted is not None:
            res["auroc_low_confidence_vs_corrupted"] = auroc(-cart["confidence"], corrupted)
        out["cartography"] = res
    return out
