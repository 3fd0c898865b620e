"""The ``phasewatch`` console script: analyze / report / watch / import, and ``fit`` (trainer).

``fit`` is delegated lazily to ``phasewatch.trainer.cli`` so that the analysis commands
never import torch.

Example:
    $ phasewatch analyze runs/latest --threshold 0.95
    $ phasewatch report runs/a runs/b --out cmp/
    $ phasewatch import metrics.csv --out runs/imported --map val_acc=val/acc
    $ phasewatch predict runs/latest --horizon 400 [--json]
    $ phasewatch watch runs/ [--once] [--interval 2]
    $ phasewatch sweep sweeps/modadd_wd_frac.yaml --out sweeps/out/wd_frac   # Dask (torch)
    $ phasewatch aggregate sweeps/out/wd_frac                 # phase diagram, table, HTML
    $ phasewatch analyze --wandb ENTITY/PROJECT/RUN_ID     # exit 2 without credentials
    $ phasewatch probe runs/latest --key-freqs 14,35,41   # recompute Nanda's losses (torch)
"""
from __future__ import annotations

import argparse
import math
import os
import sys

from .cli_errors import OneLineParser, fraction, positive

__all__ = ["main", "build_parser"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("phasewatch")
    except PackageNotFoundError:  # a source tree that was not installed
        return "unknown"


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=fraction, default=0.99,
                   help="accuracy that counts as 'reached' (default 0.99)")
    p.add_argument("--gap-rule", choices=("ratio", "absolute"), default="ratio",
                   help="grokking vs comprehension: t_val/t_train >= --grok-ratio (default) "
                        "or t_val - t_train >= --min-gap-steps (Liu et al.)")
    p.add_argument("--grok-ratio", type=positive, default=5.0)
    p.add_argument("--min-gap-steps", type=int, default=1000)
    p.add_argument("--censor-ratio", type=positive, default=10.0,
                   help="a memorizing run shorter than this x t_train is censored ('not yet')")
    p.add_argument("--train-acc", default="train/acc")
    p.add_argument("--val-acc", default="val/acc")
    p.add_argument("--train-loss", default="train/loss")
    p.add_argument("--val-loss", default="val/loss")
    p.add_argument("--map", dest="series_map", action="append", default=[], metavar="NAME=BUILTIN",
                   help="read series NAME as a built-in one, e.g. --map my_acc=train/acc "
                        "(train/acc, val/acc, train/loss, val/loss; repeatable)")
    p.add_argument("--random-targets", action="store_true", default=None,
                   help="random-target task: report memorized bits (else read from run meta)")
    p.add_argument("--vocab", type=int, default=None, help="output vocabulary V for memorized bits")
    p.add_argument("--out-len", type=int, default=None, help="output positions L for memorized bits")
    p.add_argument("--n-params", type=int, default=None, help="parameter count for bits/parameter")


def _config(args):
    from .analyzer import AnalysisConfig
    from .classify import ClassifyConfig
    cc = ClassifyConfig(threshold=args.threshold, gap_rule=args.gap_rule, grok_ratio=args.grok_ratio,
                        min_gap_steps=args.min_gap_steps, censor_ratio=args.censor_ratio)
    cap = tuple((k, v) for k, v in (("random_targets", args.random_targets), ("n_classes", args.vocab),
                                    ("out_len", args.out_len), ("n_params", args.n_params)) if v is not None)
    from .importers import parse_mapping
    from .names import mapping_to_roles
    names = {"train_acc": args.train_acc, "val_acc": args.val_acc, "train_loss": args.train_loss,
             "val_loss": args.val_loss, **mapping_to_roles(parse_mapping(args.series_map))}
    return AnalysisConfig(classify=cc, capacity=cap, **names)


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="phasewatch",
                       description="Track training dynamics; find memorization and grokking.")
    ap.add_argument("--version", action="version", version=f"phasewatch {_version()}")
    sub = ap.add_subparsers(dest="command", metavar="{fit,analyze,report,watch,import,probe,predict,sweep,aggregate}")
    sub.add_parser("fit", help="train (LightningCLI; see `phasewatch fit --help`)", add_help=False)
    a = sub.add_parser("analyze", help="analyze run directories, write RUN/analysis/analysis.json")
    a.add_argument("runs", nargs="*", help="run directories")
    a.add_argument("--wandb", metavar="ENTITY/PROJECT/RUN_ID", default=None,
                   help="pull this W&B run's history (public API, needs credentials) into "
                        "--out and analyze it; exit 2 without credentials")
    a.add_argument("--out", default=None, metavar="DIR",
                   help="write analysis.json here (DIR/<run>/ for several runs) instead of "
                        "RUN/analysis/, e.g. for runs on read-only media; with --wandb: the run "
                        "directory to create (default runs/wandb-<RUN_ID>)")
    a.add_argument("--json", action="store_true", help="print analysis.json instead of the summary (JSON Lines: one line per run)")
    a.add_argument("--aggregate", metavar="DIR", default=None,
                   help="with several runs: also write seed/sweep aggregates to DIR")
    _add_analysis_options(a)
    r = sub.add_parser("report", help="PNG figures + one self-contained HTML page")
    r.add_argument("runs", nargs="+", help="run directories")
    r.add_argument("--out", default=None,
                   help="output folder (default RUN/analysis for one run, ./phasewatch_report otherwise)")
    r.add_argument("--svg", action="store_true", help="also write every figure as SVG")
    _add_analysis_options(r)
    w = sub.add_parser("watch", help="follow live runs under DIR, print phase events as detected")
    w.add_argument("dir", help="a run directory or a folder of runs (e.g. runs/); waits for it "
                               "to appear when it does not exist yet")
    w.add_argument("--once", action="store_true", help="one pass, print the table, exit")
    w.add_argument("--interval", type=positive, default=2.0, help="seconds between polls (default 2)")
    w.add_argument("--stale", type=positive, default=120.0,
                   help="a running run without new data for this many seconds is 'stalled'")
    _add_analysis_options(w)
    i = sub.add_parser("import", help="turn a CSV trace (Lightning, W&B, long) or TensorBoard "
                                      "event files into a run directory")
    i.add_argument("file", help="metrics.csv (Lightning CSVLogger), a TensorBoard event file, a "
                                "Lightning log directory (its newest metrics.csv, else its newest "
                                "folder of event files), W&B history CSV, or step,name,value CSV")
    i.add_argument("--out", required=True, help="run directory to create")
    i.add_argument("--format", choices=("auto", "lightning", "wandb", "long", "tensorboard"),
                   default="auto")
    i.add_argument("--map", action="append", default=[], metavar="OLD=NEW",
                   help="rename a column/series (repeatable), e.g. --map val_acc=val/acc")
    i.add_argument("--step-column", default=None, help="name of the step column (auto-detected)")
    i.add_argument("--run", default=None, metavar="NAME",
                   help="W&B chart export with several runs: import only this run")
    pr = sub.add_parser("probe", help="recompute restricted / excluded loss with one K from the "
                                      "run's weight snapshots (needs torch)")
    pr.add_argument("run", help="run directory written by phasewatch fit")
    pr.add_argument("--key-freqs", default=None, metavar="K1,K2,...",
                    help="key frequencies (integers 1..(p-1)/2); default: the last snapshot's")
    pr.add_argument("--json", action="store_true", help="print the result as JSON")
    pr.add_argument("--no-write", action="store_true", help="print only; leave the run unchanged")
    pr.add_argument("--llc", action="store_true", help="instead: the local learning coefficient "
                    "(SGLD) at each weight snapshot, written as llc/lambda_hat, llc/std")
    pr.add_argument("--steps", default=None, metavar="S1,S2,...", help="--llc: only these snapshots")
    pr.add_argument("--chains", type=int, default=4, help="--llc: SGLD chains (default 4)")
    pr.add_argument("--draws", type=int, default=200, help="--llc: draws per chain (default 200)")
    from .predict_cli import add_parser as add_predict
    add_predict(sub)
    s = sub.add_parser("sweep", help="run a grid of trials on Dask (resumable; see sweeps/)")
    s.add_argument("spec", help="sweep spec YAML (base config, grid / points, seeds)")
    s.add_argument("--out", required=True, help="sweep directory (state, one run dir per trial)")
    s.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler (default: a local cluster, one worker per core)")
    s.add_argument("--workers", type=int, default=None, help="local workers (default: cores)")
    s.add_argument("--retries", type=int, default=None,
                   help="attempts after the first for a failing trial (default: spec, else 2)")
    g = sub.add_parser("aggregate", help="phase diagram, heatmaps, CSV/JSON table and HTML of a sweep")
    g.add_argument("dir", help="a sweep directory (or any folder of run directories)")
    g.add_argument("--out", default=None, help="output folder (default DIR/aggregate)")
    _add_analysis_options(g)
    return ap


def _cmd_probe(args) -> int:
    from phasewatch.trainer.probe_cli import ProbeUsageError, main  # torch only here
    try:
        if args.llc:
            from phasewatch.trainer.llc_snapshots import main as llc_main
            return llc_main(args)
        return main(args.run, args.key_freqs, args.json, write=not args.no_write)
    except ProbeUsageError as e:
        print(f"phasewatch probe: error: {e}", file=sys.stderr)
        return 2


def _cmd_analyze(args) -> int:
    from .analyzer import analyze_run, write_analysis
    cfg = _config(args)
    if args.wandb:
        from .wandb_pull import WandbUnavailable, pull_wandb_run
        try:
            args.runs = [*args.runs, pull_wandb_run(args.wandb, args.out)]
        except WandbUnavailable as e:
            print(f"phasewatch analyze: {e}", file=sys.stderr)
            return 2
    if not args.runs:
        print("phasewatch analyze: error: give run directories or --wandb ENTITY/PROJECT/RUN_ID",
              file=sys.stderr)
        return 2
    results, ok_runs, failed = [], [], 0
    for run in args.runs:  # one bad run is reported and skipped; the others are analyzed
        try:
            res = analyze_run(run, cfg)
            path = write_analysis(res, run, out_dir=_analysis_dir(args, run))
        except (ValueError, OSError, KeyError, MemoryError, RecursionError) as e:
            failed += 1
            print(f"phasewatch analyze: error: {_one_line(e)}", file=sys.stderr)
            continue
        results.append(res)
        ok_runs.append(run)
        if args.json:  # JSON Lines: one compact document per run, nothing else on stdout
            import json
            with open(path) as f:
                print(json.dumps(json.load(f), separators=(",", ":")))
        else:
            print(res.summary())
            print(f"wrote {path}")
    if len(results) > 1 or args.aggregate:
        from .aggregate import aggregate_results, format_table, run_params, write_aggregate
        agg = aggregate_results(results, [run_params(r) for r in ok_runs])
        if not args.json:
            print(format_table(agg))
        if args.aggregate:
            print(f"wrote {write_aggregate(agg, args.aggregate)}",
                  file=sys.stderr if args.json else sys.stdout)
    return 1 if failed else 0


def _analysis_dir(args, run: str) -> str | None:
    """Where analysis.json of ``run`` goes: ``--out`` (local runs), else ``RUN/analysis``."""
    if args.out is None or args.wandb:
        return None
    if len(args.runs) == 1:
        return args.out
    return os.path.join(args.out, os.path.basename(os.path.normpath(run)))


def _one_line(e: BaseException) -> str:
    """An exception as one line (a KeyError's own text; a read-only file system with a hint)."""
    msg = str(e.args[0] if isinstance(e, KeyError) and e.args else e) or type(e).__name__
    if isinstance(e, OSError) and e.errno == 30:  # EROFS
        msg += "; the folder is read-only: pass --out DIR to write elsewhere"
    elif isinstance(e, (MemoryError, RecursionError)):
        msg = f"{type(e).__name__} {msg}".strip()
    return " ".join(msg.split())


def _cmd_report(args) -> int:
    from .report import write_report
    html = write_report(args.runs, out=args.out, config=_config(args), svg=args.svg)
    print(f"wrote {html}")
    return 0


def _cmd_watch(args) -> int:
    try:
        from .watch import watch
        return watch(args.dir, once=args.once, interval=args.interval, config=_config(args),
                     stale_s=args.stale)
    except KeyboardInterrupt:  # Ctrl-C before the loop started: still a clean exit
        return 0


def _cmd_import(args) -> int:
    from .importers import import_csv, parse_mapping
    from .log_dirs import find_trace_source
    kind, source = find_trace_source(args.file)
    if args.format == "tensorboard" or kind == "tensorboard" and args.format == "auto":
        if args.step_column or args.run:
            print("phasewatch import: error: --step-column and --run apply to CSV files only, "
                  f"not to the TensorBoard events of {source}", file=sys.stderr)
            return 2
        from .tb_events import import_events
        out = import_events(source, args.out, mapping=parse_mapping(args.map))
    else:
        out = import_csv(source, args.out, fmt=args.format, mapping=parse_mapping(args.map),
                         step_column=args.step_column, run=args.run)
    print(f"imported {source} -> {out}")
    return 0


def _cmd_sweep(args) -> int:
    if args.workers is not None and args.workers < 1 or args.retries is not None and args.retries < 0:
        print("phasewatch sweep: error: --workers must be >= 1 and --retries >= 0", file=sys.stderr)
        return 2
    try:
        from phasewatch.trainer.sweep import run_sweep  # torch and dask only here
        from phasewatch.trainer.sweep_spec import SpecError
    except ImportError as e:
        print(f"phasewatch sweep: error: {e.name} is missing; install the extra: "
              "pip install 'phasewatch[sweep]'", file=sys.stderr)
        return 2
    try:
        return run_sweep(args.spec, args.out, scheduler=args.scheduler, workers=args.workers,
                         retries=args.retries)
    except SpecError as e:
        print(f"phasewatch sweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"phasewatch sweep: interrupted; run the same command again to resume {args.out}",
              file=sys.stderr)
        return 130


def _cmd_aggregate(args) -> int:
    from .diagram import aggregate_dir
    for path in aggregate_dir(args.dir, out=args.out, config=_config(args)):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``phasewatch`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "fit":
        from phasewatch.trainer.fit_help import main as fit_main  # torch only past its cached --help
        return fit_main(argv[1:])
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 2
    if args.command == "predict":
        from .predict_cli import run as predict_main
        return predict_main(args)
    handler = {"analyze": _cmd_analyze, "report": _cmd_report, "watch": _cmd_watch,
               "import": _cmd_import, "probe": _cmd_probe, "sweep": _cmd_sweep,
               "aggregate": _cmd_aggregate}[args.command]
    try:
        return handler(args)
    except BrokenPipeError:  # `phasewatch analyze ... | head`: the reader left; exit quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail
        return 0
    except (ValueError, OSError, KeyError, MemoryError, RecursionError) as e:
        print(f"phasewatch {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
