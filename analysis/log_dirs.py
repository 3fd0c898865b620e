"""Find the metrics file inside a Lightning log directory, for ``phasewatch import DIR``.

``lightning_logs/`` (or one ``version_N/`` of it) -> the newest ``metrics.csv`` below it
(CSVLogger). A folder holding only TensorBoard event files gets a one-line error that says so.

Example:
    >>> find_metrics_file("lightning_logs")                  # doctest: +SKIP
    'lightning_logs/version_3/metrics.csv'
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["find_metrics_file"]


def find_metrics_file(path) -> str:
    """``path`` itself when it is a file, else the newest ``metrics.csv`` below the folder."""
    p = Path(path)
    if not p.is_dir():
        return str(path)
    csvs = sorted(p.rglob("metrics.csv"), key=lambda f: (os.path.getmtime(f), str(f)))
    if csvs:
        return str(csvs[-1])
    if any(p.rglob("*.tfevents.*")):
        raise ValueError(f"{path}: holds TensorBoard event files only; importing them is not "
                         "supported yet: log with Lightning's CSVLogger, or export the scalars as CSV")
    raise ValueError(f"{path}: no metrics.csv below this folder; pass a CSV file or a Lightning "
                     "log directory (CSVLogger)")
