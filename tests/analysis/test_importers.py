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
    (b"step,loss\n-3,2\n", "not a non-negative integer"),
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
