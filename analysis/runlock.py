"""One writer per run directory: an OS-level lock that dies with its process.

``RunLock(run_dir).acquire()`` takes ``RUN/.writer.lock`` (``filelock``: ``flock`` on POSIX,
``msvcrt.locking`` on Windows) without waiting and records the holder's PID in
``RUN/.writer.pid``. A second writer - another process, or a second ``TraceWriter`` in the same
one - gets ``RunDirBusy`` naming that PID. The OS drops the lock when the holder exits, however
it exits (SIGKILL included), so a killed run can be resumed at once. Readers never take it.

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> lock = RunLock(d).acquire()
    >>> RunLock(d).acquire()                     # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    phasewatch.analysis.runlock.RunDirBusy: ...: another writer (PID ...) is writing this run directory; ...
    >>> lock.release()
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LOCK_FILE", "PID_FILE", "RunDirBusy", "RunLock"]

LOCK_FILE = ".writer.lock"
PID_FILE = ".writer.pid"


class RunDirBusy(ValueError):
    """Another writer holds the run directory; the message names its PID."""


class RunLock:
    """The writer lock of ``run_dir`` (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        from filelock import FileLock  # writers only: readers never pay its import

        self.run_dir = Path(run_dir)
        self._lock = FileLock(str(self.run_dir / LOCK_FILE), thread_local=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> "RunLock":
        """Take the lock now or raise ``RunDirBusy``; returns ``self``."""
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise RunDirBusy(f"{self.run_dir}: another writer (PID {self.holder_pid() or '?'}) is "
                             "writing this run directory; wait for it to end or stop it, then "
                             "retry (readers such as analyze / watch need no lock)") from None
        try:
            (self.run_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        except OSError:  # the PID is a courtesy for the error message; the lock is what counts
            pass
        return self

    def holder_pid(self) -> int | None:
        """The PID recorded by the current (or last) holder, if readable."""
        try:
            return int((self.run_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        """Release the lock (a no-op when not held)."""
        if self._lock.is_locked:
            try:
                (self.run_dir / PID_FILE).unlink(missing_ok=True)
            except OSError:
                pass
            self._lock.release(force=True)
