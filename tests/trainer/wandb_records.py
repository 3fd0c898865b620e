"""Read what W&B recorded, from an offline run's ``.wandb`` file (no mocks, no network).

The file is a 7-byte header (``:W&B`` magic, version) followed by LevelDB-style log
records in 32 KiB blocks: each record is crc32 (4 bytes), length (2), type (1: full,
2: first, 3: middle, 4: last) and data; the data of a full record (or of a first..last
chain) is a serialized ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7
RECORD_HEADER = 7


def read_records(path: Path) -> list:
    """All ``Record`` protobufs in a ``.wandb`` file, in order."""
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, pos = [], b"", HEADER
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < RECORD_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + RECORD_HEADER])
        chunk = data[pos + RECORD_HEADER:pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history_rows(path: Path) -> list[dict]:
    """The logged history rows (``run.log`` calls) as dicts of decoded values."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def record_items(path: Path, kind: str) -> dict:
    """Final value of every key of the ``config`` or ``summary`` records (later ones win)."""
    found = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == kind:
            for item in getattr(record, kind).update:
                found[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return found


def config_items(path: Path) -> dict:
    """The run config as recorded."""
    return record_items(path, "config")


def metric_definitions(path: Path) -> dict[str, str]:
    """``define_metric`` glob/name -> step metric."""
    found = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "metric":
            key = record.metric.glob_name or record.metric.name
            found[key] = record.metric.step_metric
    return found


def offline_run_file(run_dir: Path) -> Path:
    """The single ``.wandb`` file of the offline run inside a phasewatch run directory."""
    files = sorted(Path(run_dir).glob("wandb/offline-run-*/*.wandb"))
    assert len(files) == 1, f"expected one offline W&B run in {run_dir}, found {files}"
    return files[0]
