"""Score the early predictor (``phasewatch.analysis.predict``) on conditions it was not tuned on.

The conditions live in ``tests/analysis/data/predict/conditions.json``: a TUNING set and a
disjoint TEST set of config-A variants (weight decay, training fraction, learning rate,
operation, p). Each condition's trace (the few series the predictor and the analyzer need)
is stored there as ``<label>.csv.gz`` (long format ``step,name,value``), so the table is
regenerated without training. ``--regenerate`` trains the missing conditions with
``phasewatch fit`` (one torch thread, W&B off, stop 200 steps after generalization) and
exports them.

Truth: the analyzer's ``generalization`` event (val acc reaches 0.99 and stays) within the
budget. Scored on the TEST set only: the predictor, the majority class of the tuning set,
and "generalizes iff weight decay > 0 and the train loss fell" -- each with a Wilson 95 %
interval. ``--tune`` reruns the tuning search (tuning set only) and prints the rule.

Example:
    .venv/bin/python scripts/eval_predictor.py                      # table from stored traces
    .venv/bin/python scripts/eval_predictor.py --tune               # refit the rule on tuning
    .venv/bin/python scripts/eval_predictor.py --regenerate --jobs 2 --root runs/predict_eval
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "analysis" / "data" / "predict"
# series kept per run; the live (per-checkpoint K) circuit losses are stored under the
# ``_current_k`` names that the predictor reads (the final-K ones need the end of the run)
KEEP = {"train/acc": "train/acc", "val/acc": "val/acc", "train/loss": "train/loss",
        "val/loss": "val/loss", "weights/sum_sq": "weights/sum_sq",
        "circuit/n_key_freqs": "circuit/n_key_freqs",
        "circuit/excluded_loss_current_k": "circuit/excluded_loss_current_k",
        "circuit/restricted_loss_current_k": "circuit/restricted_loss_current_k",
        "circuit/excluded_loss": "circuit/excluded_loss_current_k",
        "circuit/restricted_loss": "circuit/restricted_loss_current_k"}


def load_conditions(path: Path = DATA / "conditions.json") -> dict:
    with open(path) as f:
        return json.load(f)


def _overrides(cond: dict) -> list[str]:
    return [a for k, v in cond.items() for a in (f"--{k}", str(v))]


def train(root: str, label: str, cond: dict, seed: int, budget: int, config: str) -> str:
    """Train one condition with ``phasewatch fit`` (in this process: torch is imported once per
    worker) unless a finished run exists; return its run directory."""
    done = sorted(d for d in glob.glob(os.path.join(root, f"{label}-*"))
                  if os.path.exists(os.path.join(d, ".done")))
    if done:
        return done[-1]
    import torch

    from phasewatch.trainer.cli import main as fit
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    fit(["--config", str(REPO / config), *_overrides(cond), "--seed_everything", str(seed),
         "--data.seed", str(seed), "--run.name", label, "--run.wandb", "disabled",
         "--run.checkpoint_every", str(10 * budget), "--run.stop_after_generalization", "200",
         "--trainer.max_steps", str(budget), "--trainer.enable_progress_bar", "false",
         "--trainer.default_root_dir", root])
    made = sorted(d for d in glob.glob(os.path.join(root, f"{label}-*")) if os.path.isdir(d))[-1]
    Path(made, ".done").touch()
    print(f"trained {label} in {time.perf_counter() - t0:.0f} s -> {made}", flush=True)
    return made


def train_lean(out_dir: str, cond: dict, seed: int, budget: int, config: str, every: int = 20,
               stop_after: int = 200) -> str:
    """Train one condition with the trainer's own task, model, loss and optimizer
    (``PhaseModule``) in a plain full-batch loop: no Lightning loop, no probe callbacks, about
    10x less CPU than ``phasewatch fit`` on this shared box. Logs what ``phasewatch fit`` logs
    every ``every`` steps (train/val loss and accuracy) plus ``weights/sum_sq``; stops
    ``stop_after`` steps after val acc has reached 0.99 and stayed (>= 0.97)."""
    import torch
    import yaml
    from pytorch_lightning import seed_everything

    from phasewatch.analysis import TraceWriter
    from phasewatch.trainer.data import TaskDataModule
    from phasewatch.trainer.module import PhaseModule
    with open(REPO / config) as f:
        cfg = yaml.safe_load(f)
    data, model = dict(cfg["data"]), dict(cfg["model"])
    for key, value in cond.items():
        part, name = key.split(".", 1)
        {"data": data, "model": model}[part][name] = value
    data["seed"] = seed
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    seed_everything(seed, verbose=False)
    task = TaskDataModule(**data).task
    module = PhaseModule(task, **{k: tuple(v) if k == "betas" else v for k, v in model.items()})
    opt = module.configure_optimizers()
    optimizer, schedule = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    params = list(module.model.parameters())
    t0, reached = time.perf_counter(), None
    with TraceWriter(out_dir) as w:
        for key, value in module.run_meta().items():
            w.set_meta(key, value)
        w.set_meta("eval_predictor/condition", json.dumps({**cond, "seed": seed}))
        w.log_scalars({"weights/sum_sq": float(sum((p.detach() ** 2).sum() for p in params))}, 0)
        for step in range(1, budget + 1):
            optimizer.zero_grad(set_to_none=True)
            module.loss_fn(module.model(task.train_x), task.train_y).backward()
            optimizer.step()
            schedule.step()
            if step % every:
                continue
            row = {"weights/sum_sq": float(sum((p.detach() ** 2).sum() for p in params))}
            for split, x, y in (("train", task.train_x, task.train_y), ("val", task.val_x, task.val_y)):
                loss, correct, _ = module.evaluate(x, y)
                row.update({f"{split}/loss": float(loss.mean()), f"{split}/acc": float(correct.mean())})
            w.log_scalars(row, step)
            reached = (reached or step) if row["val/acc"] >= 0.97 and (reached or row["val/acc"] >= 0.99) \
                else None
            if reached is not None and step >= reached + stop_after:
                break
    print(f"trained {out_dir} to step {step} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out_dir


def export(run_dir: str, out: Path) -> None:
    """Write the ``KEEP`` series of a run as gzipped long CSV (7 significant digits)."""
    from phasewatch.analysis import load_run
    with load_run(run_dir) as run, gzip.open(out, "wt", compresslevel=9) as f:
        f.write("step,name,value\n")
        for name in sorted(set(run.names()) & set(KEEP)):
            steps, values = run.series(name)
            for s, v in zip(steps, values):
                f.write(f"{int(s)},{KEEP[name]},{float(v):.7g}\n")


def _one(item) -> None:
    """Train and export one ``(label, overrides, seed, budget, config, root, via_fit)`` unless stored."""
    lab, cond, seed, budget, config, root, via_fit = item
    out = DATA / f"{lab}.csv.gz"
    os.makedirs(root, exist_ok=True)
    try:  # claim the condition, so that several regenerating processes share the work
        os.close(os.open(os.path.join(root, f"{lab}.claim"), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    if out.exists():
        return
    try:
        if via_fit:
            run_dir = train(root, lab, cond, seed, budget, config)
        else:
            run_dir = train_lean(os.path.join(root, lab), cond, seed, budget, config)
        export(run_dir, out)
    except Exception as e:  # noqa: BLE001 - one failed condition must not stop the others
        print(f"FAILED {lab}: {type(e).__name__}: {e}", flush=True)


def regenerate(root: str, jobs: int, via_fit: bool = False) -> None:
    """Train and export every condition without a stored trace, ``jobs`` processes at a time."""
    doc = load_conditions()
    todo = [(lab, cond, k, doc["budget"], doc["config"], os.path.abspath(root), via_fit)
            for part in ("tuning", "test") for k, (lab, cond) in enumerate(doc[part].items())]
    todo.sort(key=lambda t: t[2])  # interleave the two sets: a cut-short run still has both
    os.environ.update(OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        list(ex.map(_one, todo))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regenerate", action="store_true", help="train and export missing conditions")
    ap.add_argument("--root", default="runs/predict_eval", help="run directories for --regenerate")
    ap.add_argument("--jobs", type=int, default=1, help="parallel trainings (one torch thread each)")
    ap.add_argument("--via-fit", action="store_true",
                    help="train through `phasewatch fit` (Lightning, default callbacks) instead of "
                         "the plain loop; same trace, ~8x the CPU, plus the probe series")
    ap.add_argument("--horizon", type=int, default=800,
                    help="steps the predictor may see (shipped rules: 400 and 800)")
    ap.add_argument("--tune", action="store_true", help="refit the rule on the tuning set, print it")
    args = ap.parse_args(argv)
    if args.regenerate:
        regenerate(args.root, args.jobs, args.via_fit)
    from phasewatch.analysis.predict import rule_for
    from phasewatch.analysis.predict_eval import condition_rows, format_score_table, score_rows, tune_rule
    doc = load_conditions()
    tuning = condition_rows(doc, "tuning", DATA, args.horizon)
    test = condition_rows(doc, "test", DATA, args.horizon)
    rule = tune_rule(tuning) if args.tune else rule_for(args.horizon)
    print(f"rule ({'tuned now' if args.tune else 'the shipped defaults'}): {rule.describe()}\n"
          f"as code: EarlyRule(conditions={rule.conditions!r}, gen_ratio={rule.gen_ratio!r})\n")
    majority = sum(r["t_gen"] is not None for r in tuning) * 2 >= len(tuning)
    missing = [lab for part in ("tuning", "test") for lab in doc[part] if not (DATA / f"{lab}.csv.gz").exists()]
    if missing:
        print(f"not stored (not scored; --regenerate trains them): {', '.join(missing)}\n")
    for name, rows in (("TUNING (in-sample, for reference)", tuning), ("TEST (held-out conditions)", test)):
        summary = score_rows(rows, rule, majority)
        print(format_score_table(rows, summary, f"{name}: horizon {args.horizon}, budget "
                                                f"{doc['budget']}, n = {len(rows)}; majority class of "
                                                f"the tuning set: {'generalizes' if majority else 'no'}"))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
