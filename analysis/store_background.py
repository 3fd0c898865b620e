"""A trace-store writer whose routine flushes run on a writer thread, off the training thread.

``BackgroundTraceWriter`` is a ``TraceWriter`` (same files, same rows, same guarantees) except
that a flush that comes due while logging (``flush_every_rows`` / ``flush_every_s``) hands the
buffered rows to one writer thread and returns at once; SQLite releases the GIL while it
writes, so on a multi-core machine the transaction overlaps the next training steps.

Guarantees (the store's, see ``phasewatch.analysis.store``):

- order: one batch is in flight at a time, so batches commit in the order they were taken;
  payload bytes reach the OS before the index rows that point at them;
- ``flush()``, ``truncate_after``, ``compact``, ``close`` and every other database use of the
  calling thread first wait for the batch in flight, then run synchronously: after ``flush()``
  returns every row logged before it is committed (checkpoint saves and teardown rely on it);
- a killed process loses at most the rows of the current flush window and of a batch being
  written at that instant (a few milliseconds);
- a failed background write (full disk, I/O error) never raises in the training thread: its rows
  go back to the buffer, ahead of newer ones, to be written at the next flush, and one
  ``RuntimeWarning`` says so (an explicit ``flush()`` or ``close()`` that fails still raises).

Example:
    >>> import tempfile
    >>> from phasewatch.analysis import load_run
    >>> d = tempfile.mkdtemp()
    >>> with BackgroundTraceWriter(d, flush_every_rows=2) as w:
    ...     for step in range(5):
    ...         w.log_scalars({"train/loss": 1.0 / (step + 1)}, step)
    >>> load_run(d).series("train/loss")[0].tolist()
    [0, 1, 2, 3, 4]
"""
from __future__ import annotations

import sqlite3
import warnings
from concurrent.futures import Future, ThreadPoolExecutor

from .store import TraceWriter, _Batch

__all__ = ["BackgroundTraceWriter"]


class BackgroundTraceWriter(TraceWriter):
    """``TraceWriter`` with routine flushes on a writer thread (arguments: ``TraceWriter``'s)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="phasewatch-trace-writer")
        self._inflight: tuple[Future, _Batch] | None = None
        self._warned = False

    def maybe_flush(self) -> None:
        """When a flush is due, hand the buffered rows to the writer thread (not waiting)."""
        if self._inflight is not None and self._inflight[0].done():
            self._settle()
        if self._conn is None or not self._due():
            return
        self._settle()  # at most one batch in flight: batches commit in order
        batch = self._take_batch()
        if batch is not None:
            self._inflight = (self._thread.submit(self._write_batch, batch, self._conn), batch)

    def _settle(self) -> None:
        """Wait for the batch in flight; if it failed, put its rows back and warn once."""
        if self._inflight is None:
            return
        future, batch = self._inflight
        self._inflight = None
        error = future.exception()
        if error is None:
            return
        self._restore_batch(batch)
        if not self._warned:
            self._warned = True
            warnings.warn(f"phasewatch: writing {self.path} in the background failed "
                          f"({type(error).__name__}: {error}); training goes on and the rows stay "
                          "buffered for the next flush", RuntimeWarning, stacklevel=3)

    def _db(self) -> sqlite3.Connection:
        self._settle()  # the calling thread never shares the connection with a write in flight
        return super()._db()

    def close(self) -> None:
        """Wait for the writer thread, flush, and close (``TraceWriter.close``)."""
        try:
            self._settle()
            super().close()
        finally:
            self._thread.shutdown(wait=True)
