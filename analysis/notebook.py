"""Notebook API: a run as a pandas DataFrame, its events as another, rich HTML display.

``open_run(path)`` returns a ``Run``: ``run.to_pandas()`` (wide: one row per step, one column
per scalar series, NaN where a series has no value at that step), ``run.events()`` (the
analysis events as a DataFrame), ``run.analysis()`` (the ``AnalysisResult``, cached),
``run.plot(ax=None)`` (a matplotlib Figure, see ``phasewatch.analysis.figures``). A ``Run`` and
an ``AnalysisResult`` display as HTML tables in Jupyter (``_repr_html_``). pandas is optional
(``pip install 'phasewatch[notebook]'``) and imported only by the DataFrame methods.

Example:
    >>> from phasewatch.analysis.notebook import open_run
    >>> run = open_run("runs/latest")                        # doctest: +SKIP
    >>> df = run.to_pandas(["train/acc", "val/acc"])         # doctest: +SKIP
    >>> run.plot()                                           # doctest: +SKIP
"""
from __future__ import annotations

import html
import os

import numpy as np

from .analyzer import AnalysisConfig, AnalysisResult, analyze_trace

__all__ = ["Run", "open_run", "events_frame", "result_html"]

EVENT_COLUMNS = ("name", "step", "low", "high", "signal")


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("this needs pandas: pip install 'phasewatch[notebook]' (or pandas)") from None
    return pd


def events_frame(result: AnalysisResult):
    """The events of an analysis result as a DataFrame (columns ``EVENT_COLUMNS``, by step)."""
    pd = _pandas()
    rows = [{"name": e.name, "step": e.step, "low": e.low, "high": e.high, "signal": e.signal}
            for e in result.events]
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS)).astype(
        {"step": "Int64", "low": "Int64", "high": "Int64"})


def result_html(result: AnalysisResult) -> str:
    """An HTML summary of an analysis result: class, reason, events."""
    rows = "".join(f"<tr><td>{html.escape(e.name)}</td><td>{e.step}</td><td>[{e.low}, {e.high}]</td>"
                   f"<td>{html.escape(str(e.signal))}</td></tr>" for e in result.events)
    run = f"{html.escape(str(result.run))}: " if getattr(result, "run", None) else ""
    return (f"<div><b>{run}{html.escape(result.run_class)}</b>"
            f"{' (censored)' if result.censored else ''} &mdash; {html.escape(result.class_reason)}"
            "<table><tr><th>event</th><th>step</th><th>interval</th><th>signal</th></tr>"
            f"{rows}</table></div>")


class Run:
    """One run directory, read-only (see the module docstring). Close it, or use ``with``."""

    def __init__(self, path, config: AnalysisConfig | None = None):
        from .report import run_tag
        from .store_read import load_run
        self.path = str(path)
        self.run_id = run_tag(path)
        self.trace = load_run(path)
        self.config = config or AnalysisConfig()
        self._result: AnalysisResult | None = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.trace.close()

    def names(self) -> list[str]:
        return self.trace.names()

    def series(self, name: str):
        return self.trace.series(name)

    def analysis(self, config: AnalysisConfig | None = None) -> AnalysisResult:
        """The offline analysis (``analyze_trace``) of the run; cached for the run's config."""
        if config is not None and config != self.config:
            return analyze_trace(self.trace, config, run=self.run_id)
        if self._result is None:
            self._result = analyze_trace(self.trace, self.config, run=self.run_id)
        return self._result

    def to_pandas(self, names: list[str] | None = None):
        """Wide DataFrame: index ``step`` (every step any chosen series has), one column per
        scalar series (all of them by default); a step logged twice keeps its last value."""
        pd = _pandas()
        names = self.names() if names is None else list(names)
        cols = {}
        for n in names:
            s, v = self.series(n)
            cols[n] = pd.Series(np.asarray(v, float), index=pd.Index(np.asarray(s, np.int64), name="step"))
            cols[n] = cols[n][~cols[n].index.duplicated(keep="last")]
        if not cols:
            return pd.DataFrame(index=pd.Index([], name="step", dtype=np.int64))
        return pd.DataFrame(cols).sort_index().rename_axis("step")

    def events(self, config: AnalysisConfig | None = None):
        """The analysis events as a DataFrame (``events_frame``)."""
        return events_frame(self.analysis(config))

    def plot(self, ax=None, **kw):
        """Accuracies, losses and events: ``phasewatch.analysis.figures.plot_run``."""
        from .figures import plot_run
        return plot_run(self, ax=ax, **kw)

    def _repr_html_(self) -> str:
        meta = self.trace.meta
        n_steps = max((int(self.series(n)[0].max()) for n in self.names() if self.series(n)[0].size),
                      default=None)
        return (f"<div><b>run {html.escape(self.run_id)}</b> ({html.escape(self.path)}), status "
                f"{html.escape(str(meta.get('status', '?')))}, last step {n_steps}, "
                f"{len(self.names())} series, {len(self.trace.array_names())} arrays"
                f"{result_html(self.analysis())}</div>")

    def __repr__(self) -> str:
        return f"Run({self.path!r})"


def open_run(path, config: AnalysisConfig | None = None) -> Run:
    """A :class:`Run` for run directory ``path`` (``runs/latest`` works; the id is the target's)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such run directory")
    return Run(path, config)
