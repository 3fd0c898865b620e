"""When a callback runs: every N steps, or log-spaced (dense early, sparse late).

A cadence is a pure, stateless function of the step, so a resumed run evaluates at exactly
the same steps as an uninterrupted one.

Example:
    >>> c = Cadence.parse("log:20")
    >>> [s for s in range(13) if c.due(s)]
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12]
    >>> Cadence.parse("every:10").due(30), Cadence.parse(10).due(31)
    (True, False)
    >>> sum(Cadence.parse("log:20,max:100").due(s) for s in range(4001)) < 120
    True
"""

from __future__ import annotations

import math

__all__ = ["Cadence"]

_EPS = 1e-9


class Cadence:
    """Deterministic schedule over `trainer.global_step`.

    Args:
        every: run when ``step % every == 0`` (and at step 0).
        points_per_decade: log spacing: about this many evaluations per decade of steps.
        min_every: with log spacing, only steps that are multiples of ``min_every`` (caps density).
        max_every: with log spacing, also every ``max_every`` steps (caps sparseness); past the
            step where the log grid's own gap exceeds ``max_every``, only those multiples (log
            points there would add near-duplicates such as 1,780 next to 1,800).

    Exactly one of ``every`` / ``points_per_decade`` is given; ``Cadence.never()`` never runs.
    String forms (for configs): ``"every:10"``, ``"10"``, ``"log:20"``,
    ``"log:20,min:5,max:500"``, ``"never"``.
    """

    def __init__(self, every: int | None = None, points_per_decade: float | None = None,
                 min_every: int = 1, max_every: int | None = None, _never: bool = False):
        if not _never and (every is None) == (points_per_decade is None):
            raise ValueError(f"give exactly one of every={every!r} or "
                             f"points_per_decade={points_per_decade!r}")
        if every is not None and (not isinstance(every, int) or every < 1):
            raise ValueError(f"every must be a positive int, got {every!r}")
        if points_per_decade is not None and not 0 < points_per_decade < 1e6:
            raise ValueError(f"points_per_decade must be in (0, 1e6), got {points_per_decade!r}")
        if not isinstance(min_every, int) or min_every < 1:
            raise ValueError(f"min_every must be a positive int, got {min_every!r}")
        if max_every is not None and (not isinstance(max_every, int) or max_every < 1):
            raise ValueError(f"max_every must be a positive int or None, got {max_every!r}")
        self.every = every
        self.points_per_decade = points_per_decade
        self.min_every = min_every
        self.max_every = max_every
        self._never = _never
        self._memo: dict[int, bool] = {}
        # the log grid's gap near step s is s * (10**(1/ppd) - 1); past this step it exceeds max
        self._log_until = (max_every / (10 ** (1 / points_per_decade) - 1)
                           if max_every is not None and points_per_decade else math.inf)

    # ---- constructors --------------------------------------------------------------------
    @classmethod
    def every_n(cls, n: int) -> "Cadence":
        return cls(every=n)

    @classmethod
    def log(cls, points_per_decade: float = 20, min_every: int = 1,
            max_every: int | None = None) -> "Cadence":
        return cls(points_per_decade=points_per_decade, min_every=min_every, max_every=max_every)

    @classmethod
    def never(cls) -> "Cadence":
        return cls(_never=True)

    @classmethod
    def parse(cls, spec: "Cadence | str | int | None") -> "Cadence":
        """Build from a Cadence, an int (every N; 0 = never), a string, or None (never)."""
        if isinstance(spec, Cadence):
            return spec
        if spec is None:
            return cls.never()
        if isinstance(spec, bool):
            raise ValueError(f"cadence must be an int, a string or a Cadence, got {spec!r}")
        if isinstance(spec, int):
            if spec < 0:
                raise ValueError(f"cadence must be >= 0, got {spec!r}")
            return cls.never() if spec == 0 else cls(every=spec)
        if not isinstance(spec, str):
            raise ValueError(f"cadence must be an int, a string or a Cadence, got {spec!r}")
        s = spec.strip().lower()
        if s in ("never", "off", "none", "0"):
            return cls.never()
        if s.isdigit():
            return cls(every=int(s))
        parts = [p.strip() for p in s.split(",")]
        head = parts[0].split(":")
        try:
            kw = {}
            for opt in parts[1:]:
                key, val = opt.split(":")
                if key not in ("min", "max"):
                    raise ValueError
                kw[f"{key}_every"] = int(val)
            if head[0] == "every" and len(head) == 2 and not kw:
                return cls(every=int(head[1]))
            if head[0] == "log" and len(head) in (1, 2):
                ppd = float(head[1]) if len(head) == 2 else 20.0
                return cls(points_per_decade=ppd, **kw)
        except ValueError as err:
            if "must be" in str(err):
                raise ValueError(f"bad cadence {spec!r}: {err}") from None
        raise ValueError(f"cannot parse cadence {spec!r}; use 'every:N', 'log:PPD[,min:N][,max:N]' "
                         "or 'never'")

    # ---- the schedule --------------------------------------------------------------------
    def _bucket(self, step: int) -> int:
        return math.floor(self.points_per_decade * math.log10(step) + _EPS)

    def due(self, step: int) -> bool:
        """True when a callback with this cadence runs at ``step`` (step 0 included)."""
        hit = self._memo.get(step)
        if hit is None:
            hit = self._memo[step] = self._due(step)
            if len(self._memo) > 4096:
                self._memo.clear()
        return hit

    def _due(self, step: int) -> bool:
        if self._never or step < 0:
            return False
        if step == 0:
            return True
        if self.every is not None:
            return step % self.every == 0
        if self.max_every is not None and step % self.max_every == 0:
            return True
        m = self.min_every
        if step % m or step > self._log_until:
            return False
        prev = step - m
        # due when a log grid point 10**(i/ppd) falls in (prev, step]
        return prev < 1 or self._bucket(step) > self._bucket(prev)

    def steps(self, last: int) -> list[int]:
        """All due steps in [0, last] (for planning budgets)."""
        return [s for s in range(last + 1) if self.due(s)]

    def __repr__(self) -> str:
        if self._never:
            return "Cadence('never')"
        if self.every is not None:
            return f"Cadence('every:{self.every}')"
        extra = (f",min:{self.min_every}" if self.min_every > 1 else "") + \
                (f",max:{self.max_every}" if self.max_every else "")
        return f"Cadence('log:{self.points_per_decade:g}{extra}')"

    def __eq__(self, other) -> bool:
        return isinstance(other, Cadence) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))
