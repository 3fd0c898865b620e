"""Find the metrics inside a Lightning log directory, for ``phasewatch import DIR``.

``lightning_logs/`` (or one ``version_N/`` of it) -> the newest ``metrics.csv`` below it
(CSVLogger); when there is none, the newest folder of TensorBoard event files
(TensorBoardLogger's ``version_N/``, or the folder itself when it holds them).

Example:
    >>> find_trace_source("lightning_logs")                  # doctest: +SKIP
    ('csv', 'lightning_logs/version_3/metrics.csv')
    >>> find_trace_source("tb_logs/my_model")                # doctest: +SKIP
    ('tensorboard', 'tb_logs/my_model/version_1')
"""
from __future__ import annotations

import os
from pathlib import Path

from .tb_events import is_event_file

__all__ = ["find_trace_source"]


def find_trace_source(path) -> tuple[str, str]:
    """``("csv" | "tensorboard", path)``: a file as it is (an event file by its name), else the
    newest ``metrics.csv`` below the folder, else its newest folder of event files."""
    p = Path(path)
    if not p.is_dir():
        return ("tensorboard" if is_event_file(p) else "csv"), str(path)
    csvs = sorted(p.rglob("metrics.csv"), key=lambda f: (os.path.getmtime(f), str(f)))
    if csvs:
        return "csv", str(csvs[-1])
    if any(is_event_file(f) for f in p.iterdir()):
        return "tensorboard", str(path)
    events = sorted((f for f in p.rglob("*") if f.is_file() and is_event_file(f)),
                    key=lambda f: (os.path.getmtime(f), str(f)))
    if events:
        return "tensorboard", str(events[-1].parent)
    raise ValueError(f"{path}: no metrics.csv and no TensorBoard event files below this folder; "
                     "pass a CSV file, an event file or a Lightning log directory")
