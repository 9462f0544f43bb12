"""Read the records of an offline W&B run file (run-*.wandb) with wandb's own protobufs.

The file is wandb's LevelDB-style log: a 7-byte header, then 32 KiB blocks of records, each
with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last).
"""

from __future__ import annotations

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:8]
    pos, out, pending = HEADER, [], b""
    while pos + HEADER <= len(data):
        left = BLOCK - (pos % BLOCK)
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            out.append(rec)
            pending = b""
    return out


def history_keys(path: Path) -> set[str]:
    """Every metric key logged to the run's history."""
    keys = set()
    for rec in records(path):
        if rec.WhichOneof("record_type") == "history":
            keys |= {item.key or "/".join(item.nested_key) for item in rec.history.item}
    return keys


def config_keys(path: Path) -> set[str]:
    keys = set()
    for rec in records(path):
        if rec.WhichOneof("record_type") == "config":
            keys |= {item.key or "/".join(item.nested_key) for item in rec.config.update}
    return keys


def history_rows(path: Path) -> list[dict[str, object]]:
    """Every history row of the run as {key: value parsed from JSON}."""
    import json

    rows = []
    for rec in records(path):
        if rec.WhichOneof("record_type") == "history":
            rows.append(
                {
                    (item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                    for item in rec.history.item
                }
            )
    return rows


def summary(path: Path) -> dict[str, object]:
    """The run's final summary as {key: value parsed from JSON} (later updates win)."""
    import json

    out: dict[str, object] = {}
    for rec in records(path):
        if rec.WhichOneof("record_type") == "summary":
            for item in rec.summary.update:
                out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out


def run_name(path: Path) -> str:
    """The run's display name."""
    for rec in records(path):
        if rec.WhichOneof("record_type") == "run":
            return rec.run.display_name
    return ""
