"""A bad-input corpus, generated here (truncated / foreign / hostile stores, hostile
analysis.json, CSV cases, odd names), run against every reader command (analyze, report,
watch --once, import) and the Python API (load_run, analyze_run, load_analysis): each case gives
one error line or an "insufficient data" note, never a traceback, and leaves its input files
byte-identical."""
from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from phasewatch.analysis import TraceStoreError, TraceWriter, analyze_run, load_run
from phasewatch.analysis.cli import main
from phasewatch.analysis.schema import load_analysis


def _good(d: Path, n: int = 60, meta: dict | None = None) -> Path:
    with TraceWriter(d) as w:
        for s in range(0, 10 * n, 10):
            w.log_scalars({"train/acc": min(1.0, s / 100), "val/acc": min(1.0, s / 400),
                           "train/loss": 1 / (1 + s), "val/loss": 2 / (1 + s)}, step=s)
        w.log_array("examples/train/correct", 10, np.ones(8, np.uint8))
        for k, v in (meta or {}).items():
            w.set_meta(k, v)
    return d


def _sql(d: Path, *statements: str) -> Path:
    with sqlite3.connect(d / "trace.sqlite") as c:
        for st in statements:
            c.execute(st)
    c.close()
    return d


def _store_cases(root: Path) -> dict[str, Path]:
    """Every bad (or odd but valid) run directory of the corpus."""
    cases = {}

    def case(name: str) -> Path:
        cases[name] = root / name
        return cases[name]

    d = _good(case("truncated"))
    data = (d / "trace.sqlite").read_bytes()
    (d / "trace.sqlite").write_bytes(data[: len(data) // 2 + 100])
    case("png").mkdir()
    (cases["png"] / "trace.sqlite").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    case("empty_file").mkdir()
    (cases["empty_file"] / "trace.sqlite").write_bytes(b"")
    case("foreign_sqlite").mkdir()
    _sql(cases["foreign_sqlite"], "CREATE TABLE users(name TEXT)", "INSERT INTO users VALUES ('x')")
    case("no_trace").mkdir()
    (cases["no_trace"] / "notes.txt").write_text("hello")
    _sql(_good(case("escape_path")),
         "UPDATE arrays SET relpath='../../../../../../etc/passwd', nbytes=8, shape='[8]', dtype='|u1'")
    _sql(_good(case("huge_shape")), "UPDATE arrays SET shape='[100000000000, 100000000]'")
    _sql(_good(case("object_dtype")), "UPDATE arrays SET dtype='|O'")
    _sql(_good(case("non_json_meta")), "INSERT INTO meta VALUES ('oops', '{not json')",
         "UPDATE meta SET value='[[[[' WHERE key='created_at'")
    _sql(_good(case("deep_meta")), "INSERT INTO meta VALUES ('deep', '" + "[" * 100000 + "]" * 100000 + "')")
    _sql(_good(case("bad_schema")), "UPDATE meta SET value='\"two\"' WHERE key='schema_version'")
    _sql(_good(case("bad_blob")), "UPDATE scalars SET steps=x'00', vals=x'0102'")
    _sql(_good(case("bad_event")), "INSERT INTO events(step, name, signal, payload) VALUES (1, 'e', '', '{')")
    _good(case("run $\\nocommand{x}$ #1 ✓"), meta={"hparams": {"lr": "$x$"}})
    _good(case("odd_meta"), meta={"task/n_train": "many", "task/random_targets": "yes",
                                  "model/n_params": -3, "hparams": ["not", "a", "dict"]})
    TraceWriter(case("empty_store")).close()
    with TraceWriter(case("arrays_only")) as w:
        w.log_array("w", 1, np.zeros(3))
    with TraceWriter(case("one_point")) as w:
        w.log_scalars({"val/acc": float("nan"), "train/acc": float("inf")}, step=0)
    return cases


MUST_WORK = {"non_json_meta", "deep_meta", "bad_event", "run $\\nocommand{x}$ #1 ✓", "odd_meta"}


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_or_note(rc: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err
    if rc == 0:
        return
    assert rc in (1, 2) and err.count("\n") == 1 and err.startswith("phasewatch "), (rc, err)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "runs"
    return root, _store_cases(root)


def test_every_reader_command_on_every_bad_store(corpus, tmp_path, capsys):
    root, cases = corpus
    before = _digest(root)
    for name, d in [*cases.items(), ("missing", root / "missing" / "run")]:
        for argv in (["analyze", str(d), "--out", str(tmp_path / "a" / name)],
                     ["analyze", str(d), "--json", "--out", str(tmp_path / "j" / name)],
                     ["report", str(d), "--out", str(tmp_path / "r" / name)],
                     ["watch", str(d), "--once"]):
            rc = main(argv)
            out, err = capsys.readouterr()
            _one_line_or_note(rc, out, err)
            if name in MUST_WORK:  # odd but valid: analyzed like any run
                assert rc == 0, (name, argv[0], err)
    rc = main(["analyze", *map(str, cases.values()), "--out", str(tmp_path / "all")])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and rc == 1
    assert out.count("wrote ") >= 4  # the good runs among them were still analyzed
    assert main(["watch", str(root), "--once"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "run $\\nocommand{x}$ #1" in out
    assert _digest(root) == before  # inputs byte-identical, nothing added
    assert main(["report", str(root / "missing" / "run")]) == 1  # default --out inside the run
    assert "does not exist" in capsys.readouterr().err and not (root / "missing").exists()


def test_python_api_on_every_bad_store(corpus):
    root, cases = corpus
    before = _digest(root)
    for name, d in cases.items():
        try:
            with load_run(d) as run:
                for n in run.names():
                    run.series(n)
                for n in run.array_names():
                    run.arrays(n)
                run.events()
                assert isinstance(run.meta, dict)
            res = analyze_run(d)
        except TraceStoreError as e:
            assert "\n" not in str(e) and str(d) in str(e), (name, e)
            continue
        if name in ("empty_store", "arrays_only", "one_point"):
            assert res.insufficient, name
    assert _digest(root) == before


def _analysis_cases(d: Path) -> dict[str, Path]:
    texts = {"not_json": "{oops", "list": "[1, 2]", "deep": "[" * 100000 + "]" * 100000,
             "schema_string": '{"schema_version": "1", "run_class": "grokking"}',
             "events_not_list": '{"schema_version": 1, "run_class": "grokking", "events": 5}',
             "event_not_dict": '{"schema_version": 1, "run_class": "grokking", "events": [3]}',
             "flags_dict": '{"schema_version": 1, "run_class": "grokking", "flags": {"a": 1}}',
             "class_list": '{"schema_version": 1, "run_class": ["grokking"]}',
             "nan": '{"schema_version": NaN}', "binary": "\udcff", "empty": ""}
    out = {}
    for name, text in texts.items():
        out[name] = d / f"{name}.json"
        out[name].write_bytes(text.encode("utf-8", "surrogateescape"))
    return out


def test_load_analysis_on_hostile_json(tmp_path):
    for name, path in _analysis_cases(tmp_path).items():
        with pytest.raises(ValueError) as e:
            load_analysis(path)
        assert "\n" not in str(e.value) and path.name in str(e.value), name


CSV_CASES = {
    "several_runs": (b'Step,"a - val/acc","b - val/acc"\n1,0.1,0.2\n', "holds 2 runs"),
    "duplicate_columns": (b"step,val/acc,val/acc\n1,0.1,0.2\n", "several columns"),
    "step_1e30": (b"step,val/acc\n1e30,0.1\n", "not an integer"),
    "step_inf": (b"step,val/acc\ninf,0.1\n", "not an integer"),
    "step_nan": (b"step,val/acc\nnan,0.1\n", "not an integer"),
    "step_negative": (b"step,val/acc\n-5,0.1\n", "not an integer"),
    "binary": (b"\x00\x01\x02\xff\xfe" * 50, ""),
    "empty": (b"", "empty file"),
    "header_only": (b"step,val/acc\n", "no numeric values"),
    "ragged": (b'step,val/acc\n1,0.1,5,6\n2,"unterminated\n', ""),
    "bom_ok": ("\ufeffstep,val/acc\n1,0.5\n".encode(), None),
}


def test_import_of_every_csv_case_is_one_line_or_a_complete_run(tmp_path, capsys):
    src = tmp_path / "csv"
    src.mkdir()
    for name, (data, _) in CSV_CASES.items():
        (src / f"{name}.csv").write_bytes(data)
    before = _digest(src)
    for name, (_, match) in CSV_CASES.items():
        out = tmp_path / "runs" / name
        rc = main(["import", str(src / f"{name}.csv"), "--out", str(out)])
        stdout, err = capsys.readouterr()
        _one_line_or_note(rc, stdout, err)
        if match is None:
            assert rc == 0 and load_run(out).series("val/acc")[1].tolist() == [0.5]
        else:
            assert rc == 1 and match in err and f"{name}.csv" in err, (name, err)
            assert not out.exists() and not any((tmp_path / "runs").glob(f".{name}*"))
    assert _digest(src) == before
    shutil.rmtree(tmp_path / "runs")
