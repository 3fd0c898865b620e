"""Seeded, deterministic algorithmic and memorization tasks as in-memory tensors.

Modular tasks follow Power et al. 2022 (openai/grok): every pair (a, b) of residues mod p
for which the operation is defined, input ``[a, b]``, label ``op(a, b) mod p``,
``index = a * p + b``. A seeded permutation of the valid pairs puts the first ``frac``
(floor) in training, the rest in validation (each split sorted by index).

Example:
    >>> t = build_task("x+y", p=5, frac=0.5, seed=0)
    >>> t.train_x.shape, t.n_classes, t.modulus
    (torch.Size([12, 2]), 5, 5)
    >>> bool(((t.train_x[:, 0] + t.train_x[:, 1]) % 5 == t.train_y).all())
    True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ["TaskData", "build_task", "OPERATIONS", "S5_TASKS", "TASK_NAMES", "is_prime"]


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no boolean ==
class TaskData:
    """One task: train/val tensors plus what a model needs to size itself.

    ``train_y`` is the label actually trained on; with ``corrupt`` / ``random_labels`` the
    true labels are in ``train_true_y`` and ``train_corrupted`` tags examples whose
    assigned label differs from the true one. Validation always keeps true labels.
    """

    name: str
    train_x: Tensor  # [N_train, seq_len] long
    train_y: Tensor  # [N_train] or [N_train, out_len] long
    val_x: Tensor  # [N_val, seq_len] long
    val_y: Tensor  # [N_val] or [N_val, out_len] long
    vocab_size: int
    n_classes: int
    modulus: Optional[int] = None
    train_true_y: Optional[Tensor] = None  # same shape as train_y
    train_corrupted: Optional[Tensor] = None  # [N_train] bool
    train_index: Optional[Tensor] = None  # [N_train] position in the full grid / list
    val_index: Optional[Tensor] = None  # [N_val]
    random_targets: bool = False  # labels carry no rule (random labels, key -> value): capacity

    @property
    def seq_len(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def out_len(self) -> Optional[int]:
        """None for one label per example, else the number of output tokens."""
        return None if self.train_y.dim() == 1 else int(self.train_y.shape[1])


def is_prime(n: int) -> bool:
    """Trial division; fine for the moduli used here (< 10^6)."""
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


def _mulmod(u: Tensor, v: Tensor, p: int) -> Tensor:
    return (u * v) % p


def _inv(b: Tensor, p: int) -> Tensor:
    """Modular inverse b^(p-2) mod p by square-and-multiply (p prime, b != 0)."""
    result, base, e = torch.ones_like(b), b % p, p - 2
    while e:
        if e & 1:
            result = _mulmod(result, base, p)
        base = _mulmod(base, base, p)
        e >>= 1
    return result


# name -> (function (a, b, p) -> label, mask function or None, needs prime p)
_Op = tuple[Callable[[Tensor, Tensor, int], Tensor], Optional[Callable[[Tensor, Tensor], Tensor]], bool]
_OPS: dict[str, _Op] = {
    "x+y": (lambda a, b, p: (a + b) % p, None, False),
    "x-y": (lambda a, b, p: (a - b) % p, None, False),
    "x*y": (lambda a, b, p: (a * b) % p, None, False),
    "x/y": (lambda a, b, p: _mulmod(a, _inv(b, p), p), lambda a, b: b != 0, True),
    "x**2+y": (lambda a, b, p: (a * a + b) % p, None, False),
    "x**3+y": (lambda a, b, p: (_mulmod(a * a, a, p) + b) % p, None, False),
    "x**3+x*y": (lambda a, b, p: (_mulmod(a * a, a, p) + a * b) % p, None, False),
    "x**3+x*y**2+y": (lambda a, b, p: (_mulmod(a * a, a, p) + _mulmod(a, b * b, p) + b) % p,
                      None, False),
    "x+y if x even else x*y": (lambda a, b, p: torch.where(a % 2 == 0, a + b, a * b) % p,
                               None, False),
    "x+y if x even else x-y": (lambda a, b, p: torch.where(a % 2 == 0, a + b, a - b) % p,
                               None, False),
    "x**2+y**2": (lambda a, b, p: (a * a + b * b) % p, None, False),
    "x**2+x*y+y**2": (lambda a, b, p: (a * a + a * b + b * b) % p, None, False),
    "x**2+x*y+y**2+x": (lambda a, b, p: (a * a + a * b + b * b + a) % p, None, False),
    # floor division of the residues when y is odd (y = 0 is even: no division by zero)
    "x//y if y odd else x-y": (
        lambda a, b, p: torch.where(b % 2 == 1, a // b.clamp(min=1), a - b) % p, None, False),
}
OPERATIONS: tuple[str, ...] = tuple(_OPS)
_ALIASES = {"+": "x+y", "-": "x-y", "*": "x*y", "/": "x/y"}
S5_TASKS: tuple[str, ...] = ("s5", "s5conj", "s5aba")
TASK_NAMES: tuple[str, ...] = OPERATIONS + S5_TASKS + ("parity", "keyvalue")


def _canonical(name: str) -> str:
    key = "".join(str(name).split())  # spacing-insensitive: "x + y" == "x+y"
    for op in OPERATIONS:
        if key == "".join(op.split()):
            return op
    return _ALIASES.get(key, str(name).strip())


def _generator(seed: int, stream: int) -> torch.Generator:
    """Independent, reproducible random stream per (seed, purpose)."""
    state = np.random.SeedSequence([int(seed), stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def _split(n: int, frac: float, seed: int) -> tuple[Tensor, Tensor]:
    perm = torch.randperm(n, generator=_generator(seed, 0))
    n_train = int(frac * n)
    if n_train < 1 or n_train >= n:
        raise ValueError(f"frac={frac} leaves an empty split for {n} examples "
                         f"(n_train={n_train}); choose frac so both splits are non-empty")
    return perm[:n_train].sort().values, perm[n_train:].sort().values


def _modular(op: str, p: int) -> tuple[Tensor, Tensor, Tensor]:
    fn, mask_fn, needs_prime = _OPS[op]
    if needs_prime and not is_prime(p):
        raise ValueError(f"p={p} is not prime; operation {op!r} needs a prime p "
                         "(modular inverse of every y != 0)")
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).unbind(1)
    index = a * p + b
    if mask_fn is not None:
        keep = mask_fn(a, b)
        a, b, index = a[keep], b[keep], index[keep]
    return torch.stack([a, b], 1), fn(a, b, p), index


def _s5(name: str) -> tuple[Tensor, Tensor, Tensor]:
    """Permutations of 5 in lexicographic order; products read left to right:
    ``a b`` = first a then b, i.e. as arrays ``(a b)[i] = b[a[i]]`` (c = b[a])."""
    perms = torch.tensor(list(itertools.permutations(range(5))))  # [120, 5]
    code = (perms * 5 ** torch.arange(5)).sum(1)  # base-5 code of each permutation
    lookup = torch.full((5**5,), -1, dtype=torch.long)
    lookup[code] = torch.arange(120)
    inv = torch.argsort(perms, dim=1)  # inverse permutations
    ia, ib = torch.cartesian_prod(torch.arange(120), torch.arange(120)).unbind(1)
    pa, pb = perms[ia], perms[ib]

    def mul(u: Tensor, v: Tensor) -> Tensor:  # first u then v
        return torch.gather(v, 1, u)

    c = {"s5": lambda: mul(pa, pb), "s5conj": lambda: mul(mul(pa, pb), inv[ia]),
         "s5aba": lambda: mul(mul(pa, pb), pa)}[name]()
    label = lookup[(c * 5 ** torch.arange(5)).sum(1)]
    return torch.stack([ia, ib], 1), label, ia * 120 + ib


def _check_frac(frac: float) -> None:
    if not 0.0 < float(frac) < 1.0:
        raise ValueError(f"frac={frac} must be in (0, 1) (share of examples in training)")


def _positive(**kw: int) -> None:
    for k, v in kw.items():
        if int(v) != v or v < 1:
            raise ValueError(f"{k}={v} must be a positive integer")


def build_task(name: str, *, p: int = 97, frac: float = 0.5, seed: int = 0,
               n_bits: int = 40, k: int = 3, n_samples: int = 2000, subset: str = "first",
               n_pairs: int = 500, key_len: int = 4, value_len: int = 4, symbols: int = 16,
               random_labels: bool = False, corrupt: float = 0.0) -> TaskData:
    """Build a task by name (see ``TASK_NAMES``).

    Args:
        name: a modular operation (``OPERATIONS``, e.g. ``"x/y"``; ``"+"`` etc. accepted),
            ``"s5"``, ``"s5conj"``, ``"s5aba"``, ``"parity"`` or ``"keyvalue"``.
        p: modulus (modular tasks only; prime required for ``x/y``).
        frac: training share of all examples, in (0, 1); ignored by ``keyvalue``.
        seed: seeds the split, parity bits, key/value draws and label noise.
        n_bits, k, n_samples, subset: sparse parity — ``n_samples`` random strings of
            ``n_bits`` bits (tokens 0/1), label = parity of ``k`` relevant bits, the first k
            (``subset="first"``) or a seeded random subset (``"random"``).
        n_pairs, key_len, value_len, symbols: ``keyvalue`` — ``n_pairs`` distinct random keys
            of ``key_len`` symbols mapped to random values of ``value_len`` symbols
            (y shape [N, value_len]). A pure memorization task: train = all pairs and
            val = the same pairs (val accuracy = recall of the stored pairs).
        random_labels: replace every training label by a uniform random one.
        corrupt: share xi in [0, 1) of training examples whose label is replaced by a
            uniformly drawn *different* label (exactly ``round(xi * N_train)`` examples).

    Example:
        >>> t = build_task("x/y", p=7, frac=0.5, corrupt=0.25, seed=1)
        >>> int(t.train_corrupted.sum()), len(t.train_y)
        (5, 21)
    """
    key = _canonical(name)
    if key not in TASK_NAMES:
        raise ValueError(f"name={name!r} is not a known task; valid: {', '.join(TASK_NAMES)}")
    _check_frac(frac)
    if not 0.0 <= float(corrupt) < 1.0:
        raise ValueError(f"corrupt={corrupt} must be in [0, 1) (share of corrupted labels)")
    if random_labels and corrupt > 0:
        raise ValueError(f"random_labels=True and corrupt={corrupt} exclude each other")
    modulus = None
    if key in OPERATIONS:
        if int(p) != p or p < 2:
            raise ValueError(f"p={p} must be an integer >= 2")
        x, y, index = _modular(key, int(p))
        vocab, n_classes, modulus = int(p), int(p), int(p)
    elif key in S5_TASKS:
        x, y, index = _s5(key)
        vocab = n_classes = 120
    elif key == "parity":
        _positive(n_bits=n_bits, k=k, n_samples=n_samples)
        if k > n_bits:
            raise ValueError(f"k={k} must be <= n_bits={n_bits}")
        if subset not in ("first", "random"):
            raise ValueError(f"subset={subset!r} must be 'first' or 'random'")
        x = torch.randint(0, 2, (n_samples, n_bits), generator=_generator(seed, 1))
        rel = (torch.arange(k) if subset == "first"
               else torch.randperm(n_bits, generator=_generator(seed, 2))[:k].sort().values)
        y, index = x[:, rel].sum(1) % 2, torch.arange(n_samples)
        vocab = n_classes = 2
    else:  # keyvalue
        _positive(n_pairs=n_pairs, key_len=key_len, value_len=value_len, symbols=symbols)
        if n_pairs > symbols**key_len:
            raise ValueError(f"n_pairs={n_pairs} exceeds the {symbols}**{key_len} distinct keys")
        g = _generator(seed, 3)
        codes = torch.randperm(symbols**key_len, generator=g)[:n_pairs]
        x = codes[:, None] // symbols ** torch.arange(key_len - 1, -1, -1) % symbols
        y = torch.randint(0, symbols, (n_pairs, value_len), generator=g)
        vocab = n_classes = int(symbols)
        index = torch.arange(n_pairs)
    if key == "keyvalue":
        tr = va = torch.arange(len(x))
    else:
        tr, va = _split(len(x), float(frac), seed)
    train_y, true_y, tag = y[tr], None, None
    if random_labels or corrupt > 0:
        true_y = train_y
        g = _generator(seed, 4)
        if random_labels:
            train_y = torch.randint(0, n_classes, true_y.shape, generator=g)
        else:
            n = len(true_y)
            chosen = torch.randperm(n, generator=g)[: int(round(float(corrupt) * n))]
            # a shift in 1..n_classes-1 never maps a label to itself
            shift = torch.randint(1, n_classes, true_y[chosen].shape, generator=g)
            train_y = true_y.clone()
            train_y[chosen] = (true_y[chosen] + shift) % n_classes
        diff = train_y != true_y
        tag = diff if diff.dim() == 1 else diff.any(1)
    return TaskData(name=key, train_x=x[tr], train_y=train_y, val_x=x[va], val_y=y[va],
                    vocab_size=vocab, n_classes=n_classes, modulus=modulus,
                    train_true_y=true_y, train_corrupted=tag,
                    train_index=index[tr], val_index=index[va],
                    random_targets=bool(random_labels or key == "keyvalue"))
