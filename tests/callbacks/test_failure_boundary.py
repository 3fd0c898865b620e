"""No callback takes training down: a failing hook warns once and disables that callback; a
probe asked for by name that cannot run stops the fit at setup with the reason; ExampleTracker
reads dict / custom / iterable datasets, caps with a seeded sample, and finds an inner model."""
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from phasewatch.callbacks import (CallbackSetupError, CircuitCheckpoint, ExampleTracker, FourierProbe,
                                  LeanCallback, WeightNormMonitor)

from cb_helpers import UserModule, make_trainer, modular_data, read_run


class Boom(LeanCallback):
    def __init__(self, at):
        self.at, self.calls = at, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.calls += 1
        if trainer.global_step >= self.at:
            raise KeyError("no such thing")


def test_a_failing_callback_warns_once_is_disabled_and_training_goes_on(tmp_path):
    (tx, ty), _ = modular_data()
    boom = Boom(at=3)
    loader = DataLoader(list(zip(tx, ty)), batch_size=len(tx))
    trainer = make_trainer(tmp_path, [boom, WeightNormMonitor("every:1")], max_steps=8)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        trainer.fit(UserModule(), loader)
    mine = [w for w in got if "Boom.on_train_batch_end failed" in str(w.message)]
    assert len(mine) == 1 and "KeyError" in str(mine[0].message) and "step 3" in str(mine[0].message)
    assert trainer.global_step == 8 and boom.calls == 3               # not called once disabled
    run = read_run(trainer)
    assert run.meta["callbacks/failed/Boom"]["step"] == 3
    assert run.series("weights/sum_sq")[0].max() == 8                 # the others went on


def test_a_probe_asked_for_by_name_fails_at_setup_with_the_reason(tmp_path):
    (tx, ty), _ = modular_data()
    trainer = make_trainer(tmp_path, [CircuitCheckpoint([FourierProbe(p=11)])], max_steps=2)
    with pytest.raises(CallbackSetupError, match="lacks `embedding_tables\\(\\)`.*hook_neurons"):
        trainer.fit(UserModule(), DataLoader(list(zip(tx, ty)), batch_size=len(tx)))
    assert trainer.global_step == 0


class Records(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pair": self.x[i], "label": self.y[i], "id": i}


class Stream(IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y))


class DictUser(UserModule):
    def training_step(self, batch, batch_idx):
        x, y = (batch["pair"], batch["label"]) if isinstance(batch, dict) else batch
        return nn.functional.cross_entropy(self(x), y)


class Wrapper(pl.LightningModule):
    """A module without forward; the network is its `model`."""

    def __init__(self):
        super().__init__()
        self.model = UserModule()

    def training_step(self, batch, batch_idx):
        return self.model.training_step(batch, batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _final_correct(trainer, module, x, y):
    with torch.no_grad():
        net = module.model if isinstance(module, Wrapper) else module
        return (net(x).argmax(1) == y).numpy().astype(np.uint8)


@pytest.mark.parametrize("case", ["dict_keys", "batch_to_xy", "capped", "iterable", "no_forward"])
def test_example_tracker_data_sources(tmp_path, case):
    (tx, ty), _ = modular_data()
    cap, sel = 10_000, torch.arange(len(ty))
    kw = {"cadence": "every:2", "val": False}
    module, ds = DictUser(), Records(tx, ty)
    if case == "dict_keys":
        kw["keys"] = ("pair", "label")
    elif case == "batch_to_xy":
        kw["batch_to_xy"] = lambda b: (b["pair"], b["label"])
    elif case == "capped":
        cap = 17
        kw.update(keys=("pair", "label"), max_examples=cap, seed=3)
        sel = torch.randperm(len(ty), generator=torch.Generator().manual_seed(3))[:cap].sort().values
    elif case == "iterable":
        cap, ds = 20, Stream(tx, ty)
        kw["max_examples"] = cap
        sel = torch.arange(cap)
    else:
        module, ds = Wrapper(), list(zip(tx, ty))
    trainer = make_trainer(tmp_path, [ExampleTracker(**kw)], max_steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)            # the tracker must not fail
        trainer.fit(module, DataLoader(ds, batch_size=len(ty)))
    run = read_run(trainer)
    steps, correct = run.arrays("examples/train/correct")
    assert steps.tolist() == [0, 2, 4] and correct.shape == (3, min(cap, len(ty)))
    np.testing.assert_array_equal(correct[-1], _final_correct(trainer, module, tx[sel], ty[sel]))
    if case == "capped":
        np.testing.assert_array_equal(run.array("examples/train/sample", 0), sel.numpy())


def test_a_strict_example_tracker_stops_the_fit_with_its_reason(tmp_path):
    class Ints(Wrapper):
        def training_step(self, batch, batch_idx):
            return self.model(torch.stack([batch, batch], 1)).sum()

    trainer = make_trainer(tmp_path, [ExampleTracker(strict=True, val=False)], max_steps=2)
    with pytest.raises(CallbackSetupError, match="cannot split a Tensor item"):
        trainer.fit(Ints(), DataLoader(list(range(11)), batch_size=11))
