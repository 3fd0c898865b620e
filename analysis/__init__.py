"""phasewatch.analysis — torch-free trace store, analyzer, reports.

Example:
    >>> from phasewatch.analysis import analyze_run          # doctest: +SKIP
    >>> res = analyze_run("runs/latest"); res.run_class, res.event("generalization")
"""
from .store import TraceStoreError, TraceWriter  # noqa: F401
from .store_read import RunTrace, load_run  # noqa: F401
from .analyzer import AnalysisConfig, AnalysisResult, analyze_run, analyze_trace, write_analysis  # noqa: F401
from .classify import ClassifyConfig  # noqa: F401
from .events import Event, Transition  # noqa: F401
from .memtrace import MemoryTrace  # noqa: F401
from .watch import Watcher, live_events  # noqa: F401
