"""phasewatch.callbacks — Lightning callbacks that track training dynamics on any LightningModule.

Example:
    >>> import pytorch_lightning as pl
    >>> from phasewatch.callbacks import TraceLogger, default_callbacks
    >>> trainer = pl.Trainer(logger=TraceLogger("runs"), callbacks=default_callbacks(modular=True))
"""

from ._base import CallbackError, CallbackSetupError, LeanCallback
from .cadence import Cadence
from .circuit import CircuitCheckpoint, Probe, ProbeContext, ProbeResult
from .defaults import DEFAULT_CADENCES, default_callbacks, tracking_enabled
from .examples import ExampleTracker
from .fourier import FourierProbe
from .gradients import GradientMonitor
from .induction import InductionProbe, RepeatSet
from .llc import LLCProbe, estimate_llc
from .phase_monitor import PhaseMonitor, dense_requested
from .probes import AblationProbe, AttentionProbe
from .tl_adapter import TransformerLensAdapter
from .snapshots import WeightSnapshot, list_snapshots, load_snapshot
from .trace_logger import TraceLogger, find_trace_logger, log_array, log_scalars
from .weights import WeightNormMonitor

__all__ = [
    "AblationProbe", "AttentionProbe", "CallbackError", "CallbackSetupError", "Cadence", "CircuitCheckpoint", "DEFAULT_CADENCES",
    "ExampleTracker", "FourierProbe", "GradientMonitor", "LeanCallback", "PhaseMonitor", "Probe", "ProbeContext", "ProbeResult",
    "TraceLogger", "TransformerLensAdapter", "WeightNormMonitor", "WeightSnapshot", "default_callbacks", "dense_requested",
    "find_trace_logger", "list_snapshots", "load_snapshot", "log_array", "log_scalars",
    "tracking_enabled",
]
__all__ += ["InductionProbe", "LLCProbe", "RepeatSet", "estimate_llc"]
