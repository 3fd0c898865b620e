"""Import traces logged elsewhere into a phasewatch run directory (``phasewatch import``).

Formats (``fmt="auto"`` detects them from the header):

| format | recognised by | step column |
|---|---|---|
| ``long`` | columns ``step,name,value`` | ``step`` |
| ``wandb`` | a ``_step`` or ``trainer/global_step`` column (history export); chart exports with ``Step`` and ``<run> - metric`` columns (``__MIN``/``__MAX`` dropped) | ``trainer/global_step`` if present, else ``_step`` / ``Step`` |
| ``lightning`` | anything else with a ``step`` column (CSVLogger ``metrics.csv``: wide, blank where not logged) | ``step`` |

Blank, ``nan``/``NaN`` or non-numeric value cells are skipped (``inf`` is kept, so a diverged
run stays diverged); a blank step cell skips its row, any other step that is not an integer in
``[0, 2**63-1]`` (``-3``, ``0.5``, ``1e30``, ``inf``, ``nan``) is an error naming its line. W&B
bookkeeping columns (``_runtime``, ``_timestamp``, ``_step``) are dropped. ``mapping`` renames
series (``{"val_acc": "val/acc"}``). A UTF-8 byte-order mark is accepted.

Ambiguous inputs are refused, listing what was found: two columns that end up with one series
name (also after the W&B run prefix is stripped or after ``mapping``), and a W&B chart export
holding several runs (pick one with ``run=``, ``--run NAME``).

Atomic: the run directory is built in a hidden temporary folder next to ``out_dir`` and
renamed into place only when complete, so a failed import leaves nothing behind and a retry
works. Parsing uses pandas' C reader and writes each series with one ``log_series`` call:
10^6 rows import in about a second (``scripts/bench_store.py --import-rows``).

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "m.csv")
    >>> _ = open(p, "w").write("step,val_acc\\n0,0.1\\n10,\\n10,0.9\\n")
    >>> out = import_csv(p, os.path.join(d, "run"), mapping={"val_acc": "val/acc"})
    >>> from phasewatch.analysis import load_run
    >>> load_run(out).series("val/acc")[1].tolist()
    [0.1, 0.9]
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections import Counter

import numpy as np

__all__ = ["parse_mapping", "detect_format", "import_csv", "check_out_dir", "write_run_dir"]

WANDB_DROP = {"_runtime", "_timestamp", "_step", "_wandb"}
FORMATS = ("auto", "long", "wandb", "lightning")


def parse_mapping(items) -> dict[str, str]:
    """``["old=new", ...]`` -> ``{"old": "new"}``; ValueError naming a malformed item."""
    out = {}
    for it in items or []:
        if "=" not in it or not it.split("=", 1)[0] or not it.split("=", 1)[1]:
            raise ValueError(f"--map expects OLD=NEW, got {it!r}")
        old, new = it.split("=", 1)
        out[old.strip()] = new.strip()
    return out


def detect_format(header: list[str]) -> str:
    """``long``, ``wandb`` or ``lightning`` from a CSV header."""
    h = [c.strip() for c in header]
    if set(h) >= {"step", "name", "value"} and len(h) <= 4:
        return "long"
    if "_step" in h or "trainer/global_step" in h or "Step" in h:
        return "wandb"
    return "lightning"


def _read_header(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text CSV file ({e.reason})") from e
    except csv.Error as e:
        raise ValueError(f"{path}: not a readable CSV file ({e})") from e
    if not header or len(header) < 2:
        raise ValueError(f"{path}: empty file or no CSV header with at least two columns")
    return [c.strip() for c in header]


def _unique(path: str, pairs: list[tuple[int, str]], what: str) -> None:
    """Refuse two columns that would write one series (they would silently overwrite)."""
    dup = sorted(n for n, k in Counter(n for _, n in pairs).items() if k > 1)
    if dup:
        raise ValueError(f"{path}: several columns give the series {dup} ({what}); rename them "
                         "with --map OLD=NEW or drop one")


def _wide_columns(path: str, header: list[str], fmt: str, mapping: dict, i_step: int,
                  run: str | None) -> list[tuple[int, str]]:
    """``(column index, series name)`` of the value columns of a wide CSV."""
    cols = [(j, c) for j, c in enumerate(header) if j != i_step and c and c not in WANDB_DROP
            and not c.endswith(("__MIN", "__MAX"))]
    _unique(path, cols, "duplicate header names")
    if fmt == "wandb":
        runs = sorted({c.split(" - ", 1)[0] for _, c in cols if " - " in c})
        if run is not None:
            if run not in runs:
                raise ValueError(f"{path}: no run {run!r} in this W&B export; runs: {runs}")
            cols = [(j, c) for j, c in cols if c.startswith(run + " - ")]
        elif len(runs) > 1:
            raise ValueError(f"{path}: W&B export holds {len(runs)} runs {runs[:20]}; import one "
                             "with --run NAME (one run directory per run)")
        cols = [(j, c.split(" - ", 1)[1] if " - " in c else c) for j, c in cols]
        _unique(path, cols, "after stripping the W&B run prefix")
    named = [(j, mapping.get(header[j], mapping.get(c, c))) for j, c in cols]
    _unique(path, named, "after --map")
    return named


def _numbers(col) -> np.ndarray:
    """A column as float64, NaN where blank / not a number (parsed in C unless it has junk)."""
    import pandas as pd
    if col.dtype.kind not in "biuf":
        col = pd.to_numeric(col, errors="coerce")
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def _read_table(path: str, usecols: list[int], as_text: bool = False):
    import pandas as pd
    try:
        return pd.read_csv(path, header=None, skiprows=1, usecols=usecols, encoding="utf-8-sig",
                           skipinitialspace=True, engine="c", on_bad_lines="error", skip_blank_lines=False,
                           **({"dtype": str, "keep_default_na": False} if as_text else {}))
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: no numeric values found (a header and no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: malformed CSV ({str(e).splitlines()[0][:200]})") from e


def _steps(path: str, col, i_s: int) -> tuple[np.ndarray, np.ndarray]:
    """``(steps int64, has_step)`` of the step column: a blank cell skips its row; anything
    else that is not an integer in [0, 2**63-1] is an error naming its line."""
    if col.dtype.kind in "iu":
        values, has = col.to_numpy(), np.ones(len(col), bool)
        bad = values < 0
    else:
        values = _numbers(col)
        has = ~np.isnan(values)
        if not has.all():  # blank, or a token read as missing ("nan", "NA"): look at the text
            text = _read_table(path, [i_s], as_text=True)[i_s].str.strip().to_numpy()
            has = text != ""
        bad = has & ~((values >= 0) & (values < 2.0**63) & (np.floor(values) == values))
    if bad.any():
        i = int(np.argmax(bad))
        cell = _read_table(path, [i_s], as_text=True)[i_s].iloc[i]
        raise ValueError(f"{path}: line {i + 2}: step {cell!r} is not an integer in "
                         "[0, 2**63-1]; fix or drop that row")
    return np.where(has, values, 0).astype(np.int64), has


def read_series(path, fmt: str = "auto", mapping: dict | None = None,
                step_column: str | None = None, run: str | None = None):
    """``(fmt, {name: (steps int64, values float64)})`` of a CSV file (rows in file order)."""
    path, mapping = str(path), mapping or {}
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
    header = _read_header(path)
    fmt = detect_format(header) if fmt == "auto" else fmt
    if fmt == "long":
        missing = {"step", "name", "value"} - set(header)
        if missing:
            raise ValueError(f"{path}: long format needs columns step,name,value; missing {sorted(missing)}")
        i_s, i_n, i_v = (header.index(c) for c in ("step", "name", "value"))
        table = _read_table(path, [i_s, i_n, i_v])
        steps, has = _steps(path, table[i_s], i_s)
        values = _numbers(table[i_v])
        codes, uniques = _factorize(table[i_n])
        names = {}  # stripped, mapped name -> codes that spell it
        for k, raw in enumerate(uniques):
            name = raw.strip()
            if name:
                names.setdefault(mapping.get(name, name), []).append(k)
        keep = has & ~np.isnan(values)
        out = {}
        for name, ks in names.items():
            sel = keep & np.isin(codes, ks)
            if sel.any():
                out[name] = (steps[sel], values[sel])
        return fmt, out
    if step_column is None:
        cands = (("trainer/global_step", "_step", "Step", "step") if fmt == "wandb"
                 else ("step", "Step", "global_step", "trainer/global_step"))
        step_column = next((c for c in cands if c in header), None)
    if step_column not in header:
        raise ValueError(f"{path}: no step column ({step_column or 'step'}); columns are {header[:12]}")
    i_s = header.index(step_column)
    cols = _wide_columns(path, header, fmt, mapping, i_s, run)
    table = _read_table(path, [i_s, *(j for j, _ in cols)])
    steps, has = _steps(path, table[i_s], i_s)
    out = {}
    for j, name in cols:
        values = _numbers(table[j])
        keep = has & ~np.isnan(values)
        if keep.any():
            out[name] = (steps[keep], values[keep])
    return fmt, out


def _factorize(col) -> tuple[np.ndarray, list[str]]:
    import pandas as pd
    codes, uniques = pd.factorize(col.fillna(""))
    return codes, [str(u) for u in uniques]


def import_csv(path, out_dir, fmt: str = "auto", mapping: dict | None = None,
               step_column: str | None = None, run: str | None = None) -> str:
    """Write the CSV at ``path`` as the new run directory ``out_dir`` (atomically); return it."""
    check_out_dir(str(out_dir))
    fmt, series = read_series(str(path), fmt, mapping, step_column, run)
    return write_run_dir(series, out_dir, path, fmt)


def check_out_dir(out_dir: str) -> None:
    """ValueError unless ``out_dir`` is new or an empty folder (an import never overwrites)."""
    from .store import TRACE_FILE

    if os.path.exists(os.path.join(out_dir, TRACE_FILE)):
        raise ValueError(f"{out_dir}: already holds a trace; choose a new --out directory")
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise ValueError(f"{out_dir}: exists and is not an empty folder; choose a new --out directory")


def write_run_dir(series: dict, out_dir, source, fmt: str) -> str:
    """Write ``{name: (steps, values)}`` read from ``source`` as the new run directory
    ``out_dir``: built in a hidden folder beside it, renamed into place when complete."""
    from .store import TraceWriter

    out_dir = str(out_dir)
    check_out_dir(out_dir)
    if not series:
        raise ValueError(f"{source}: no numeric values found")
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out_dir))}.import-", dir=parent)
    try:
        with TraceWriter(tmp, scratch=True) as w:
            for name, (steps, values) in series.items():
                w.log_series(name, steps, values)
            w.set_meta("imported_from", os.path.abspath(source))
            w.set_meta("import_format", fmt)
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above); rename() onto it is not portable
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
