"""An in-memory trace with the reader API of ``load_run`` (``RunTrace``).

Used by the synthetic generators, the tests and anything that has arrays but no
run directory.

Example:
    >>> import numpy as np
    >>> t = MemoryTrace({"val/acc": (np.arange(3), np.array([0., .5, 1.]))})
    >>> t.names(), t.series("val/acc")[1].tolist()
    (['val/acc'], [0.0, 0.5, 1.0])
"""
from __future__ import annotations

import numpy as np

__all__ = ["MemoryTrace"]


class MemoryTrace:
    """Series ``{name: (steps, values)}``, arrays ``{name: (steps, stacked)}``, ``meta`` dict."""

    def __init__(self, series: dict | None = None, arrays: dict | None = None,
                 meta: dict | None = None, events: list | None = None, path=None):
        self._series = {k: (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
                        for k, (s, v) in (series or {}).items()}
        self._arrays = {k: (np.asarray(s, dtype=np.int64), np.asarray(a))
                        for k, (s, a) in (arrays or {}).items()}
        self.meta = dict(meta or {})
        self._events = list(events or [])
        self.path = path

    def names(self) -> list[str]:
        return sorted(self._series)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._series:
            raise KeyError(f"no series {name!r}; have {self.names()}")
        return self._series[name]

    def array_names(self) -> list[str]:
        return sorted(self._arrays)

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._arrays:
            raise KeyError(f"no array {name!r}; have {self.array_names()}")
        return self._arrays[name]

    def array(self, name: str, step: int) -> np.ndarray:
        steps, stacked = self.arrays(name)
        hit = np.flatnonzero(steps == step)
        if hit.size == 0:
            raise KeyError(f"array {name!r} has no step {step}")
        return stacked[hit[-1]]

    def events(self) -> list[dict]:
        return list(self._events)
