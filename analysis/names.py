"""One metric-name resolution for every tool: which series of a run is train / val accuracy / loss.

phasewatch's own modules log ``train/acc``, ``val/acc``, ``train/loss`` and ``val/loss``; a
user's LightningModule usually logs ``train_acc`` / ``val_acc`` (and Lightning turns
``self.log(..., on_step=True, on_epoch=True)`` into ``train_acc_step`` and ``train_acc_epoch``).
``analyze``, ``report``, ``watch``, ``PhaseMonitor`` and its stop rule all resolve names here.

For each role, the candidates are tried in order:

1. the name asked for (``AnalysisConfig.train_acc`` / ``--train-acc``, default ``train/acc``);
2. only when that is the default: the common aliases in ``ALIASES`` (``train_acc``, ...);
3. each of them with Lightning's ``_step`` then ``_epoch`` suffix.

A name the user chose explicitly never falls back to an alias: it is found (maybe with a
suffix) or reported missing, together with the names the run has (``missing_message``).

Example:
    >>> resolve("train_acc", ["epoch", "train_acc_step", "train_acc_epoch", "val_acc"])
    'train_acc_step'
    >>> resolve("val_acc", ["val_acc"], requested="my_val")
    >>> missing_message("val_acc", "my_val", ["val_acc", "epoch"])
    "no val accuracy series 'my_val' (also tried 'my_val_step', 'my_val_epoch'); the run has: epoch, val_acc; pass --val-acc NAME"
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

__all__ = ["ROLES", "ALIASES", "candidates", "resolve", "resolve_config", "resolve_all",
           "missing_message", "mapping_to_roles"]

#: role (an ``AnalysisConfig`` field) -> phasewatch's own series name
ROLES = {"train_acc": "train/acc", "val_acc": "val/acc", "train_loss": "train/loss",
         "val_loss": "val/loss"}
LABELS = {"train_acc": "train accuracy", "val_acc": "val accuracy", "train_loss": "train loss",
          "val_loss": "val loss"}
#: tried, in order, when the default name is absent
ALIASES = {"train_acc": ("train_acc", "train/accuracy", "train_accuracy", "acc", "accuracy"),
           "val_acc": ("val_acc", "val/accuracy", "val_accuracy", "valid/acc", "valid_acc",
                       "test/acc", "test_acc"),
           "train_loss": ("train_loss", "loss"),
           "val_loss": ("val_loss", "valid/loss", "valid_loss", "test/loss", "test_loss")}
#: Lightning's suffixes for a metric logged per step and per epoch
SUFFIXES = ("", "_step", "_epoch")


def candidates(role: str, requested: str | None = None) -> list[str]:
    """The names tried for ``role``, in order (see the module docstring)."""
    if role not in ROLES:
        raise ValueError(f"unknown series role {role!r}; one of {sorted(ROLES)}")
    requested = requested or ROLES[role]
    bases = [requested, *ALIASES[role]] if requested == ROLES[role] else [requested]
    return [b + s for b in bases for s in SUFFIXES]


def resolve(role: str, names: Iterable[str], requested: str | None = None) -> str | None:
    """The first candidate for ``role`` among ``names``, else None."""
    have = set(names)
    return next((c for c in candidates(role, requested) if c in have), None)


def resolve_all(names: Iterable[str], config=None) -> dict[str, str]:
    """``{role: series name}`` for the roles found among ``names`` (``config`` = AnalysisConfig)."""
    names = list(names)
    out = {}
    for role in ROLES:
        got = resolve(role, names, getattr(config, role, None) if config is not None else None)
        if got is not None:
            out[role] = got
    return out


def resolve_config(config, names: Iterable[str]):
    """``config`` (an ``AnalysisConfig``) with each role set to the series found in ``names``;
    roles not found keep the name asked for (so messages name what the user asked)."""
    found = resolve_all(names, config)
    upd = {r: n for r, n in found.items() if getattr(config, r) != n}
    return replace(config, **upd) if upd else config


def missing_message(role: str, requested: str | None, names: Iterable[str], limit: int = 30) -> str:
    """One line: the series asked for is missing, what else was tried, what the run has."""
    requested = requested or ROLES[role]
    tried = [c for c in candidates(role, requested) if c != requested]
    have = sorted(set(names))
    shown = ", ".join(have[:limit]) + (f", ... ({len(have) - limit} more)" if len(have) > limit else "")
    return (f"no {LABELS[role]} series {requested!r}"
            + (f" (also tried {', '.join(repr(t) for t in tried)})" if tried else "")
            + f"; the run has: {shown or 'no series'}; pass --{role.replace('_', '-')} NAME")


def mapping_to_roles(mapping: dict[str, str]) -> dict[str, str]:
    """``--map OLD=NEW`` pairs whose NEW is a built-in name -> ``{role: OLD}`` config overrides.

    >>> mapping_to_roles({"my_acc": "train/acc", "other": "x"})
    {'train_acc': 'my_acc'}
    """
    by_name = {v: k for k, v in ROLES.items()}
    return {by_name[new]: old for old, new in mapping.items() if new in by_name}
