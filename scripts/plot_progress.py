"""Plot a run's progress measures: Nanda's final-K losses next to the per-checkpoint-K ones.

Left: ``circuit/excluded_loss`` and ``circuit/restricted_loss`` (one K, the final model's; absent
when it has none) with the same losses at each checkpoint's own K (dashed) and the train / val
loss. Right: weight norm (``weights/sum_sq``) and ``circuit/ipr_mean``. Needs matplotlib.

Example:
    .venv/bin/python scripts/plot_progress.py runs/latest docs/config_a_progress_measures.png
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from phasewatch.analysis import load_run  # noqa: E402


def first_present(run, *names):
    """The first of ``names`` that the run logged, or None."""
    have = set(run.names())
    return next((n for n in names if n in have), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("out")
    args = ap.parse_args()
    run = load_run(args.run)
    status = run.meta.get("circuit/progress_measures", {})
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, color in (("excluded_loss", "C3"), ("restricted_loss", "C2")):
        if first_present(run, f"circuit/{name}"):  # absent when the final model has no K
            ax.plot(*run.series(f"circuit/{name}"), color=color, label=f"{name} (final K)")
        ax.plot(*run.series(f"circuit/{name}_current_k"), color=color, ls="--", alpha=0.6,
                label=f"{name} (each checkpoint's K)")
    for names, color in ((("train/loss", "examples/train/loss"), "C0"),
                         (("val/loss", "examples/val/loss"), "C1")):
        name = first_present(run, *names)
        if name:
            ax.plot(*run.series(name), color=color, lw=1, label=name)
    title = (f"K = {status.get('key_freqs')} ({status.get('status')})" if status.get("key_freqs")
             else "final model: no key frequencies, so no final-K losses")
    ax.set(yscale="log", xlabel="step", ylabel="cross-entropy", title=title)
    ax.legend(fontsize=7)
    ax2.plot(*run.series("weights/sum_sq"), color="k", label="weights/sum_sq")
    ax2.set(xlabel="step", ylabel="sum of squared weights")
    ax3 = ax2.twinx()
    ax3.plot(*run.series("circuit/ipr_mean"), color="C4", label="circuit/ipr_mean")
    ax3.set_ylabel("mean IPR (Doshi et al.)")
    lines = ax2.get_lines() + ax3.get_lines()
    ax2.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="lower center")
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
