"""Tasks: sizes and labels against direct Python arithmetic, splits, label noise, errors."""

import itertools

import pytest
import torch

from phasewatch.trainer.tasks import OPERATIONS, TASK_NAMES, build_task

# the operations written as plain Python on ints (the oracle)
PY = {
    "x+y": lambda x, y, p: (x + y) % p,
    "x-y": lambda x, y, p: (x - y) % p,
    "x*y": lambda x, y, p: (x * y) % p,
    "x/y": lambda x, y, p: (x * pow(y, p - 2, p)) % p,
    "x**2+y": lambda x, y, p: (x**2 + y) % p,
    "x**3+y": lambda x, y, p: (x**3 + y) % p,
    "x**3+x*y": lambda x, y, p: (x**3 + x * y) % p,
    "x**3+x*y**2+y": lambda x, y, p: (x**3 + x * y**2 + y) % p,
    "x+y if x even else x*y": lambda x, y, p: (x + y) % p if x % 2 == 0 else (x * y) % p,
    "x+y if x even else x-y": lambda x, y, p: (x + y) % p if x % 2 == 0 else (x - y) % p,
    "x**2+y**2": lambda x, y, p: (x**2 + y**2) % p,
    "x**2+x*y+y**2": lambda x, y, p: (x**2 + x * y + y**2) % p,
    "x**2+x*y+y**2+x": lambda x, y, p: (x**2 + x * y + y**2 + x) % p,
    "x//y if y odd else x-y": lambda x, y, p: (x // y) % p if y % 2 == 1 else (x - y) % p,
}


def test_every_operation_matches_python_arithmetic():
    assert set(PY) == set(OPERATIONS)
    p = 23
    for op in OPERATIONS:
        t = build_task(op, p=p, frac=0.5, seed=3)
        x = torch.cat([t.train_x, t.val_x]).tolist()
        y = torch.cat([t.train_y, t.val_y]).tolist()
        n_valid = p * (p - 1) if op == "x/y" else p * p
        assert len(x) == n_valid, op
        assert len(t.train_x) == int(0.5 * n_valid), op
        assert all(PY[op](a, b, p) == c for (a, b), c in zip(x, y)), op
        idx = torch.cat([t.train_index, t.val_index])
        assert torch.equal(idx, torch.cat([t.train_x, t.val_x]) @ torch.tensor([p, 1]))
        assert len(set(idx.tolist())) == n_valid  # split is a partition
        assert t.vocab_size == t.n_classes == t.modulus == p


def test_large_p_no_overflow():
    t = build_task("x**3+x*y**2+y", p=113, frac=0.3)
    a, b = t.val_x[-1].tolist()
    assert t.val_y[-1].item() == (a**3 + a * b**2 + b) % 113
    assert len(t.train_x) == int(0.3 * 113 * 113) == 3830


def test_division_excludes_zero_and_aliases():
    t = build_task("/", p=7, frac=0.5)
    assert t.name == "x/y"
    assert (t.train_x[:, 1] != 0).all() and (t.val_x[:, 1] != 0).all()
    assert len(t.train_x) + len(t.val_x) == 42
    assert build_task("x + y", p=5).name == "x+y"


def test_determinism_by_seed():
    a, b, c = (build_task("x*y", p=31, seed=s, corrupt=0.2) for s in (0, 0, 1))
    for f in ("train_x", "train_y", "val_x", "train_corrupted", "train_index"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert not torch.equal(a.train_index, c.train_index)
    assert torch.equal(build_task("parity").train_x, build_task("parity").train_x)
    assert torch.equal(build_task("keyvalue", seed=4).train_y, build_task("keyvalue", seed=4).train_y)


@pytest.mark.parametrize("xi", [0.1, 0.35, 0.5])
def test_corrupted_labels(xi):
    t = build_task("x+y", p=31, frac=0.5, corrupt=xi, seed=2)
    n = len(t.train_y)
    clean = build_task("x+y", p=31, frac=0.5, seed=2)
    assert torch.equal(t.train_true_y, clean.train_y)
    assert torch.equal(t.val_y, clean.val_y)  # validation keeps true labels
    c = t.train_corrupted
    assert int(c.sum()) == round(xi * n)
    assert (t.train_y[c] != t.train_true_y[c]).all()  # never the true label
    assert torch.equal(t.train_y[~c], t.train_true_y[~c])
    assert t.train_y.min() >= 0 and t.train_y.max() < 31


def test_corrupted_parity_and_keyvalue():
    t = build_task("parity", n_bits=10, k=2, n_samples=200, corrupt=0.25)
    assert int(t.train_corrupted.sum()) == 25
    assert (t.train_y[t.train_corrupted] == 1 - t.train_true_y[t.train_corrupted]).all()
    kv = build_task("keyvalue", n_pairs=40, corrupt=0.5)
    c = kv.train_corrupted
    assert int(c.sum()) == 20 and (kv.train_y[c] != kv.train_true_y[c]).all()


def test_random_labels():
    t = build_task("x-y", p=47, frac=0.5, random_labels=True, seed=0)
    true = build_task("x-y", p=47, frac=0.5, seed=0)
    assert torch.equal(t.train_true_y, true.train_y)
    agree = (t.train_y == t.train_true_y).float().mean().item()
    assert agree < 0.06  # chance 1/47
    assert torch.equal(t.train_corrupted, t.train_y != t.train_true_y)
    counts = torch.bincount(t.train_y, minlength=47)
    assert counts.min() > 0  # uniform-ish over all classes


def _compose(u, v):  # first u then v: (u v)[i] = v[u[i]]
    return tuple(v[u[i]] for i in range(5))


def test_s5_by_explicit_composition():
    perms = list(itertools.permutations(range(5)))
    pos = {q: i for i, q in enumerate(perms)}
    inv = [tuple(sorted(range(5), key=lambda i: q[i])) for q in perms]
    tasks = {n: build_task(n, frac=0.5, seed=0) for n in ("s5", "s5conj", "s5aba")}
    for name, t in tasks.items():
        assert t.vocab_size == t.n_classes == 120 and t.modulus is None
        assert len(t.train_x) + len(t.val_x) == 120 * 120
        for (ia, ib), c in list(zip(t.train_x.tolist(), t.train_y.tolist()))[:400]:
            a, b = perms[ia], perms[ib]
            want = {"s5": _compose(a, b),
                    "s5conj": _compose(_compose(a, b), inv[ia]),
                    "s5aba": _compose(_compose(a, b), a)}[name]
            assert c == pos[want]
            if name == "s5":
                assert perms[c] == tuple(b[a[i]] for i in range(5))  # c = b[a]
    identity = pos[tuple(range(5))]
    t = tasks["s5conj"]  # e b e^-1 = b
    all_x, all_y = torch.cat([t.train_x, t.val_x]), torch.cat([t.train_y, t.val_y])
    sel = all_x[:, 0] == identity
    assert torch.equal(all_y[sel], all_x[sel, 1])


def test_parity_labels():
    t = build_task("parity", n_bits=12, k=3, n_samples=300, frac=0.5, seed=1)
    assert t.train_x.shape == (150, 12) and t.vocab_size == t.n_classes == 2
    assert torch.equal(t.train_y, t.train_x[:, :3].sum(1) % 2)
    r = build_task("parity", n_bits=12, k=3, n_samples=300, subset="random", seed=1)
    x = torch.cat([r.train_x, r.val_x])
    y = torch.cat([r.train_y, r.val_y])
    matches = [s for s in itertools.combinations(range(12), 3)
               if torch.equal(x[:, list(s)].sum(1) % 2, y)]
    assert len(matches) == 1  # exactly one relevant subset explains the labels
    assert 0.35 < y.float().mean().item() < 0.65


def test_keyvalue():
    t = build_task("keyvalue", n_pairs=300, key_len=4, value_len=4, symbols=16, seed=0)
    assert t.train_x.shape == (300, 4) and t.train_y.shape == (300, 4)
    assert t.vocab_size == t.n_classes == 16 and t.out_len == 4
    assert len(set(map(tuple, t.train_x.tolist()))) == 300  # distinct keys
    assert torch.equal(t.val_x, t.train_x) and torch.equal(t.val_y, t.train_y)
    assert t.train_x.max() < 16 and t.train_y.max() < 16


@pytest.mark.parametrize("kwargs, field", [
    (dict(name="x^y"), "name"),
    (dict(name="x/y", p=12), "p=12"),
    (dict(name="x+y", p=1), "p=1"),
    (dict(name="x+y", frac=0.0), "frac"),
    (dict(name="x+y", frac=1.2), "frac"),
    (dict(name="x+y", corrupt=1.0), "corrupt"),
    (dict(name="x+y", corrupt=-0.1), "corrupt"),
    (dict(name="x+y", corrupt=0.1, random_labels=True), "random_labels"),
    (dict(name="parity", k=50, n_bits=10), "k=50"),
    (dict(name="parity", subset="last"), "subset"),
    (dict(name="keyvalue", n_pairs=10, key_len=1, symbols=4), "n_pairs"),
    (dict(name="x+y", p=3, frac=0.05), "frac"),
])
def test_errors_name_the_field(kwargs, field):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=field.replace("^", r"\^")):
        build_task(name, **kwargs)


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError) as e:
        build_task("mod_add")
    assert "x//y if y odd else x-y" in str(e.value) and "keyvalue" in str(e.value)
    assert len(TASK_NAMES) == 19


def test_non_prime_allowed_without_division():
    t = build_task("x*y", p=12, frac=0.5)
    assert t.modulus == 12 and len(t.train_x) == 72
