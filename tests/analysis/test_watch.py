"""phasewatch watch: live events from run directories (real SQLite stores, real training)."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from phasewatch.analysis import TraceWriter, analyze_run
from phasewatch.analysis.watch import Watcher, find_runs, watch

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "phasewatch.analysis.cli"]


def write(run_dir, steps, train, val, status=None, writer=None):
    w = writer or TraceWriter(run_dir)
    for s, a, b in zip(steps, train, val):
        w.log_scalars({"train/acc": a, "val/acc": b, "train/loss": 1.0 - 0.9 * a}, int(s))
    if status:
        w.set_meta("status", status)
    w.flush()
    return w


def grok_curves(steps, t_mem=100, t_gen=600):
    return (steps >= t_mem).astype(float), (steps >= t_gen).astype(float)


def test_once_table_for_finished_and_running_runs(tmp_path):
    s = np.arange(0, 1000, 20)
    write(tmp_path / "a", s, *grok_curves(s), status="success").close()
    write(tmp_path / "b", s[:20], *grok_curves(s[:20]), status="running").close()
    buf = io.StringIO()
    assert watch(tmp_path, once=True, out=buf) == 0
    rows = {line.split()[0]: line for line in buf.getvalue().splitlines()[1:]}
    assert set(rows) == {"a", "b"}
    assert "success" in rows["a"] and "grokking" in rows["a"] and "generalization@600" in rows["a"]
    assert "running" in rows["b"] and "memorization@100" in rows["b"] and "generalization" not in rows["b"]
    assert " 380 " in rows["b"] and "memorization?" in rows["b"]   # class so far, not final


def test_live_polls_report_each_event_once_and_follow_status(tmp_path):
    s = np.arange(0, 1000, 20)
    tr, va = grok_curves(s)
    w = Watcher(tmp_path, stale_s=3600)
    assert w.poll() == []
    writer = write(tmp_path / "r1", s[:10], tr[:10], va[:10], status="running")
    lines = w.poll()
    assert lines[0] == "+ r1" and any("memorization" in ln and "step     100" in ln for ln in lines)
    reported_at = None
    for k in range(10, 50):
        write(None, s[k:k + 1], tr[k:k + 1], va[k:k + 1], writer=writer)
        got = [ln for ln in w.poll() if "generalization" in ln]
        if got:
            assert reported_at is None, "reported twice"
            reported_at = int(s[k])
            assert "step     600" in got[0]
    assert reported_at == 600 + 3 * 20  # the first poll with 3 samples after the crossing
    writer.set_meta("status", "failed")
    writer.close()
    lines = w.poll()
    assert any(ln.startswith("= r1: failed, class grokking") for ln in lines)
    assert w.poll() == []  # nothing new: nothing printed
    # a new run appears later; a run whose writer vanished without a status is 'stalled'
    write(tmp_path / "r2", s[:5], tr[:5], va[:5], status="running").close()
    w.stale_s = 0.05
    assert "+ r2" in w.poll()
    time.sleep(0.1)
    assert any(ln.startswith("! r2") and "crashed?" in ln for ln in w.poll())
    assert "stalled" in w.table()


def test_unreadable_store_is_shown_not_fatal(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "trace.sqlite").write_bytes(b"garbage" * 100)
    buf = io.StringIO()
    assert watch(tmp_path, once=True, out=buf) == 0
    assert "bad" in buf.getvalue() and "not a SQLite trace store" in buf.getvalue()
    assert find_runs(bad) == [bad]


def _ctrl_c_enabled() -> None:
    """A shell that runs the suite in the background (``pytest &``) starts it with SIGINT
    ignored, which its children inherit; Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cli_errors_and_ctrl_c(tmp_path):
    done = subprocess.run([*CLI, "watch", str(tmp_path / "nope"), "--once"], capture_output=True, text=True)
    assert done.returncode == 1 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    s = np.arange(0, 1000, 20)
    write(tmp_path / "a", s, *grok_curves(s), status="success").close()
    proc = subprocess.Popen([*CLI, "watch", str(tmp_path), "--interval", "0.2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_enabled)
    seen = ""  # Ctrl-C once it is in its loop (during the imports it is Python's own)
    while "a: generalization  step     600" not in seen and proc.poll() is None:
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "generalization@600" in out  # the table printed at Ctrl-C


def test_watch_follows_a_real_training_run(tmp_path):
    """phasewatch fit in one process; a Watcher here and `phasewatch watch` in a third process.
    The generalization event is reported at the first poll whose visible store has the samples
    that confirm it (three evaluations after the crossing), i.e. within one evaluation interval
    plus one poll of the data being there."""
    root = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    fit = subprocess.Popen([*CLI, "fit", "--config", str(REPO / "configs" / "modadd_mlp.yaml"),
                            "--data.frac", "0.9", "--trainer.max_steps", "900", "--run.wandb", "disabled",
                            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root.mkdir(parents=True, exist_ok=True)
    cli = subprocess.Popen([*CLI, "watch", str(root), "--interval", "0.5"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_enabled)
    w = Watcher(root)
    seen, reported = [], None
    deadline = time.monotonic() + 600
    while fit.poll() is None and time.monotonic() < deadline:
        lines = w.poll()
        st = next(iter(w.runs.values()), None)
        seen.append(None if st is None else st.step)
        if reported is None and any(": generalization" in ln for ln in lines):
            reported = (len(seen) - 1, next(ln for ln in lines if ": generalization" in ln))
        time.sleep(0.2)
    out, err = fit.communicate(timeout=60)
    assert fit.returncode == 0, err[-2000:]
    time.sleep(2)
    cli.send_signal(signal.SIGINT)
    cli_out, cli_err = cli.communicate(timeout=60)
    run_dir = find_runs(root)[0]
    t_gen = analyze_run(run_dir).event("generalization").step
    if reported is None:  # the run finished between two polls: the final poll reports it
        lines = w.poll()
        reported = (len(seen), next(ln for ln in lines if ": generalization" in ln))
        seen.append(w.runs[run_dir].step)
    k, line = reported
    assert f"step {t_gen:>7}" in line
    need = (int(t_gen) // 20 + 3) * 20  # the third evaluation after the (interpolated) crossing
    assert seen[k] is not None and seen[k] >= need
    assert all(s is None or s < need for s in seen[:k]), (seen[:k], need)
    assert cli.returncode == 0 and "Traceback" not in cli_err
    assert f"generalization  step {t_gen:>7}" in cli_out
