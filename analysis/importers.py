"""Import traces logged elsewhere into a phasewatch run directory (``phasewatch import``).

Formats (``fmt="auto"`` detects them from the header):

| format | recognised by | step column |
|---|---|---|
| ``long`` | columns ``step,name,value`` | ``step`` |
| ``wandb`` | a ``_step`` or ``trainer/global_step`` column (history export); chart exports with ``Step`` and ``<run> - metric`` columns (``__MIN``/``__MAX`` dropped) | ``trainer/global_step`` if present, else ``_step`` / ``Step`` |
| ``lightning`` | anything else with a ``step`` column (CSVLogger ``metrics.csv``: wide, blank where not logged) | ``step`` |

Blank, ``nan``/``NaN`` or non-numeric cells are skipped (``inf`` is kept, so a diverged
run stays diverged). W&B bookkeeping columns (``_runtime``, ``_timestamp``, ``_step``)
are dropped. ``mapping`` renames series (``{"val_acc": "val/acc"}``). Rows are written
through the store's ``TraceWriter``; the run meta records the source file and format.

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
import math
import os

__all__ = ["parse_mapping", "detect_format", "read_csv_rows", "import_csv"]

WANDB_DROP = {"_runtime", "_timestamp", "_step", "_wandb"}


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


def _num(cell: str) -> float | None:
    cell = cell.strip()
    if not cell:
        return None
    try:
        v = float(cell)
    except ValueError:
        return None
    return None if math.isnan(v) else v


def _step(cell: str, path: str, line: int) -> int | None:
    v = _num(cell)
    if v is None:
        return None
    if v < 0 or v != int(v):
        raise ValueError(f"{path}: line {line}: step {cell!r} is not a non-negative integer")
    return int(v)


def read_csv_rows(path: str, fmt: str = "auto", mapping: dict | None = None,
                  step_column: str | None = None):
    """Yield ``(step, {name: value})`` from a CSV file; returns the detected format via ``.fmt``."""
    mapping = mapping or {}
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        f = open(path, newline="", encoding="utf-8")
        reader = csv.reader(f)
        header = next(reader, None)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text CSV file ({e.reason})") from e
    except csv.Error as e:
        raise ValueError(f"{path}: not a readable CSV file ({e})") from e
    if not header or len(header) < 2:
        f.close()
        raise ValueError(f"{path}: empty file or no CSV header with at least two columns")
    header = [c.strip() for c in header]
    fmt = detect_format(header) if fmt == "auto" else fmt
    if fmt not in ("long", "wandb", "lightning"):
        raise ValueError(f"unknown format {fmt!r}; use auto, lightning, wandb or long")
    rows = []
    with f:
        try:
            if fmt == "long":
                missing = {"step", "name", "value"} - set(header)
                if missing:
                    raise ValueError(f"{path}: long format needs columns step,name,value; missing {sorted(missing)}")
                i_s, i_n, i_v = header.index("step"), header.index("name"), header.index("value")
                for ln, r in enumerate(reader, start=2):
                    if len(r) <= max(i_s, i_n, i_v):
                        continue
                    st, v = _step(r[i_s], path, ln), _num(r[i_v])
                    if st is not None and v is not None and r[i_n].strip():
                        name = r[i_n].strip()
                        rows.append((st, {mapping.get(name, name): v}))
                return fmt, rows
            if step_column is None:
                if fmt == "wandb":
                    cands = ("trainer/global_step", "_step", "Step", "step")
                else:
                    cands = ("step", "Step", "global_step", "trainer/global_step")
                step_column = next((c for c in cands if c in header), None)
            if step_column not in header:
                raise ValueError(f"{path}: no step column ({step_column or 'step'}); columns are {header[:12]}")
            i_s = header.index(step_column)
            cols = []
            for j, c in enumerate(header):
                if j == i_s or c in WANDB_DROP or c.endswith(("__MIN", "__MAX")) or not c:
                    continue
                name = c.split(" - ", 1)[1] if fmt == "wandb" and " - " in c else c
                cols.append((j, mapping.get(c, mapping.get(name, name))))
            for ln, r in enumerate(reader, start=2):
                if len(r) <= i_s:
                    continue
                st = _step(r[i_s], path, ln)
                if st is None:
                    continue
                vals = {}
                for j, name in cols:
                    if j < len(r):
                        v = _num(r[j])
                        if v is not None:
                            vals[name] = v
                if vals:
                    rows.append((st, vals))
        except csv.Error as e:
            raise ValueError(f"{path}: malformed CSV ({e})") from e
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not a text CSV file ({e.reason})") from e
    return fmt, rows


def import_csv(path, out_dir, fmt: str = "auto", mapping: dict | None = None,
               step_column: str | None = None) -> str:
    """Write the CSV at ``path`` as a run directory ``out_dir``; return ``out_dir``."""
    from .store import TraceWriter

    path, out_dir = str(path), str(out_dir)
    fmt, rows = read_csv_rows(path, fmt, mapping, step_column)
    if not rows:
        raise ValueError(f"{path}: no numeric values found")
    if os.path.exists(os.path.join(out_dir, "trace.sqlite")):
        raise ValueError(f"{out_dir}: already holds a trace; choose a new --out directory")
    merged: dict[int, dict] = {}
    for st, vals in rows:                      # later rows win for the same (step, name)
        merged.setdefault(st, {}).update(vals)
    w = TraceWriter(out_dir)
    try:
        for st in sorted(merged):
            w.log_scalars(merged[st], st)
        w.set_meta("imported_from", os.path.abspath(path))
        w.set_meta("import_format", fmt)
    finally:
        w.close()
    return out_dir
