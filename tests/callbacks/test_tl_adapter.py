"""A TransformerLens model through TransformerLensAdapter: the attention, ablation and Fourier
probes write their arrays. Skipped when transformer_lens is not installed: it is a large optional
extra (``pip install 'phasewatch[transformerlens]'``), not in the test extra; ``.ci/run``
installs it, so CI runs this test (TransformerLens 4.x; 2.x/3.x ``HookedTransformer`` where
that is the installed release)."""
import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

tl = pytest.importorskip("transformer_lens", reason="transformer_lens not installed: pip install "
                                                    "'phasewatch[transformerlens]' (large, so not in "
                                                    "the test extra; .ci/run installs it)")

from phasewatch.callbacks import (AblationProbe, AttentionProbe, CircuitCheckpoint, FourierProbe,  # noqa: E402
                                  TransformerLensAdapter)

from cb_helpers import make_trainer, read_run  # noqa: E402

P = 13
CFG = dict(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, d_vocab=P + 1, n_ctx=3, act_fn="relu")


def _tl_model():
    """TransformerLens 4.x: a native TransformerBridge; 2.x/3.x: a HookedTransformer."""
    try:
        from transformer_lens.model_bridge.sources import boot_native
    except ImportError:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
        return HookedTransformer(HookedTransformerConfig(**CFG, d_vocab_out=P, normalization_type=None))
    return boot_native(dict(CFG, normalization_type=None, seed=0))


class TLModule(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = TransformerLensAdapter(_tl_model(), suffix=[P])   # "a b =" with = -> token P

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x)[:, :P], y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def test_attention_ablation_and_fourier_probes_write_arrays(tmp_path):
    torch.manual_seed(0)
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], 1)
    y = (x[:, 0] + x[:, 1]) % P
    module = TLModule()
    comps = module.model.components()
    assert sorted(comps) == ["L0.head0", "L0.head1", "L0.mlp"]
    cc = CircuitCheckpoint([AttentionProbe(x=x), AblationProbe(x=x, y=y, threshold=0.0),
                            FourierProbe(p=P, losses=False)], cadence="every:2", on_error="raise")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=len(x))
    trainer = make_trainer(tmp_path, [cc], max_steps=4)
    trainer.fit(module, loader)
    run = read_run(trainer)
    steps, ent = run.arrays("attn/entropy")
    assert steps.tolist() == [0, 2, 4] and ent.shape == (3, 1, 2)
    assert (ent > 0).all() and (ent <= math.log(3) + 1e-5).all()     # 3 key positions
    _, imp = run.arrays("circuit/ablation_importance")
    assert imp.shape == (3, 3) and np.isfinite(imp).all()
    assert run.meta["circuit/ablation_components"] == ["L0.head0", "L0.head1", "L0.mlp"]
    # an independent ablation of the MLP output through TransformerLens's own hook API
    module.eval()
    with torch.no_grad():
        logits = module.model.model(torch.cat([x, torch.full((len(x), 1), P)], 1))[:, -1]
        base = nn.functional.cross_entropy(logits, y)
        hook = module.model.model.hook_dict["blocks.0.hook_mlp_out"]
        h = hook.register_forward_hook(lambda m, i, o: o.mean(0, keepdim=True).expand_as(o))
        abl = nn.functional.cross_entropy(module.model.model(torch.cat([x, torch.full((len(x), 1), P)], 1))[:, -1], y)
        h.remove()
    assert imp[-1, 2] == pytest.approx(float(abl - base), abs=1e-4)
    assert run.arrays("circuit/fourier_norm/embed")[1].shape == (3, P)
    assert run.arrays("circuit/neuron_freq")[1].shape == (3, 64)
