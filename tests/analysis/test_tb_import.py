"""`phasewatch import` of TensorBoard event files written by a real Lightning run."""
import os

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
pytorch_lightning = pytest.importorskip("pytorch_lightning")
torch = pytest.importorskip("torch")

from phasewatch.analysis import load_run  # noqa: E402
from phasewatch.analysis.cli import main  # noqa: E402
from phasewatch.analysis.names import resolve_all  # noqa: E402


class TinyClassifier(pytorch_lightning.LightningModule):
    """A user's module: logs `train_acc` per step and `val_acc` per epoch, and remembers them."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 2)
        self.logged = {"train_acc_step": [], "val_acc": []}

    def training_step(self, batch, _):
        x, y = batch
        logits = self.net(x)
        acc = (logits.argmax(-1) == y).float().mean()
        self.log("train_acc", acc, on_step=True, on_epoch=True)
        self.logged["train_acc_step"].append((self.global_step, acc.item()))
        return torch.nn.functional.cross_entropy(logits, y)

    def validation_step(self, batch, _):
        x, y = batch
        acc = (self.net(x).argmax(-1) == y).float().mean()
        self.log("val_acc", acc)  # one batch: the epoch's value, at the last training step's number
        self.logged["val_acc"].append((self.global_step - 1, acc.item()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
    """``(lightning log root, logged values)`` of a 9-step run with a TensorBoardLogger."""
    root = tmp_path_factory.mktemp("tb")
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 4, generator=g)
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    val_loader = torch.utils.data.DataLoader(data, batch_size=24)
    model = TinyClassifier()
    trainer = pytorch_lightning.Trainer(
        max_epochs=3, logger=pytorch_lightning.loggers.TensorBoardLogger(str(root), name="mine"),
        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(model, loader, val_loader)
    return root / "mine", model.logged


def _event_file(log_root):
    (f,) = [p for p in (log_root / "version_0").iterdir() if ".tfevents." in p.name]
    return f


def test_lightning_tensorboard_log_imports_with_logged_values(tb_run, tmp_path, capsys):
    log_root, logged = tb_run
    assert main(["import", str(log_root), "--out", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.strip().endswith(f"version_0 -> {tmp_path / 'run'}")
    with load_run(tmp_path / "run") as run:
        assert run.meta["import_format"] == "tensorboard"
        for name, points in logged.items():
            steps, values = run.series(name)
            want_steps, want = np.array(points).T
            assert steps.tolist() == want_steps.astype(int).tolist()      # 9 steps, 3 epochs
            # TensorBoard stores float32: compare with the logged values rounded to float32
            assert values.tolist() == want.astype(np.float32).astype(np.float64).tolist()
        assert len(run.series("train_acc_step")[0]) == 9
        found = resolve_all(run.names())
        assert found["train_acc"] == "train_acc_step" and found["val_acc"] == "val_acc"


def test_one_event_file_with_map(tb_run, tmp_path):
    log_root, logged = tb_run
    assert main(["import", str(_event_file(log_root)), "--out", str(tmp_path / "run"),
                 "--map", "val_acc=val/acc"]) == 0
    with load_run(tmp_path / "run") as run:
        assert "val_acc" not in run.names()
        assert run.series("val/acc")[0].tolist() == [s for s, _ in logged["val_acc"]]


def _cut(data):
    return data[: len(data) - 7]                      # the last record loses its tail


def _flip(data):
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


@pytest.mark.parametrize("damage, expected", [
    (lambda d: b"", "no scalars in its 1 TensorBoard event file"),
    (lambda d: b"not an event file\n" * 20, "not a TensorBoard event file"),
    (_cut, "corrupt or cut-short record at byte"),
    (_flip, "corrupt or cut-short record at byte"),
], ids=["empty", "text", "cut", "flipped-byte"])
def test_bad_event_files_are_one_line_and_import_nothing(tb_run, tmp_path, capsys, damage, expected):
    folder = tmp_path / "logs"
    folder.mkdir()
    bad = folder / "events.out.tfevents.1.host"
    bad.write_bytes(damage(_event_file(tb_run[0]).read_bytes()))
    assert main(["import", str(folder), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and str(folder) in err[0]
    assert sorted(os.listdir(tmp_path)) == ["logs"]   # no run directory, no temporary folder


def test_csv_options_on_event_files_are_usage_errors(tb_run, tmp_path, capsys):
    assert main(["import", str(tb_run[0]), "--out", str(tmp_path / "r"), "--run", "x"]) == 2
    assert "apply to CSV files only" in capsys.readouterr().err


def test_without_the_tensorboard_package_one_line_says_what_to_install(tb_run, tmp_path, capsys,
                                                                       monkeypatch):
    import sys
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"] + ["tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)                   # as if not installed
    assert main(["import", str(tb_run[0]), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'phasewatch[tensorboard]'" in err[0]


def test_tf2_style_tensor_scalars_named_by_their_first_value(tmp_path):
    """tf.summary.scalar writes tensors; the `scalars` plugin is named on a tag's first value only."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from phasewatch.analysis.tb_events import read_event_series

    writer = EventFileWriter(str(tmp_path))
    for step, value in [(0, 0.25), (5, 0.5), (9, 1.0)]:
        summary = scalar_pb("val/acc", value)
        if step:
            summary.value[0].ClearField("metadata")
        writer.add_event(Event(step=step, summary=summary))
    writer.close()
    steps, values = read_event_series(tmp_path)["val/acc"]
    assert steps.tolist() == [0, 5, 9] and values.tolist() == [0.25, 0.5, 1.0]
