"""What ``phasewatch fit`` shows on the console: a step progress bar with train / val accuracy,
each phase event as PhaseMonitor confirms it, the run class at the end, and one-line errors.

``StepProgressBar`` replaces Lightning's per-epoch bar (which reads ``Epoch 0: 1/1`` again and
again for full-batch training): one bar over ``max_steps`` whose postfix holds the train / val
accuracy (names resolved by ``phasewatch.analysis.names``) and the last loss.
``EventPrinter`` prints ``phase event: generalization at step 1175`` once per event PhaseMonitor
confirms during training, and ``class: grokking - ...`` at the end of fit (the final analysis'
other events are in ``analysis.json`` and ``phasewatch analyze``).

Example:
    >>> bar = StepProgressBar()
    >>> bar.refresh_rate
    1
"""
from __future__ import annotations

import sys
from typing import Any

from pytorch_lightning.callbacks import TQDMProgressBar

from phasewatch.analysis.names import resolve
from phasewatch.callbacks._base import LeanCallback

__all__ = ["StepProgressBar", "EventPrinter", "usage_error"]


class StepProgressBar(TQDMProgressBar):
    """One tqdm bar over the optimizer steps, with train / val accuracy in its postfix."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.train_progress_bar = self.init_train_tqdm()
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self.train_progress_bar.reset(total=total)
        self.train_progress_bar.initial = 0
        self.train_progress_bar.n = int(trainer.global_step)
        self.train_progress_bar.set_description("step")

    def on_train_epoch_start(self, trainer, *_: Any) -> None:
        pass  # one bar for the whole run, not one per epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar = self.train_progress_bar
        if bar is None or bar.disable:
            return
        bar.n = int(trainer.global_step)
        if trainer.global_step % max(self.refresh_rate, 1) == 0:
            bar.set_postfix(self.postfix(trainer), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass

    # no validation bars: validation runs every few steps and its accuracy is in the postfix
    def on_validation_start(self, *_: Any) -> None:
        pass

    def on_validation_batch_start(self, *_: Any, **__: Any) -> None:
        pass

    def on_validation_batch_end(self, *_: Any, **__: Any) -> None:
        pass

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.train_progress_bar is not None and not trainer.sanity_checking:
            self.train_progress_bar.set_postfix(self.postfix(trainer))

    @staticmethod
    def postfix(trainer) -> dict[str, str]:
        metrics = trainer.callback_metrics
        out = {}
        for role, label in (("train_acc", "train_acc"), ("val_acc", "val_acc"), ("train_loss", "loss")):
            name = resolve(role, metrics)
            if name is not None:
                out[label] = f"{float(metrics[name]):.3f}"
        return out


class EventPrinter(LeanCallback):
    """Prints each event a PhaseMonitor confirmed (once) and the run class at the end of fit."""

    def __init__(self, out=None) -> None:
        self.out = out
        self.printed: set[str] = set()

    def _monitor(self, trainer):
        from phasewatch.callbacks.phase_monitor import PhaseMonitor
        mons = [c for c in trainer.callbacks if isinstance(c, PhaseMonitor) and c.active]
        return mons[0] if mons else None

    def _say(self, text: str) -> None:
        from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm
        Tqdm.write(text, file=self.out or sys.stdout)  # above the progress bar

    def _print_new(self, mon) -> None:
        for name, step in sorted(mon.logged.items(), key=lambda kv: kv[1]):
            if name not in self.printed:
                self.printed.add(name)
                self._say(f"phase event: {name.split('@')[0]} at step {step}")

    def on_validation_end(self, trainer, pl_module) -> None:
        mon = self._monitor(trainer)
        if mon is not None and trainer.is_global_zero:
            self._print_new(mon)

    def on_fit_end(self, trainer, pl_module) -> None:  # after PhaseMonitor's (it comes last)
        mon = self._monitor(trainer)
        if mon is None or mon.result is None or not trainer.is_global_zero:
            return
        res = mon.result
        self._say(f"class: {res.run_class}{' (censored: not yet)' if res.censored else ''} - {res.class_reason}")


def usage_error(message: str) -> int:
    """Print ``phasewatch fit: error: <message>`` as one line; return exit status 2."""
    first = " ".join(str(message).split())
    print(f"phasewatch fit: error: {first} (see phasewatch fit --help)", file=sys.stderr)
    return 2
