"""The default phasewatch callback set, and how to run without tracking.

``default_callbacks()`` is what the trainer's configs turn on: weight norms, gradient stats,
per-example dynamics and (for modular-arithmetic / transformer models) circuit probes, each at
a log-spaced cadence with a ceiling on the gap (dense early, never sparser than ``max:``).

Run without tracking (for overhead comparisons): ``default_callbacks(tracking=False)`` returns
``[]``; so does any call when the environment variable ``PHASEWATCH_TRACKING`` is ``0`` /
``off`` / ``false``. With the CLI: ``PHASEWATCH_TRACKING=0 phasewatch fit --config ...``.

Default cadences (``DEFAULT_CADENCES``) were set from measured per-evaluation costs.
Measured with ``scripts/bench_callbacks.py --steps-a 4000 --steps-c 300 --repeats 2``
(process CPU time, one torch thread, 2-core machine shared with other jobs: +-8% noise;
an earlier run of A, circuits at max:400, gave 1.13 for the default set):

    config / arm        A (4000 steps)  C (300 steps)  C projected to 3500 steps
    default set         1.01            1.28           1.06
    WeightNormMonitor   1.04            1.02           1.00
    GradientMonitor     1.03            1.05           1.01
    ExampleTracker      1.08            1.07           1.02
    CircuitCheckpoint   1.09            1.12           1.03

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

__all__ = ["default_callbacks", "tracking_enabled", "DEFAULT_CADENCES"]

DEFAULT_CADENCES: dict[str, str] = {
    "weights": "log:20,min:5,max:200",  # 60 evaluations in 3,500 steps
    "gradients": "log:20,min:5,max:200",
    "examples": "log:10,min:10,max:200",  # 36
    "circuits": "log:8,min:20,max:500",  # 24
    "snapshots": "log:5",
    "phases": "100",
}


def tracking_enabled() -> bool:
    """False when ``PHASEWATCH_TRACKING`` is 0 / off / false / no."""
    return os.environ.get("PHASEWATCH_TRACKING", "1").strip().lower() not in (
        "0", "off", "false", "no")


def default_callbacks(modular: bool = True, transformer: bool = True, *,
                      tracking: bool | None = None, examples: bool = True,
                      snapshots: bool = False, cadences: dict[str, Any] | None = None
                      ) -> list[pl.Callback]:
    """The default set.

    Args:
        modular: add the Fourier probe; it runs only on models exposing the hook points with a
            known modulus (``FourierProbe.applicable``), so the default is safe for any model.
        transformer: add the attention-entropy and ablation probes (they too apply only where
            the model has ``hook_pattern`` modules / several ``components()``).
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
    probes: list[Any] = []
    if modular:
        probes.append(FourierProbe())
    if transformer:
        probes += [AttentionProbe(max_examples=1024), AblationProbe(max_examples=1024)]
    if probes:
        # probe every 100 steps as well while PhaseMonitor sees a transition under way
        cbs.append(CircuitCheckpoint(probes, cadence=cad["circuits"], dense_every=100))
    if snapshots:
        cbs.append(WeightSnapshot(cad["snapshots"]))
    cbs.append(PhaseMonitor(every=int(cad["phases"]), default=True))
    return cbs
