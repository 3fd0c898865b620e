"""`phasewatch import`: Lightning CSVLogger, W&B exports, long CSV -> run directory."""
import numpy as np
import pytest

from phasewatch.analysis import load_run
from phasewatch.analysis.cli import main
from phasewatch.analysis.importers import detect_format, import_csv, parse_mapping
from phasewatch.analysis.synthetic import make_run


def _lightning_csv(path, trace):
    """CSVLogger layout: train and val rows logged separately, blank cells elsewhere."""
    s, tr = trace.series("train/acc")
    _, va = trace.series("val/acc")
    lines = ["epoch,step,train_acc,val_acc"]
    for i, (st, a, b) in enumerate(zip(s, tr, va)):
        lines.append(f"{i},{st},{a},")
        lines.append(f"{i},{st},,{b}")
    path.write_text("\n".join(lines) + "\n")


def test_lightning_metrics_csv_roundtrip_and_analysis(tmp_path, capsys):
    r = make_run("grokking", 4, duplicate=False)
    csv = tmp_path / "metrics.csv"
    _lightning_csv(csv, r.trace)
    out = tmp_path / "run"
    assert main(["import", str(csv), "--out", str(out), "--map", "train_acc=train/acc",
                 "--map", "val_acc=val/acc"]) == 0
    run = load_run(out)
    assert {"train/acc", "val/acc", "epoch"} <= set(run.names())
    s, v = run.series("val/acc")
    s0, v0 = r.trace.series("val/acc")
    assert np.array_equal(s, s0) and np.allclose(v, v0)
    assert run.meta["import_format"] == "lightning"
    assert main(["analyze", str(out)]) == 0
    assert "class: grokking" in capsys.readouterr().out


def test_wandb_history_prefers_global_step_and_drops_bookkeeping(tmp_path):
    csv = tmp_path / "wandb.csv"
    csv.write_text("_step,_runtime,_timestamp,trainer/global_step,val/acc,train/loss\n"
                   "0,1.0,1700000000,0,0.1,2.0\n1,2.0,1700000001,50,NaN,1.0\n"
                   "2,3.0,1700000002,100,0.9,inf\n")
    out = import_csv(csv, tmp_path / "run")
    run = load_run(out)
    assert sorted(run.names()) == ["train/loss", "val/acc"]
    assert run.series("val/acc")[0].tolist() == [0, 100]
    assert run.meta["import_format"] == "wandb"


def test_wandb_chart_export_strips_run_prefix(tmp_path):
    csv = tmp_path / "chart.csv"
    csv.write_text('Step,"run-1 - val/acc","run-1 - val/acc__MIN","run-1 - val/acc__MAX"\n'
                   "10,0.2,0.1,0.3\n20,0.5,0.4,0.6\n")
    run = load_run(import_csv(csv, tmp_path / "run"))
    assert run.names() == ["val/acc"] and run.series("val/acc")[1].tolist() == [0.2, 0.5]


def test_long_csv_with_duplicates_last_wins(tmp_path):
    csv = tmp_path / "long.csv"
    csv.write_text("step,name,value\n0,val/acc,0.1\n10,val/acc,0.2\n10,val/acc,0.3\n5,train/acc,1\n")
    assert detect_format(["step", "name", "value"]) == "long"
    run = load_run(import_csv(csv, tmp_path / "run"))
    assert run.series("val/acc")[1].tolist() == [0.1, 0.3]


@pytest.mark.parametrize("content,match", [
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a text CSV"),
    (b"", "empty file"),
    (b"epoch,loss\n1,2\n", "no step column"),
    (b"step,loss\n-3,2\n", r"line 2: step '-3' is not an integer in \[0, 2\*\*63-1\]"),
    (b"step,loss\n1,abc\n", "no numeric values"),
])
def test_foreign_files_give_clear_errors_naming_the_file(tmp_path, content, match):
    bad = tmp_path / "foreign.csv"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=match) as ei:
        import_csv(bad, tmp_path / "run")
    assert "foreign.csv" in str(ei.value)


def test_cli_import_errors_exit_1_and_refuse_to_overwrite(tmp_path, capsys):
    assert main(["import", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r")]) == 1
    assert "missing.csv" in capsys.readouterr().err
    csv = tmp_path / "m.csv"
    csv.write_text("step,a\n1,2\n")
    assert main(["import", str(csv), "--out", str(tmp_path / "r")]) == 0
    assert main(["import", str(csv), "--out", str(tmp_path / "r")]) == 1
    assert "already holds a trace" in capsys.readouterr().err
    with pytest.raises(ValueError, match="OLD=NEW"):
        parse_mapping(["nonsense"])


@pytest.mark.parametrize("cell", ["1e30", "inf", "nan", "-1", "2.5", "9223372036854775808", "abc"])
def test_out_of_range_step_fails_cleanly_and_leaves_nothing_behind(tmp_path, capsys, cell):
    csv = tmp_path / "m.csv"
    csv.write_text(f"step,val/acc\n0,0.1\n\n{cell},0.5\n20,0.9\n")
    out = tmp_path / "runs" / "imported"
    out.parent.mkdir()
    assert main(["import", str(csv), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"line 4: step '{cell}' is not an integer" in err and "m.csv" in err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == []  # no half-made run dir
    csv.write_text("step,val/acc\n0,0.1\n10,\n20,0.9\n")  # fixed: the retry works
    assert main(["import", str(csv), "--out", str(out)]) == 0
    assert load_run(out).series("val/acc")[0].tolist() == [0, 20]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["imported"]


def test_wandb_export_with_several_runs_is_refused_listing_them_or_split_by_run(tmp_path, capsys):
    csv = tmp_path / "chart.csv"
    csv.write_text('Step,"a - val/acc","a - val/acc__MIN","b - val/acc"\n10,0.2,0.1,0.7\n20,0.5,0.4,0.8\n')
    assert main(["import", str(csv), "--out", str(tmp_path / "r")]) == 1
    assert "holds 2 runs ['a', 'b']" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    for run, values in (("a", [0.2, 0.5]), ("b", [0.7, 0.8])):
        assert main(["import", str(csv), "--out", str(tmp_path / run), "--run", run]) == 0
        assert load_run(tmp_path / run).series("val/acc")[1].tolist() == values
    assert main(["import", str(csv), "--out", str(tmp_path / "c"), "--run", "c"]) == 1
    assert "no run 'c'" in capsys.readouterr().err


@pytest.mark.parametrize("header, extra, dup", [
    ("step,val/acc,val/acc", [], "val/acc"),                              # same header twice
    ("step,val_acc,val/acc", ["--map", "val_acc=val/acc"], "val/acc"),   # collide after --map
    ('Step,"a - loss",loss', [], "loss"),                                 # after the W&B prefix
])
def test_columns_that_would_overwrite_each_other_are_refused(tmp_path, capsys, header, extra, dup):
    csv = tmp_path / "m.csv"
    csv.write_text(header + "\n1,0.1,0.2\n")
    assert main(["import", str(csv), "--out", str(tmp_path / "r"), *extra]) == 1
    assert f"several columns give the series ['{dup}']" in capsys.readouterr().err


def test_utf8_bom_and_spaces_after_commas_are_read(tmp_path):
    csv = tmp_path / "bom.csv"
    csv.write_bytes("\ufeffstep, val/acc\n0, 0.25\n10, inf\n".encode("utf-8"))
    run = load_run(import_csv(csv, tmp_path / "run"))
    assert run.names() == ["val/acc"] and run.series("val/acc")[1].tolist() == [0.25, float("inf")]
