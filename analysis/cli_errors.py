"""One-line command-line errors with "did you mean", shared by every ``phasewatch`` subcommand.

``OneLineParser`` is an ``argparse.ArgumentParser`` whose errors are one line on stderr
(``phasewatch analyze: error: ...; did you mean --threshold? (phasewatch analyze --help)``) and
exit status 2, instead of the usage block. ``suggest`` is reused by ``phasewatch fit``.

Example:
    >>> suggest("--thresold", ["--threshold", "--json"])
    '--threshold'
"""
from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
from typing import Iterable, NoReturn

__all__ = ["OneLineParser", "suggest", "option_strings", "with_suggestion", "positive", "fraction"]


def positive(text: str) -> float:
    """argparse type: a finite number > 0 (``nan``, ``inf``, ``0``, ``-1`` are usage errors)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be > 0 and finite, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = positive(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


#: common spellings of the same setting (last dotted part of an option)
SYNONYMS = {"learning_rate": "lr", "learningrate": "lr", "wd": "weight_decay",
            "steps": "max_steps", "epochs": "max_epochs", "bs": "batch_size"}


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word`` (synonyms such as ``learning_rate`` -> ``lr``
    first, then by spelling, ignoring ``_`` / ``-``), or None.

    >>> suggest("--model.learning_rate", ["--model.lr", "--model.weight_decay"])
    '--model.lr'
    """
    choices = list(choices)
    key = word.split("=", 1)[0]
    head, _, last = key.rpartition(".")
    alias = SYNONYMS.get(last.lstrip("-").replace("-", "_"))
    if alias is not None:
        cand = f"{head}.{alias}" if head else f"--{alias}"
        if cand in choices:
            return cand
    norm = {c.replace("_", "").replace("-", ""): c for c in choices}
    got = difflib.get_close_matches(key.replace("_", "").replace("-", ""), list(norm), n=1, cutoff=0.6)
    return norm[got[0]] if got else None


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every ``--option`` of ``parser`` and of its subcommands' parsers."""
    out: set[str] = set()
    for action in parser._actions:
        out.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= option_strings(sub)
    return out


def with_suggestion(message: str, known: Iterable[str]) -> str:
    """``message`` plus "did you mean X?" for the first unknown ``--option`` it names."""
    for word in re.findall(r"--[\w.\-]+", message):
        if word not in known and (hit := suggest(word, known)):
            return f"{message}; did you mean {hit}?"
    return message


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) and "did you mean" for near-miss options."""

    def error(self, message: str) -> NoReturn:
        message = with_suggestion(message.replace("\n", " "), option_strings(self))
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)
