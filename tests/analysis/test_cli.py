"""`phasewatch analyze` end to end on real run directories (TraceWriter -> SQLite -> CLI)."""
import json
import subprocess
import sys

import pytest

from phasewatch.analysis import load_run
from phasewatch.analysis.analyzer import analyze_run
from phasewatch.analysis.cli import main
from phasewatch.analysis.schema import SCHEMA_VERSION
from phasewatch.analysis.synthetic import make_run


def test_analyze_writes_versioned_json_and_prints_summary(make_run_dir, capsys):
    r = make_run("grokking", 1)
    run = make_run_dir(r.trace)
    assert main(["analyze", str(run)]) == 0
    out = capsys.readouterr().out
    assert "class: grokking" in out and "generalization" in out
    doc = json.loads((run / "analysis" / "analysis.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION == 2 and doc["run_class"] == "grokking"
    names = {e["name"] for e in doc["events"]}
    assert {"memorization", "generalization", "generalization_onset"} <= names
    for e in doc["events"]:
        assert set(e) >= {"name", "step", "low", "high", "signal"}
        assert e["low"] <= e["step"] <= e["high"]
    assert doc["thresholds"]["0.9"]["generalization"]["step"] <= doc["thresholds"]["0.99"]["generalization"]["step"]
    from phasewatch.analysis.schema import load_analysis
    assert load_analysis(run / "analysis" / "analysis.json")["run_class"] == "grokking"
    for old in (99, 1):   # a version-1 file (before verdicts / best_val_plateau) is refused in one line
        doc["schema_version"] = old
        (run / "analysis" / "bad.json").write_text(json.dumps(doc))
        with pytest.raises(ValueError, match=f"bad.json: schema_version {old} is not 2; re-run"):
            load_analysis(run / "analysis" / "bad.json")
    res = analyze_run(run)  # the library call gives the same verdict
    assert res.run_class == doc["run_class"] and res.event("generalization").step == \
        next(e["step"] for e in doc["events"] if e["name"] == "generalization")


def test_threshold_option_changes_the_event(make_run_dir, capsys):
    run = make_run_dir(make_run("grokking", 2).trace)
    main(["analyze", str(run), "--threshold", "0.9"])
    doc = json.loads((run / "analysis" / "analysis.json").read_text())
    assert doc["config"]["classify"]["threshold"] == 0.9
    assert next(e for e in doc["events"] if e["name"] == "generalization")["evidence"]["threshold"] == 0.9


def test_console_script_and_corrupt_file_error_names_it(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "trace.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    exe = [sys.executable, "-m", "phasewatch.analysis.cli"]
    out = subprocess.run(exe + ["analyze", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "trace.sqlite" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(exe + ["analyze", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "nope" in out.stderr and "Traceback" not in out.stderr


def test_parser_subcommands_and_no_command():
    from phasewatch.analysis.cli import build_parser
    ap = build_parser()
    assert ap.parse_args(["analyze", "r", "--threshold", "0.9"]).threshold == 0.9
    with pytest.raises(SystemExit):
        ap.parse_args(["frobnicate"])
    assert main([]) == 2


def test_several_runs_print_an_aggregate_table(make_run_dir, capsys, tmp_path):
    runs = [str(make_run_dir(make_run("grokking", s).trace, name=f"seed{s}")) for s in range(3)]
    assert main(["analyze", *runs, "--aggregate", str(tmp_path / "agg")]) == 0
    out = capsys.readouterr().out
    assert "generalization" in out and "grokking" in out
    assert (tmp_path / "agg" / "aggregate.json").exists()
    assert load_run(runs[0]).names()


def test_sweep_with_two_hyperparameters_gives_a_phase_diagram():
    from phasewatch.analysis.aggregate import aggregate_results
    from phasewatch.analysis.analyzer import AnalysisConfig, analyze_trace
    cfg = AnalysisConfig(phases=False, memorization=False)
    kinds = {(0.0, 0.3): "memorization", (1.0, 0.3): "memorization", (0.0, 0.5): "memorization",
             (1.0, 0.5): "grokking"}
    results, params = [], []
    for (wd, frac), kind in kinds.items():
        for seed in range(2):
            results.append(analyze_trace(make_run(kind, seed).trace, cfg))
            params.append({"model.wd": wd, "data.frac": frac, "seed_everything": seed})
    agg = aggregate_results(results, params)
    assert agg["varying"] == ["data.frac", "model.wd"]
    d = agg["phase_diagram"]
    assert d["x_values"] == [0.3, 0.5] and d["y_values"] == [0.0, 1.0]
    assert d["classes"] == [["memorization", "memorization"], ["memorization", "grokking"]]
    g = next(g for g in agg["groups"] if g["majority_class"] == "grokking")
    assert g["n"] == 2 and g["spread"]["generalization"]["n"] == 2
    # across-seed spread of the two grokking seeds, next to each run's own measurement interval
    gen = sorted(r.event("generalization").step for r in results[6:])
    sp = g["spread"]["generalization"]
    assert (sp["min"], sp["median"], sp["max"]) == (gen[0], (gen[0] + gen[1]) / 2, gen[1])
    e = results[6].event("generalization")
    assert agg["rows"][6]["intervals"]["generalization"] == [e.low, e.high]


def test_run_params_from_config_yaml_and_hparams_meta_skip_bookkeeping(make_run_dir):
    from phasewatch.analysis.aggregate import run_params
    run = make_run_dir(make_run("grokking", 0).trace, meta={"hparams": {"lr": 0.003, "frac": 0.5},
                                                          "run_id": "abc"})
    assert run_params(run) == {"lr": 0.003, "frac": 0.5}
    (run / "config.yaml").write_text("seed_everything: 1\ntrainer:\n  default_root_dir: /x\n  max_steps: 9\n"
                                     "model:\n  weight_decay: 1.0\n")
    assert run_params(run) == {"seed_everything": 1, "trainer.max_steps": 9, "model.weight_decay": 1.0}


def test_nan_and_non_positive_ratios_are_usage_errors(capsys):
    for option, value in (("--grok-ratio", "nan"), ("--grok-ratio", "inf"), ("--censor-ratio", "0"),
                          ("--threshold", "1.5"), ("--threshold", "nan")):
        with pytest.raises(SystemExit) as e:
            main(["analyze", "runs/x", option, value])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {option}" in err and value in err and "Traceback" not in err


def test_broken_pipe_exits_quietly(make_run_dir, tmp_path):
    run = str(make_run_dir(make_run("grokking", 0, duplicate=False).trace))
    many = " ".join([run] * 40)  # far more than a pipe buffer of JSON
    proc = subprocess.run(f"{sys.executable} -m phasewatch.analysis.cli analyze {many} --json "
                          f"--out {tmp_path / 'o'} | head -c 10", shell=True, capture_output=True,
                          text=True, timeout=600)
    assert proc.stdout == '{\n "schema' and proc.stderr == "", proc.stderr
