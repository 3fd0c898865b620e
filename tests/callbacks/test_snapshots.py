import io

import numpy as np
import pytest
import torch

from phasewatch.callbacks import WeightSnapshot, list_snapshots, load_snapshot

from cb_helpers import UserModule, full_batch_loader, make_trainer, modular_data




def test_snapshots_load_back_and_respect_budget(tmp_path):
    (tx, ty), _ = modular_data()
    module = UserModule()
    buf = io.BytesIO()
    np.savez(buf, **{k: v.numpy() for k, v in module.state_dict().items()})
    one = len(buf.getvalue())
    cb = WeightSnapshot(cadence="every:1", budget_mb=5.5 * one / 2**20, format="npz")
    trainer = make_trainer(tmp_path, [cb], max_steps=40)
    trainer.fit(module, full_batch_loader(tx, ty))
    steps, paths = list_snapshots(trainer.logger.log_dir)
    assert len(steps) == 5 and steps[0] == 0 and steps[-1] == 40
    assert sum(p.stat().st_size for p in paths) <= 5.5 * one
    logs = np.log1p(steps)
    # spread over the log axis (dropping the oldest would leave [0, 37..40], a gap of 3.6)
    assert np.diff(logs).max() < 1.5 and steps[1] <= 3
    state = load_snapshot(paths[-1])
    fresh = UserModule()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    for k, v in module.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)


def test_bad_arguments():
    with pytest.raises(ValueError, match="budget_mb"):
        WeightSnapshot(budget_mb=0)
    with pytest.raises(ValueError, match="'pt'"):
        WeightSnapshot(format="pt")
