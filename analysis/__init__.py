"""phasewatch.analysis"""
from .store import TraceStoreError, TraceWriter  # noqa: F401
from .store_read import RunTrace, load_run  # noqa: F401
