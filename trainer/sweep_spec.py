"""A sweep spec (YAML): a base config, a grid and/or a list of points, seeds, overrides.

Example spec (``sweeps/modadd_wd_frac.yaml``)::

    name: modadd_wd_frac                 # W&B group; default: the file's stem
    base: ../configs/modadd_mlp.yaml     # relative to this file (or the working directory)
    grid:                                # every combination
      model.weight_decay: [0.1, 0.3, 1, 3]
      data.frac: [0.3, 0.5, 0.7]
    points:                              # and/or explicit points (each combined with the grid)
      - {model.lr: 1.0e-3}
    seeds: [0, 1, 2]                     # written to every key of seed_keys
    seed_keys: [seed_everything, data.seed]
    set: {trainer.max_steps: 4000}       # every trial
    trials:                              # some trials (matched on swept values and seed)
      - where: {model.weight_decay: 0.1}
        set: {trainer.max_steps: 8000}
    retries: 2

A trial's identity is its swept values plus its seed (``params``); ``set`` / ``trials`` only
shape how it runs. Keys are the dotted keys of ``phasewatch fit`` (``--model.lr``);
a dict-valued key (``model.model_kwargs``) is replaced whole.

Example:
    >>> spec = SweepSpec(name="s", base="configs/modadd_mlp.yaml",
    ...                  grid={"model.lr": [0.1, 0.3]}, seeds=[0, 1])
    >>> [p for p in spec.trial_params()][:2]
    [{'model.lr': 0.1, 'seed': 0}, {'model.lr': 0.1, 'seed': 1}]
    >>> spec.fit_args({"model.lr": 0.1, "seed": 1})[2:]
    ['--model.lr', '0.1', '--seed_everything', '1', '--data.seed', '1']
"""
from __future__ import annotations

import difflib
import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

__all__ = ["SpecError", "SweepSpec", "load_spec", "did_you_mean"]

TOP_KEYS = ("name", "base", "grid", "points", "seeds", "seed_keys", "set", "trials", "retries")


class SpecError(ValueError):
    """A sweep spec that cannot run; the message is one line naming the file and the value."""


@dataclass
class SweepSpec:
    """The parsed spec (see the module docstring for the fields)."""

    name: str
    base: str
    grid: dict = field(default_factory=dict)
    points: list = field(default_factory=list)
    seeds: list = field(default_factory=lambda: [0])
    seed_keys: list = field(default_factory=lambda: ["seed_everything", "data.seed"])
    set: dict = field(default_factory=dict)
    trials: list = field(default_factory=list)
    retries: Optional[int] = None
    source: str = "<spec>"

    def swept_keys(self) -> list[str]:
        return sorted({*self.grid, *(k for p in self.points for k in p)})

    def all_keys(self) -> list[str]:
        """Every config key the spec writes, for validation."""
        keys = {*self.swept_keys(), *self.seed_keys, *self.set}
        for t in self.trials:
            keys |= {*(k for k in t["where"] if k != "seed"), *t["set"]}
        return sorted(keys)

    def trial_params(self) -> list[dict]:
        """Every trial's identity: grid x points x seeds, in a fixed order."""
        names = list(self.grid)
        combos = [dict(zip(names, vals)) for vals in itertools.product(*self.grid.values())]
        cells = [{**g, **p} for g in combos for p in (self.points or [{}])]
        return [{**cell, "seed": s} for cell in cells for s in self.seeds]

    def overrides(self, params: dict) -> dict:
        """Config values of this trial: ``set``, its swept values and seed, matching ``trials``."""
        out = {**self.set, **{k: v for k, v in params.items() if k != "seed"}}
        out.update({k: params["seed"] for k in self.seed_keys})
        for t in self.trials:
            if all(_same(params.get(k), v) for k, v in t["where"].items()):
                out.update(t["set"])
        return out

    def fit_args(self, params: dict) -> list[str]:
        """``phasewatch fit`` arguments of this trial (without run dir / resume options)."""
        args = ["--config", self.base]
        for key, value in self.overrides(params).items():
            args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        return args


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _mapping(value: Any, what: str, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise SpecError(f"{source}: {what} must be a mapping of dotted config keys to values, "
                        f"got {value!r}")
    return dict(value)


def did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resolve_base(base: Any, source: str) -> str:
    if not isinstance(base, str) or not base:
        raise SpecError(f"{source}: 'base' must name a config file (e.g. configs/modadd_mlp.yaml)")
    for candidate in (os.path.join(os.path.dirname(os.path.abspath(source)), base), base):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise SpecError(f"{source}: base config {base!r} not found (relative to the spec file or "
                    f"the working directory)")


def load_spec(path: str) -> SweepSpec:
    """Read and check a spec's shape (config keys are checked by ``sweep.validate``)."""
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise SpecError(f"{path}: cannot read the sweep spec ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a sweep spec is a mapping with 'base' and 'grid' / 'points'")
    for key in raw:
        if key not in TOP_KEYS:
            raise SpecError(f"{path}: unknown field {key!r}{did_you_mean(str(key), TOP_KEYS)}; "
                            f"fields are {', '.join(TOP_KEYS)}")
    grid = _mapping(raw.get("grid"), "'grid'", path)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{path}: grid value of {key!r} must be a non-empty list, got {values!r}")
    points = raw.get("points") or []
    if not isinstance(points, list):
        raise SpecError(f"{path}: 'points' must be a list of mappings, got {points!r}")
    points = [_mapping(p, f"point {i}", path) for i, p in enumerate(points)]
    if not grid and not points and not raw.get("seeds"):
        raise SpecError(f"{path}: nothing to sweep: give 'grid', 'points' or 'seeds'")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise SpecError(f"{path}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    seed_keys = raw.get("seed_keys", ["seed_everything", "data.seed"])
    if not isinstance(seed_keys, list) or not all(isinstance(k, str) for k in seed_keys):
        raise SpecError(f"{path}: 'seed_keys' must be a list of dotted config keys")
    trials = []
    for i, t in enumerate(raw.get("trials") or []):
        if not isinstance(t, dict) or set(t) != {"where", "set"}:
            raise SpecError(f"{path}: trials[{i}] must be {{where: {{...}}, set: {{...}}}}, got {t!r}")
        trials.append({"where": _mapping(t["where"], f"trials[{i}].where", path),
                       "set": _mapping(t["set"], f"trials[{i}].set", path)})
    retries = raw.get("retries")
    if retries is not None and (not isinstance(retries, int) or retries < 0):
        raise SpecError(f"{path}: 'retries' must be an integer >= 0, got {retries!r}")
    name = raw.get("name") or os.path.splitext(os.path.basename(path))[0]
    if not isinstance(name, str) or "/" in name:
        raise SpecError(f"{path}: 'name' must be a plain name, got {name!r}")
    return SweepSpec(name=name, base=_resolve_base(raw.get("base"), path), grid=grid,
                     points=points, seeds=seeds, seed_keys=seed_keys,
                     set=_mapping(raw.get("set"), "'set'", path), trials=trials, retries=retries,
                     source=path)
