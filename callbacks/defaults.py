"""The default phasewatch callback set, and how to run without tracking.

``default_callbacks()`` is what the trainer's configs turn on: weight norms, gradient stats,
per-example dynamics and (for modular-arithmetic / transformer models) circuit probes, each at
a log-spaced cadence with a ceiling on the gap (dense early, never sparser than ``max:``).

Run without tracking (for overhead comparisons): ``default_callbacks(tracking=False)`` returns
``[]``; so does any call when the environment variable ``PHASEWATCH_TRACKING`` is ``0`` /
``off`` / ``false``. With the CLI: ``PHASEWATCH_TRACKING=0 phasewatch fit --config ...``.

Default cadences (``DEFAULT_CADENCES``) and probe sizes were set from measured costs.
``python scripts/bench_callbacks.py`` (2026-12-03, 2-core machine, one torch thread, validation
every 20 steps, each config for its own ``max_steps``): whole-process median ratio with / without
the set, with its 95 % bootstrap interval over pairs run side by side, and the time spent inside
each callback's hooks as a share of the rest of one in-process run:

    config                      A (4,000 steps)          C (5,000 steps)
    default set, end to end     1.066 [1.051, 1.084]     1.026 [1.018, 1.049]
    default set, in hooks       6.5 %                    2.9 %
      WeightNormMonitor         0.3 %                    0.1 %
      GradientMonitor           0.6 %                    0.2 %
      ExampleTracker            1.3 %                    0.7 %
      CircuitCheckpoint         2.4 %                    1.6 %
      PhaseMonitor              1.9 %                    0.3 %

Log-spaced cadences are dense early, so short runs pay more per step than full ones.

``PhaseMonitor`` (online phase events, final analysis pushed to W&B) is in the set; it stands
down when the trainer also has a user-configured ``PhaseMonitor`` (e.g. to stop early:
``phasewatch fit ... --trainer.callbacks+=phasewatch.callbacks.PhaseMonitor
--trainer.callbacks.stop_after_generalization=0``).

Example:
    >>> from phasewatch.callbacks import default_callbacks
    >>> [type(c).__name__ for c in default_callbacks()]
    ['WeightNormMonitor', 'GradientMonitor', 'ExampleTracker', 'CircuitCheckpoint', 'PhaseMonitor']
    >>> default_callbacks(tracking=False)
    []
"""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl

from .circuit import CircuitCheckpoint
from .examples import ExampleTracker
from .fourier import FourierProbe
from .gradients import GradientMonitor
from .phase_monitor import PhaseMonitor
from .probes import AblationProbe, AttentionProbe
from .snapshots import WeightSnapshot
from .weights import WeightNormMonitor

__all__ = ["default_callbacks", "tracking_enabled", "DEFAULT_CADENCES", "PROBES"]

DEFAULT_CADENCES: dict[str, str] = {
    "weights": "log:20,min:5,max:200",  # 55 evaluations in 3,500 steps
    "gradients": "log:20,min:5,max:200",
    "examples": "log:10,min:10,max:200",  # 32
    "circuits": "log:8,min:50,max:500",  # 17, plus every 200 steps during a transition
    "snapshots": "log:5",
    "phases": "100",
}


def tracking_enabled() -> bool:
    """False when ``PHASEWATCH_TRACKING`` is 0 / off / false / no."""
    return os.environ.get("PHASEWATCH_TRACKING", "1").strip().lower() not in (
        "0", "off", "false", "no")


#: probes by the name ``default_callbacks(probes=[...])`` takes
PROBES = {"fourier": FourierProbe,
          "attention": lambda: AttentionProbe(max_examples=512),
          "ablation": lambda: AblationProbe(max_examples=512)}


def default_callbacks(modular: bool = True, transformer: bool = True, *,
                      tracking: bool | None = None, examples: bool = True,
                      snapshots: bool = False, cadences: dict[str, Any] | None = None,
                      probes: list[str] | None = None) -> list[pl.Callback]:
    """The default set.

    Args:
        modular: add the Fourier probe; it runs only on models exposing the hook points with a
            known modulus (``FourierProbe.missing``); on other models it is skipped with one
            warning saying what the model lacks (see docs/your_model.md).
        transformer: add the attention-entropy and ablation probes (skipped the same way where
            the model has no ``hook_pattern`` modules / fewer than two ``components()``).
        probes: instead of ``modular`` / ``transformer``: the probes asked for by name (keys of
            ``PROBES``); one that cannot run on the model stops the fit at setup with the reason.
        tracking: False -> ``[]``; None -> ``tracking_enabled()``.
        examples: add the ExampleTracker.
        snapshots: add WeightSnapshot.
        cadences: overrides of ``DEFAULT_CADENCES`` by key.
    """
    if tracking is None:
        tracking = tracking_enabled()
    if not tracking:
        return []
    cad = dict(DEFAULT_CADENCES)
    unknown = set(cadences or {}) - set(cad)
    if unknown:
        raise ValueError(f"unknown cadence keys {sorted(unknown)}; valid: {sorted(cad)}")
    cad.update(cadences or {})
    cbs: list[pl.Callback] = [WeightNormMonitor(cad["weights"]), GradientMonitor(cad["gradients"])]
    if examples:
        cbs.append(ExampleTracker(cad["examples"], strict=False))
    if probes is not None:
        unknown = [p for p in probes if p not in PROBES]
        if unknown:
            raise ValueError(f"unknown probe names {unknown}; valid: {sorted(PROBES)}")
        chosen = [PROBES[p]() for p in dict.fromkeys(probes)]
    else:
        chosen = [PROBES[p]() for p, on in (("fourier", modular), ("attention", transformer),
                                            ("ablation", transformer)) if on]
    if chosen:
        # probe every 200 steps as well while PhaseMonitor sees a transition under way
        cbs.append(CircuitCheckpoint(chosen, cadence=cad["circuits"], dense_every=200,
                                     optional=probes is None))
    if snapshots:
        cbs.append(WeightSnapshot(cad["snapshots"]))
    cbs.append(PhaseMonitor(every=int(cad["phases"]), default=True))
    return cbs
