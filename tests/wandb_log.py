"""Read a W&B offline run file (``run-*.wandb``) back into protobuf records.

The file is a 7-byte W&B header followed by LevelDB-log records in 32 KiB blocks (7-byte
header each: crc32c, little-endian length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4).
wandb-core writes the last, partial block only when it closes the run's stream, after ``run.finish()``
has returned; the sink waits for that (``wandb.teardown()``), so read the file once the run is over.
A file cut short is an error here, never a shorter list of records.
"""
from __future__ import annotations

import json
from pathlib import Path

BLOCK, HEADER = 32768, 7


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, pending, records = HEADER, b"", []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        if len(chunk) < length:
            raise ValueError(f"{path}: cut short in a record at byte {pos} ({len(data)} bytes): still being written?")
        pos += HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    if pending and kind in (2, 3):
        raise ValueError(f"{path}: ends inside a record ({len(data)} bytes): still being written?")
    return records


def summarize_run(path: Path) -> dict:
    """{'run': RunRecord, 'history': [dict], 'summary': dict, 'config': dict, 'exit_code': int|None}."""
    out = {"run": None, "history": [], "summary": {}, "config": {}, "exit_code": None}

    def items(updates) -> dict:
        """Items as a dict; nested keys (["table", "_type"]) become nested dicts."""
        out_ = {}
        for item in updates:
            path = [item.key] if item.key else list(item.nested_key)
            node = out_
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = json.loads(item.value_json)
        return out_

    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"].update(items(record.run.config.update))
        elif kind == "history":
            out["history"].append(items(record.history.item))
        elif kind == "summary":
            out["summary"].update(items(record.summary.update))
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out
