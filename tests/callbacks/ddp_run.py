"""Driver for test_ddp.py (run as a script so Lightning's DDP launcher can re-execute it).

    python ddp_run.py OUT_DIR {ddp,single}
"""

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).parent))

from cb_helpers import UserModule, modular_data  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from phasewatch.callbacks import (ExampleTracker, GradientMonitor, TraceLogger,  # noqa: E402
                                  WeightNormMonitor)


def main(out: str, mode: str) -> None:
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    (tx, ty), (vx, vy) = modular_data(p=11, frac=0.5)  # 60 train examples, 61 val
    module = UserModule()
    per_rank = len(tx) // 2 if mode == "ddp" else len(tx)  # full batch overall in both modes
    loader = DataLoader(TensorDataset(tx, ty), batch_size=per_rank, shuffle=False)
    callbacks = [WeightNormMonitor("every:2", include="net"), GradientMonitor("every:2"),
                 ExampleTracker("every:2", val=(vx, vy))]
    kw = dict(strategy="ddp", devices=2) if mode == "ddp" else dict(devices=1)
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", logger=TraceLogger(out, name=mode, version="0"),
                         callbacks=callbacks, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, num_sanity_val_steps=0, **kw)
    trainer.fit(module, loader)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
