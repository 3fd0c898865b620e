import pytest

from phasewatch.callbacks import Cadence


def test_every_and_parse_forms():
    assert Cadence.parse("every:10").steps(35) == [0, 10, 20, 30]
    assert Cadence.parse(10) == Cadence.parse("10") == Cadence.every_n(10)
    assert Cadence.parse("never").steps(100) == [] and Cadence.parse(0).steps(5) == []
    assert Cadence.parse(None).due(0) is False


def test_log_spacing_dense_early_sparse_late():
    c = Cadence.log(points_per_decade=20)
    assert Cadence.parse("log:20") == c
    s = c.steps(100_000)
    assert s[:11] == list(range(11))
    # about 20 points per decade once the grid is sparser than one step
    assert 19 <= sum(1000 <= x < 10_000 for x in s) <= 21
    gaps = [b - a for a, b in zip(s, s[1:])]
    assert gaps[-1] > 1000 and max(gaps[:10]) == 1


def test_log_min_and_max_every():
    c = Cadence.parse("log:20,min:5,max:100")
    s = c.steps(1000)
    assert all(x % 5 == 0 for x in s)
    assert all(x in s for x in range(0, 1001, 100))
    assert max(b - a for a, b in zip(s, s[1:])) <= 100
    # past ~820 steps the log grid is sparser than max: only multiples of 100 remain
    assert [x for x in c.steps(4000) if x > 1500] == list(range(1600, 4001, 100))
    assert [x for x in Cadence.parse("log:10,min:10,max:200").steps(4000) if x >= 700] == \
        [800] + list(range(1000, 4001, 200))


def test_deterministic_and_resume_safe():
    c = Cadence.parse("log:7,max:50")
    assert [c.due(x) for x in range(500)] == [c.due(x) for x in range(500)]
    assert c.steps(500)[-3:] == [s for s in c.steps(500) if s > 200][-3:]


@pytest.mark.parametrize("bad", ["log:x", "log:inf", "every:0", "every:-3", "log:20,foo:3", "sometimes", -1,
                                 1.5, True])
def test_bad_specs_name_the_value(bad):
    with pytest.raises(ValueError, match=repr(bad).strip("'") if isinstance(bad, str) else ""):
        Cadence.parse(bad)
