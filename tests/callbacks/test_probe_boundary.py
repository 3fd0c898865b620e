"""A probe's whole path is inside its failure boundary: a malformed result or a state that a
``weights_only=True`` checkpoint load cannot restore drops that probe (one warning); training,
checkpointing and resume go on."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from phasewatch.callbacks import CircuitCheckpoint, ProbeResult
from phasewatch.callbacks.probe_checks import check_result, pack_state, unpack_state

from cb_helpers import UserModule, full_batch_loader, make_trainer, modular_data, read_run


class Returns:
    """A probe returning ``result`` (``ProbeResult`` fields or anything else)."""

    def __init__(self, name, result):
        self.name, self.result, self.calls = name, result, 0

    def __call__(self, model, ctx):
        self.calls += 1
        return self.result


class Good:
    name = "good"

    def __call__(self, model, ctx):
        return ProbeResult({"user/good": 1.0})


BAD_RESULTS = {
    "string": "0.5",
    "vector_scalar": ProbeResult({"p/x": torch.ones(3)}),
    "object_array": ProbeResult(arrays={"p/a": np.array([{}, None], dtype=object)}),
    "text_scalar": ProbeResult({"p/x": "high"}),
    "nan_scalar": ProbeResult({"p/x": float("nan")}),
    "complex_scalar": ProbeResult({"p/x": 1 + 2j}),
    "meta_object": ProbeResult(meta={"p/m": object()}),
    "bad_key": ProbeResult({3: 1.0}),
}


def test_malformed_results_drop_their_probe_with_one_warning_and_training_goes_on(tmp_path):
    (tx, ty), _ = modular_data()
    bad = [Returns(k, v) for k, v in BAD_RESULTS.items()]
    cc = CircuitCheckpoint([*bad, Good()], cadence="every:2")
    trainer = make_trainer(tmp_path, [cc], max_steps=6)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        trainer.fit(UserModule(), full_batch_loader(tx, ty))
    assert trainer.global_step == 6
    for probe in bad:
        assert probe.calls == 1, probe.name  # dropped after its first bad result
        assert sum(f"probe '{probe.name}' failed at step 0" in str(w.message) for w in rec) == 1
    run = read_run(trainer)
    assert run.series("user/good")[0].tolist() == [0, 2, 4, 6]
    assert not any(n.startswith("p/") for n in run.names() + run.array_names())
    assert [p.name for p in cc.active] == ["good"]


def test_check_result_accepts_every_documented_scalar_form():
    res = ProbeResult({"a": 1, "b": np.float32(0.5), "c": torch.tensor(2.0), "d": torch.ones(1, 1),
                       "e": np.array([3])}, {"w": torch.arange(3)}, {"m": {"k": np.int64(4)}})
    scalars, arrays, _ = check_result(res)
    assert scalars == {"a": 1.0, "b": 0.5, "c": 2.0, "d": 1.0, "e": 3.0}
    assert arrays["w"].tolist() == [0, 1, 2] and isinstance(arrays["w"], np.ndarray)


class Stateful:
    """Keeps numpy state (a running array and a numpy scalar) and, optionally, a lambda."""

    def __init__(self, name, unpicklable=False):
        self.name, self.unpicklable, self.calls = name, unpicklable, 0

    def __call__(self, model, ctx):
        self.calls += 1
        seen = ctx.state.get("seen", np.zeros(0, np.int64))
        ctx.state["seen"] = np.append(seen, ctx.step)
        ctx.state["n"] = np.int64(len(ctx.state["seen"]))
        if self.unpicklable:
            ctx.state["f"] = lambda: None
        return ProbeResult({f"user/{self.name}": float(ctx.state["n"])})


def test_numpy_state_resumes_under_weights_only_and_unpicklable_state_drops_its_probe(tmp_path):
    (tx, ty), _ = modular_data()
    ckpt = tmp_path / "ckpt"
    probes = [Stateful("np"), Stateful("lam", unpicklable=True)]
    trainer = make_trainer(tmp_path / "a", [CircuitCheckpoint(probes, cadence="every:2"),
                                            ModelCheckpoint(dirpath=ckpt, every_n_train_steps=4,
                                                            save_top_k=-1)],
                           max_steps=4, enable_checkpointing=True)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        trainer.fit(UserModule(), full_batch_loader(tx, ty))
    assert sum("probe 'lam' failed while saving a checkpoint" in str(w.message) for w in rec) == 1
    path = next(ckpt.glob("*step=4*.ckpt"))
    saved = torch.load(path, weights_only=True)["callbacks"]
    (state,) = [v for k, v in saved.items() if k.startswith("CircuitCheckpoint")]
    assert sorted(state["probe_states"]) == ["np"]

    cc = CircuitCheckpoint([Stateful("np"), Stateful("lam")], cadence="every:2")
    trainer = make_trainer(tmp_path / "b", [cc], max_steps=8)
    trainer.fit(UserModule(), full_batch_loader(tx, ty), ckpt_path=str(path), weights_only=True)
    assert cc._states["np"]["seen"].tolist() == [0, 2, 4, 6, 8]  # 0, 2, 4 restored, then 6, 8
    assert read_run(trainer).series("user/np")[1].tolist() == [4.0, 5.0]


@pytest.mark.parametrize("state, ok", [
    ({"a": np.arange(3.0), "b": [np.float64(1), (np.ones(2, bool),)], "c": "x"}, True),
    ({"f": lambda: 0}, False),
    ({"o": np.array([object()], dtype=object)}, False),
    ({"g": (i for i in range(2))}, False),
])
def test_pack_state_round_trips_or_refuses(state, ok):
    if not ok:
        with pytest.raises(ValueError, match="checkpoint"):
            pack_state(state)
        return
    back = unpack_state(pack_state(state))
    assert back["a"].tolist() == [0.0, 1.0, 2.0] and isinstance(back["a"], np.ndarray)
    assert back["b"][0] == 1.0 and back["b"][1][0].dtype == bool and back["c"] == "x"
