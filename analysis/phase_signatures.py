"""Name a segment of a run only when its Nanda signature holds (docs/science.md#phases-within-a-run).

``trends(x, Y, rows, sigma, inflation)`` measures, for each signal, the change over a segment
of its least-squares line and whether it rises / falls / stays flat (change beyond two standard
errors, the noise inflated for autocorrelation). ``name_segments`` checks the signatures in
order (memorization, circuit formation, cleanup):

| phase | checks |
|---|---|
| memorization | train loss falls to <= 5 % of its first value; val loss does not fall; excluded loss falls |
| circuit formation | excluded loss rises; restricted loss falls; weight norm falls; train and val accuracy change by <= 0.1; the val-accuracy transition midpoint comes after the segment |
| cleanup | val loss falls by >= 1 decade; weight norm falls, fastest of all segments (per unit of the step axis); Gini rises, fastest of all segments; the segment ends at or after the val-accuracy transition midpoint |

A segment that fits no signature gets ``name: None`` and the failed checks of the phase expected
next, e.g. ``"excluded loss falls (expected: rises)"`` or
``"val loss collapses (falls >= 1 decade) (got: changes -0.31 decades)"``.

Example:
    >>> import numpy as np
    >>> x = np.arange(6.0)
    >>> t = trends(x, np.c_[x, -x, 0 * x], [0, 6], np.array([.1, .1, .1]), 1.0)
    >>> [v["trend"] for v in t]
    ['rises', 'falls', 'flat']
"""
from __future__ import annotations

import numpy as np

__all__ = ["LABELS", "ORDER", "trends", "name_segments"]

LABELS = {"circuit/excluded_loss": "excluded loss", "circuit/restricted_loss": "restricted loss",
          "weights/sum_sq": "weight norm", "circuit/gini": "Gini", "train/loss": "train loss",
          "val/loss": "val loss", "train/acc": "train accuracy", "val/acc": "val accuracy"}
ORDER = ("memorization", "circuit_formation", "cleanup")
NEAR_ZERO = 0.05        # "train loss falls to ~0": at most this share of its first value
FLAT_ACC = 0.1          # "accuracy flat": changes by at most this over the segment
COLLAPSE = 1.0          # "val loss collapses": falls by at least this many decades
Z = 2.0                 # rises / falls: the change exceeds Z standard errors
# the trends each phase needs of every piece of a multi-segment phase
DIRECTIONS = {"memorization": {"train/loss": ("falls",), "val/loss": ("rises", "flat"),
                               "circuit/excluded_loss": ("falls",)},
              "circuit_formation": {"circuit/excluded_loss": ("rises",), "circuit/restricted_loss": ("falls",),
                                    "weights/sum_sq": ("falls",)},
              "cleanup": {"val/loss": ("falls",), "weights/sum_sq": ("falls",), "circuit/gini": ("rises",)}}


def trends(x, Y, rows, sigma, inflation) -> list:
    """Per column: ``{"change", "rate", "trend"}`` of its line over rows ``rows[0]:rows[1]``.

    ``change`` is the line's rise from the segment's first to last sample (input units),
    ``rate`` the slope per unit of ``x``; NaN entries of ``Y`` are missing samples.
    """
    a, b = rows
    out = []
    for j in range(Y.shape[1]):
        ok = np.flatnonzero(np.isfinite(Y[a:b, j])) + a
        if ok.size < 2:
            out.append({"change": None, "rate": None, "trend": "not logged"})
            continue
        xs = x[ok] - x[ok].mean()
        sxx = float(xs @ xs)
        rate = float(xs @ Y[ok, j]) / sxx
        span = float(x[ok[-1]] - x[ok[0]])
        se = float(sigma[j]) * np.sqrt(inflation / sxx) * span
        change = rate * span
        trend = "rises" if change > Z * se else "falls" if change < -Z * se else "flat"
        out.append({"change": change, "rate": rate, "trend": trend})
    return out


def _check(ok: bool, text: str, got: str) -> tuple:
    return ok, text if ok else f"{text} (got: {got})"


def _signature(phase, t, seg, ctx) -> list:
    """``[(passed, text)]`` for ``phase`` on one segment; ``t`` maps signal -> trend dict."""
    def tr(name):
        return t[name]["trend"] if name in t else "not logged"

    def moved(name, want):
        got = tr(name)
        return got == want, f"{LABELS[name]} {want}" if got == want else f"{LABELS[name]} {got} (expected: {want})"

    checks = []
    if phase == "memorization":
        first, end = ctx["train_loss_first"], seg["train_loss_end"]
        near0 = first is not None and end is not None and end <= NEAR_ZERO * first
        checks.append(_check(tr("train/loss") == "falls" and near0,
                             f"train loss falls to <= {NEAR_ZERO:g} x its first value",
                             "ok" if near0 and tr("train/loss") == "falls" else
                             f"{tr('train/loss')}, ends at {end if end is None else f'{end:.3g}'}"))
        got = tr("val/loss")
        checks.append(_check(got in ("rises", "flat"), "val loss rises or stays",
                             "ok" if got in ("rises", "flat") else got))
        checks.append(moved("circuit/excluded_loss", "falls"))
    elif phase == "circuit_formation":
        checks += [moved("circuit/excluded_loss", "rises"), moved("circuit/restricted_loss", "falls"),
                   moved("weights/sum_sq", "falls")]
        for name in ("train/acc", "val/acc"):
            ch = t.get(name, {}).get("change")
            flat = ch is not None and abs(ch) <= FLAT_ACC
            checks.append(_check(flat, f"{LABELS[name]} flat (|change| <= {FLAT_ACC:g})",
                                 "ok" if flat else "not logged" if ch is None else f"changes {ch:+.2f}"))
        mid = ctx["val_midpoint"]
        later = mid is not None and mid >= seg["end"]
        checks.append(_check(later, "val-accuracy transition midpoint after it",
                             "ok" if later else "run has not generalized" if mid is None else f"midpoint {mid:g}"))
    elif phase == "cleanup":
        ch = t.get("val/loss", {}).get("change")
        col = ch is not None and ch <= -COLLAPSE and tr("val/loss") == "falls"
        checks.append(_check(col, f"val loss collapses (falls >= {COLLAPSE:g} decade)",
                             "ok" if col else "not logged" if ch is None else f"changes {ch:+.2f} decades"))
        for name, want, fast in (("weights/sum_sq", "falls", min), ("circuit/gini", "rises", max)):
            rate = t.get(name, {}).get("rate")
            best = fast(ctx["rates"][name]) if ctx["rates"].get(name) else None
            ok = tr(name) == want and rate is not None and rate == best
            what = "fastest" if name == "weights/sum_sq" else "sharply (fastest)"
            checks.append(_check(ok, f"{LABELS[name]} {want} {what}",
                                 "ok" if ok else tr(name) if tr(name) != want else "not the fastest segment"))
        mid = ctx["val_midpoint"]
        ends = mid is not None and seg["end"] >= mid
        checks.append(_check(ends, "ends at or after the val-accuracy transition midpoint",
                             "ok" if ends else "run has not generalized" if mid is None
                             else f"ends {seg['end']:g} < midpoint {mid:g}"))
    return checks


def name_segments(segs: list, val_midpoint: float | None, train_loss_first: float | None,
                  union_trends) -> list:
    """Group segments into phases: ``[{"name", "expected", "failed", "first", "last"}]``.

    ``segs``: ``[{"end": step, "train_loss_end": value, "trends": {signal: trend dict}}]`` in
    order; ``union_trends(i, j)`` gives the trends of one line per signal over segments i..j.
    From each segment on, the shortest run of adjacent segments whose union passes a
    signature (the next expected phase first, then later ones) becomes that phase, provided
    every piece moves the phase's key signals its way (``DIRECTIONS``): a curved
    memorization may take two straight pieces. Phases come in order, each at most once. A
    segment that starts no passing run is reported alone with the failed checks of the phase
    expected next.
    """
    rates = [{n: t["rate"] for n, t in s["trends"].items() if t.get("rate") is not None} for s in segs]

    def passes(phase, i, j):
        seg = {"end": segs[j]["end"], "train_loss_end": segs[j]["train_loss_end"]}
        tr = segs[i]["trends"] if i == j else union_trends(i, j)
        others = {}
        for r in rates[:i] + rates[j + 1:]:
            for n, v in r.items():
                others.setdefault(n, []).append(v)
        ctx = {"val_midpoint": val_midpoint, "train_loss_first": train_loss_first,
               "rates": {n: v + [tr[n]["rate"]] for n, v in others.items() if tr.get(n, {}).get("rate") is not None}}
        checks = _signature(phase, tr, seg, ctx)
        for k in range(i, j + 1) if j > i else ():
            for n, want in DIRECTIONS[phase].items():
                got = segs[k]["trends"].get(n, {}).get("trend")
                if got not in want:
                    checks.append((False, f"{LABELS[n]} {got} in part {k - i + 1} (expected: {' or '.join(want)})"))
        return checks

    nxt, i, out = 0, 0, []
    while i < len(segs):
        hit = None
        for p in range(nxt, len(ORDER)):
            j = next((j for j in range(i, len(segs)) if all(ok for ok, _ in passes(ORDER[p], i, j))), None)
            if j is not None:
                hit = (p, j)
                break
        if hit is not None:
            out.append({"name": ORDER[hit[0]], "expected": ORDER[hit[0]], "failed": [], "first": i, "last": hit[1]})
            nxt, i = hit[0] + 1, hit[1] + 1
            continue
        failed = [t for ok, t in passes(ORDER[nxt], i, i) if not ok] if nxt < len(ORDER) else []
        out.append({"name": None, "expected": ORDER[nxt] if nxt < len(ORDER) else None, "failed": failed,
                    "first": i, "last": i})
        i += 1
    return out
