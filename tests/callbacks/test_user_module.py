"""A stranger's own LightningModule (dict batches, ``self.log("train_acc")`` / ``"val_acc"``, its
own MLP on modular addition, made probe-able by the recipe in docs/your_model.md) with
``default_callbacks()``: it groks, PhaseMonitor sees it live and stops the run, and
``watch --once``, ``analyze`` and ``report`` all show the curves and the class.

Setup (chosen so it groks fast on one CPU thread, not to match a paper): p = 23, 60 % of the
pairs for training, full batch, AdamW lr 1e-2, weight decay 1.0; memorization at ~25 steps,
generalization at ~1,000-1,500."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from phasewatch.analysis import load_run
from phasewatch.analysis.cli import main
from phasewatch.callbacks import PhaseMonitor, TraceLogger, default_callbacks
from phasewatch.trainer.fit_console import EventPrinter, StepProgressBar

P, FRAC = 23, 0.6


class PairDataset(Dataset):
    """Items are dicts, as many users write them."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


class MyGrokker(pl.LightningModule):
    """The user's module; the three probe-able members follow docs/your_model.md."""

    def __init__(self, train_x, train_y, p=P, d=32, hidden=128):
        super().__init__()
        self.emb = nn.Embedding(p, d)
        self.hidden = nn.Linear(2 * d, hidden)
        self.out = nn.Linear(hidden, p)
        self.hook_neurons = nn.Identity()                     # recipe: neuron activations
        self.task = SimpleNamespace(modulus=p, train_x=train_x, train_y=train_y)  # recipe: p, probe set

    def embedding_tables(self):                               # recipe: [p, d] token embedding
        return {"embed": self.emb.weight}

    def unembedding_table(self):                              # recipe: [n_classes, hidden]
        return self.out.weight

    def forward(self, x):
        return self.out(self.hook_neurons(torch.relu(self.hidden(self.emb(x).flatten(1)))))

    def _step(self, batch, split):
        logits = self(batch["x"])
        loss = nn.functional.cross_entropy(logits, batch["y"])
        self.log(f"{split}_acc", (logits.argmax(1) == batch["y"]).float().mean())
        self.log(f"{split}_loss", loss)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))


def _split():
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], 1)
    y = (x[:, 0] + x[:, 1]) % P
    perm = torch.randperm(P * P, generator=torch.Generator().manual_seed(0))
    n = int(FRAC * P * P)
    return (x[perm[:n]], y[perm[:n]]), (x[perm[n:]], y[perm[n:]])


@pytest.fixture(scope="module")
def grokked(tmp_path_factory):
    torch.set_num_threads(1)
    pl.seed_everything(0)
    (tx, ty), (vx, vy) = _split()
    root = tmp_path_factory.mktemp("user")
    stop = PhaseMonitor(every=25, stop_after_generalization=100, wandb=False)
    printer = EventPrinter(out=io.StringIO())          # what `phasewatch fit` prints
    trainer = pl.Trainer(max_steps=3000, check_val_every_n_epoch=25, log_every_n_steps=25,
                         logger=TraceLogger(str(root / "runs"), name="mine"), accelerator="cpu",
                         callbacks=[*default_callbacks(), stop, printer], enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, enable_checkpointing=False)
    full = dict(batch_size=len(tx), shuffle=False)
    trainer.fit(MyGrokker(tx, ty), DataLoader(PairDataset(tx, ty), **full),
                DataLoader(PairDataset(vx, vy), batch_size=len(vx)))
    return trainer, stop, root, printer.out.getvalue()


def test_phase_monitor_detects_live_and_stops_on_user_names(grokked):
    trainer, stop, _, printed = grokked
    with load_run(trainer.logger.log_dir) as run:
        live = {e["name"]: e["step"] for e in run.events() if e["payload"].get("source") == "PhaseMonitor"}
        s_tr, v_tr = run.series("train_acc")
        s_va, v_va = run.series("val_acc")
    assert set(live) >= {"memorization", "generalization"}
    # independent check on the run's own trace: the crossing lies after the last logged step
    # below 0.99 before the first one at >= 0.99 (crossings are interpolated between
    # evaluations; a running median of 5 may date it a few samples later, never earlier)
    i_tr, i_va = int(np.argmax(v_tr >= 0.99)), int(np.argmax(v_va >= 0.99))
    first_tr, first_va = s_tr[i_tr], s_va[i_va]
    assert s_tr[max(i_tr - 1, 0)] <= live["memorization"] <= first_tr + 5 * 25
    assert s_va[max(i_va - 1, 0)] <= live["generalization"] <= first_va + 5 * 25
    assert live["generalization"] > 5 * live["memorization"]        # grokking, not comprehension
    assert stop.stopped_at is not None and trainer.global_step < 3000
    assert stop.stopped_at >= live["generalization"] + 100
    assert printed.splitlines()[:2] == [f"phase event: memorization at step {live['memorization']}",
                                        f"phase event: generalization at step {live['generalization']}"]
    assert printed.splitlines()[-1].startswith("class: grokking")
    bar = StepProgressBar.postfix(trainer)                   # the fit progress bar's accuracies
    assert bar["train_acc"] == f"{float(trainer.callback_metrics['train_acc']):.3f}"
    assert float(bar["val_acc"]) >= 0.99


def test_default_probes_and_examples_run_on_the_user_module(grokked):
    trainer = grokked[0]
    with load_run(trainer.logger.log_dir) as run:
        assert run.meta["circuit/probes"] == ["fourier"]                  # via the recipe
        assert set(run.meta["circuit/skipped"]) == {"attention", "ablation"}
        steps, norms = run.arrays("circuit/fourier_norm/embed")
        assert norms.shape == (len(steps), P) and len(steps) >= 3
        gini = run.series("circuit/gini")[1]
        assert gini[-1] > gini[0]                                  # the embedding got sparser
        n_train = int(FRAC * P * P)
        assert run.arrays("examples/train/correct")[1].shape[1] == n_train   # dict items read
        assert not any(k.startswith("callbacks/failed/") for k in run.meta)


def test_watch_analyze_report_show_curves_and_class(grokked, capsys):
    trainer, _, root, _ = grokked
    run_dir = trainer.logger.log_dir
    assert main(["watch", str(root / "runs"), "--once"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "mine-" in line)
    _, status, _, tr, va, run_class = row.split()[:6]      # the table's columns
    assert float(tr) >= 0.99 and float(va) >= 0.99 and run_class == "grokking", row
    assert main(["analyze", run_dir]) == 0
    out = capsys.readouterr().out
    assert "grokking" in out and "no train accuracy" not in out
    assert main(["report", str(root / "runs" / "latest")]) == 0
    page = (root / "runs" / "latest" / "analysis" / "report.html").read_text()
    tag = trainer.logger.run_id
    assert f"<h2>{tag}</h2>" in page and "latest" not in page.split("<h2>Settings")[0]
    from phasewatch.analysis.figures import plot_run
    fig = plot_run(run_dir)
    labels = {line.get_label(): len(line.get_xdata()) for ax in fig.axes for line in ax.get_lines()}
    assert labels.get("train_acc", 0) > 10 and labels.get("val_acc", 0) > 10
    assert "grokking" in fig.axes[0].get_title()
