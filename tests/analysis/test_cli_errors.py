"""Every bad command-line input is one line on stderr and exit status 2; --version; JSON Lines for
several runs; watch waits for a folder that does not exist yet; names resolve in one place."""
import json
from importlib.metadata import version

import numpy as np
import pytest

from phasewatch.analysis.cli import main
from phasewatch.analysis.memtrace import MemoryTrace
from phasewatch.analysis.names import candidates, missing_message, resolve
from phasewatch.analysis.synthetic import make_run
from phasewatch.analysis.watch import Watcher, watch

BAD = [
    (["analyze", "r", "--thresold", "0.5"], "did you mean --threshold?"),
    (["analyze", "r", "--threshold", "2"], "--threshold: must be in (0, 1], got 2"),
    (["analyze", "r", "--gap-rule", "foo"], "invalid choice: 'foo'"),
    (["watch", "r", "--interval", "0"], "--interval: must be > 0"),
    (["watch", "r", "--stale", "-1"], "--stale: must be > 0"),
    (["report"], "required: runs"),
    (["import", "f.csv"], "required: --out"),
    (["analyse", "r"], "invalid choice: 'analyse'"),
    (["report", "r", "--svgs"], "did you mean --svg?"),
]


@pytest.mark.parametrize("argv, expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, expected, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "usage:" not in out.err, out.err
    assert lines[0].startswith("phasewatch") and out.out == ""


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"phasewatch {version('phasewatch')}"


def test_analyze_json_on_several_runs_is_json_lines(make_run_dir, capsys):
    runs = [make_run_dir(make_run(kind, 0).trace, kind) for kind in ("grokking", "memorization")]
    assert main(["analyze", "--json", *map(str, runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    docs = [json.loads(line) for line in lines]
    assert [d["run_class"] for d in docs] == ["grokking", "memorization"]


def test_watch_waits_for_a_folder_that_appears(tmp_path, make_run_dir):
    root = tmp_path / "later"
    w = Watcher(root, must_exist=False)
    assert w.poll() == []                       # nothing yet, no error
    write = make_run_dir(make_run("grokking", 0).trace, "later/r1")
    lines = w.poll()
    assert lines[0] == f"+ {write.name}" and any("generalization" in ln for ln in lines)
    with pytest.raises(ValueError, match="does not exist"):
        watch(tmp_path / "never", once=True)


def test_watch_once_reads_lightning_style_names(make_run_dir, capsys):
    s = np.arange(0, 3000, 25)
    trace = MemoryTrace({"train_acc_step": (s, (s >= 100) * 1.0), "val_acc": (s, (s >= 2000) * 1.0)})
    run = make_run_dir(trace, "lightning")
    assert main(["watch", str(run), "--once"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[3:6] == ["1.000", "1.000", "grokking?"]     # still "running" per its meta: "?"


def test_name_resolution_rules():
    have = ["epoch", "train_acc_epoch", "train_acc_step", "val_accuracy", "loss"]
    assert resolve("train_acc", have) == "train_acc_step"     # _step before _epoch
    assert resolve("val_acc", have) == "val_accuracy"
    assert resolve("train_loss", have) == "loss"
    assert resolve("val_loss", have) is None
    assert resolve("train_acc", have, requested="mine") is None  # an explicit name: no aliases
    assert candidates("val_acc", "mine") == ["mine", "mine_step", "mine_epoch"]
    msg = missing_message("val_loss", None, have)
    assert "no val loss series 'val/loss'" in msg and "the run has: epoch, loss" in msg


def test_map_option_renames_a_series(make_run_dir, capsys):
    s = np.arange(0, 3000, 25)
    trace = MemoryTrace({"acc_a": (s, (s >= 100) * 1.0), "acc_b": (s, (s >= 2000) * 1.0)})
    run = make_run_dir(trace, "mapped")
    assert main(["analyze", str(run), "--map", "acc_a=train/acc", "--map", "acc_b=val/acc"]) == 0
    assert "class: grokking" in capsys.readouterr().out


def test_import_a_lightning_log_directory_takes_its_newest_metrics_csv(tmp_path, capsys):
    import os
    logs = tmp_path / "lightning_logs"
    for version, acc in ((0, 0.5), (1, 0.9)):
        d = logs / f"version_{version}"
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text("epoch,step,train_acc_step,val_acc\n"
                                       f"0,9,{acc},\n0,9,,{acc / 2}\n")
        os.utime(d / "metrics.csv", (version, version))      # version_1 is the newest
    assert main(["import", str(logs), "--out", str(tmp_path / "run")]) == 0
    from phasewatch.analysis import load_run
    with load_run(tmp_path / "run") as run:
        assert run.series("train_acc_step")[1].tolist() == [0.9]
        assert run.series("val_acc")[1].tolist() == [0.45]
    (tmp_path / "nothing" / "version_0").mkdir(parents=True)
    assert main(["import", str(tmp_path / "nothing"), "--out", str(tmp_path / "run2")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no metrics.csv and no TensorBoard event files below" in err[0]
