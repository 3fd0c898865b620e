"""Read the scalars of TensorBoard event files (``phasewatch import`` of a TensorBoard log).

Reads what ``torch.utils.tensorboard.SummaryWriter``, Lightning's ``TensorBoardLogger``,
tensorboardX and TensorFlow 2's ``tf.summary.scalar`` write: ``simple_value`` scalars and
scalar tensors of the ``scalars`` plugin. Histograms, images, text and hparams are skipped.
Records are framed and CRC-checked by ``tensorboard``'s own reader (``tensorboard`` is an
optional extra, imported only here); a record it cannot read is an error naming the file and
the byte where reading stopped, never a silently shortened series.

Several event files in one folder (a resumed run) are read in file-name (= creation) order;
where two give the same step, the later one wins.

Example:
    >>> series = read_event_series("lightning_logs/version_0")       # doctest: +SKIP
    >>> steps, values = series["val_acc"]                             # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["is_event_file", "event_files", "read_event_series", "import_events"]

INSTALL_HINT = "pip install 'phasewatch[tensorboard]'"


def is_event_file(path) -> bool:
    """True for a file named like a TensorBoard event file (``events.out.tfevents.*``)."""
    return ".tfevents." in Path(path).name


def event_files(path) -> list[Path]:
    """The event files of ``path``: the file itself, or those directly in the folder, sorted."""
    p = Path(path)
    if p.is_file():
        return [p]
    return sorted(f for f in p.iterdir() if f.is_file() and is_event_file(f))


def _loader():
    try:
        from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.util.tensor_util import make_ndarray
    except ImportError:
        raise ValueError(f"reading TensorBoard event files needs the tensorboard package: "
                         f"{INSTALL_HINT}") from None
    return RawEventFileLoader, Event, make_ndarray


def _records(path: Path) -> list[bytes]:
    """Every record of one event file; ValueError where a record is corrupt or cut short."""
    raw_loader, _, _ = _loader()
    records = list(raw_loader(str(path)).Load())  # stops silently at a bad record: check below
    read = sum(len(r) + 16 for r in records)       # u64 length, u32 CRC, data, u32 CRC
    size = os.path.getsize(path)
    if read != size:
        if not records:
            raise ValueError(f"{path}: not a TensorBoard event file (no readable record at its "
                             "start); pass the events.out.tfevents.* file of a run")
        raise ValueError(f"{path}: corrupt or cut-short record at byte {read} of {size} "
                         f"({len(records)} records read before it); nothing imported. If the run "
                         "is still writing, import it when it has finished")
    return records


def read_event_series(path, mapping: dict | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (steps int64, values float64)}`` of the scalars in ``path`` (an event file or a
    folder holding them), names renamed by ``mapping``; steps in write order."""
    _, event_cls, make_ndarray = _loader()
    mapping = mapping or {}
    files = event_files(path)
    if not files:
        raise ValueError(f"{path}: no TensorBoard event files (events.out.tfevents.*) in this folder")
    points: dict[str, tuple[list[int], list[float]]] = {}
    source: dict[str, str] = {}  # series name -> the tag it came from
    for f in files:
        scalar_tags: set[str] = set()  # TF2 tensors: the plugin is named on a tag's first value
        for record in _records(f):
            try:
                event = event_cls.FromString(record)
            except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, a CRC-valid foreign record
                raise ValueError(f"{f}: a record is not a TensorBoard event ({e})") from None
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "scalars":
                    scalar_tags.add(v.tag)
                if v.HasField("simple_value"):
                    value = float(v.simple_value)
                elif v.HasField("tensor") and v.tag in scalar_tags:
                    value = float(make_ndarray(v.tensor).item())
                else:
                    continue
                name = mapping.get(v.tag, v.tag)
                if source.setdefault(name, v.tag) != v.tag:
                    raise ValueError(f"{path}: the tags {sorted({source[name], v.tag})} both give "
                                     f"the series {name!r} after --map; map only one of them")
                steps, values = points.setdefault(name, ([], []))
                steps.append(event.step)
                values.append(value)
    if not points:
        raise ValueError(f"{path}: no scalars in its {len(files)} TensorBoard event file(s) "
                         "(empty, or only histograms, images or text)")
    return {name: (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
            for name, (s, v) in points.items()}


def import_events(path, out_dir, mapping: dict | None = None) -> str:
    """Write the scalars of the event file / folder ``path`` as the new run directory ``out_dir``."""
    from .importers import check_out_dir, write_run_dir

    check_out_dir(str(out_dir))
    return write_run_dir(read_event_series(path, mapping), out_dir, path, "tensorboard")
