"""DDP (2 CPU processes, gloo): scalars equal single-process values, per-example arrays cover
the whole dataset (gathered), every row written once. Runs the trainers in subprocesses."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np

from phasewatch.analysis import load_run

HERE = Path(__file__).parent


def _run(out, mode):
    env = dict(os.environ, PL_DISABLE_FORK="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(HERE / "ddp_run.py"), str(out), mode], env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    return load_run(out / f"{mode}-0")


def test_ddp_matches_single_process(tmp_path):
    sys.path.insert(0, str(HERE))
    from ddp_run import main
    main(str(tmp_path), "single")  # in-process: one interpreter start less
    single = load_run(tmp_path / "single-0")
    ddp = _run(tmp_path, "ddp")
    assert set(single.names()) == set(ddp.names())
    for name in single.names():
        s_steps, s_vals = single.series(name)
        d_steps, d_vals = ddp.series(name)
        assert s_steps.tolist() == d_steps.tolist(), name
        np.testing.assert_allclose(d_vals, s_vals, rtol=1e-4, atol=1e-6, err_msg=name)
    assert set(single.array_names()) == set(ddp.array_names())
    for name in single.array_names():
        s_steps, s_arr = single.arrays(name)
        d_steps, d_arr = ddp.arrays(name)
        assert s_steps.tolist() == d_steps.tolist() and s_arr.shape == d_arr.shape, name
        if d_arr.dtype == np.uint8:
            np.testing.assert_array_equal(d_arr, s_arr, err_msg=name)
        else:
            np.testing.assert_allclose(d_arr.astype(np.float64), s_arr.astype(np.float64),
                                       rtol=5e-3, atol=5e-3, err_msg=name)
    assert ddp.arrays("examples/train/correct")[1].shape == (4, 60)
    assert ddp.arrays("examples/val/loss")[1].shape == (4, 61)
    # every scalar row written once: raw points in the file == one per step
    con = sqlite3.connect(str(Path(ddp.path) / "trace.sqlite"))
    for name in ddp.names():
        (n_raw,) = con.execute("SELECT SUM(s.n) FROM scalars s JOIN names n ON n.id = s.name_id "
                               "WHERE n.name = ?", (name,)).fetchone()
        assert n_raw == len(ddp.series(name)[0]), name
    con.close()
    assert sorted(set(os.listdir(tmp_path)) - {"latest"}) == ["ddp-0", "single-0"]  # none by rank 1
