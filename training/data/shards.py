"""Sample datasets on disk: a folder of safetensors shards plus `index.json`.

    index.json            {"format": "salt-dataset-v1", "kind": "latents" | "ode_pairs", "count": N,
                           "fields": {name: per-sample shape}, "shards": [{"file", "count"}], "meta": {...}}
    shard-*.safetensors   one tensor per field, [n, *shape]; header metadata "prompts" = JSON list of n strings

Shards are written atomically; a writer on rank r names its shards `shard-r{r}-*` so ranks never collide,
and `write_index` (rank 0, after the others finished) lists whatever shards exist.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from salt_core.atomic import atomic_write, atomic_write_text
from salt_core.checkpoints import read_safetensors_header

FORMAT = "salt-dataset-v1"
INDEX = "index.json"


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message names the path."""


class ShardWriter:
    """Accumulate samples (dicts of per-sample tensors + a prompt) and flush them as shards."""

    def __init__(self, folder: str, *, samples_per_shard: int = 64, prefix: str = "shard"):
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        self.folder, self.per_shard, self.prefix = folder, samples_per_shard, prefix
        self._rows: list[dict[str, torch.Tensor]] = []
        self._prompts: list[str] = []
        self._shapes: Optional[dict[str, tuple]] = None
        self._shard_no = 0
        self.count = 0
        os.makedirs(folder, exist_ok=True)

    def add(self, tensors: dict[str, torch.Tensor], prompt: str) -> None:
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        if self._shapes is None:
            self._shapes = shapes
        elif shapes != self._shapes:
            raise ValueError(f"{self.folder}: sample {self.count} has shapes {shapes}, earlier samples {self._shapes}")
        self._rows.append({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()})
        self._prompts.append(prompt)
        self.count += 1
        if len(self._rows) >= self.per_shard:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        tensors = {k: torch.stack([r[k] for r in self._rows]) for k in self._rows[0]}
        meta = {"prompts": json.dumps(self._prompts)}
        path = os.path.join(self.folder, f"{self.prefix}-{self._shard_no:05d}.safetensors")
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        self._shard_no += 1
        self._rows, self._prompts = [], []


def write_index(folder: str, kind: str, meta: Optional[dict] = None) -> dict:
    """List every shard in `folder` (sorted by name) into index.json, checking their fields agree."""
    files = sorted(n for n in os.listdir(folder) if n.startswith("shard") and n.endswith(".safetensors"))
    if not files:
        raise DatasetError(f"{folder}: no shard-*.safetensors files were written")
    shards, fields = [], None
    for name in files:
        infos, _ = read_safetensors_header(os.path.join(folder, name))
        these = {k: list(i.shape[1:]) for k, i in infos.items()}
        counts = {i.shape[0] for i in infos.values()}
        if fields is None:
            fields = these
        if these != fields or len(counts) != 1:
            raise DatasetError(f"{folder}/{name}: fields {these} differ from the other shards' {fields}")
        shards.append({"file": name, "count": counts.pop()})
    index = {"format": FORMAT, "kind": kind, "count": sum(s["count"] for s in shards), "fields": fields,
             "shards": shards, "meta": meta or {}}
    atomic_write_text(os.path.join(folder, INDEX), json.dumps(index, indent=1))
    return index


class ShardDataset:
    """Random access to the samples of a shard folder: item i -> {field: tensor, "prompt": str}."""

    def __init__(self, folder: str, kind: Optional[str] = None):
        if not os.path.isdir(folder):
            raise DatasetError(f"{folder}: dataset folder not found")
        index_path = os.path.join(folder, INDEX)
        if not os.path.exists(index_path):
            raise DatasetError(f"{folder}: no {INDEX}; is this a dataset written by build-latents / ode-pairs?")
        index = _read_index(index_path)
        if kind is not None and index["kind"] != kind:
            raise DatasetError(f"{folder}: a {index['kind']!r} dataset, but data.kind asks for {kind!r}")
        if index["count"] < 1:
            raise DatasetError(f"{folder}: the dataset is empty")
        self.folder, self.index = folder, index
        self.kind = index["kind"]
        self.meta: dict = index.get("meta", {})
        self.fields = {k: tuple(v) for k, v in index["fields"].items()}
        self._prompts: dict[int, list[str]] = {}
        for n, s in enumerate(index["shards"]):  # every shard checked now, not when a late batch reaches it
            self._prompts[n] = _check_shard(os.path.join(folder, s["file"]), s["count"], self.fields, index_path)
        self._starts, total = [], 0
        for s in index["shards"]:
            self._starts.append(total)
            total += s["count"]
        if total != index["count"]:
            raise DatasetError(f"{index_path}: count {index['count']} but its shards hold {total} samples")
        self._handles: dict[int, object] = {}

    def __len__(self) -> int:
        return self.index["count"]

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} outside 0..{len(self) - 1}")
        shard = max(k for k, s in enumerate(self._starts) if s <= i)
        return shard, i - self._starts[shard]

    def _open(self, shard: int):
        if shard not in self._handles:
            path = os.path.join(self.folder, self.index["shards"][shard]["file"])
            try:
                self._handles[shard] = safe_open(path, framework="pt", device="cpu")
            except Exception as e:  # changed on disk since the start (safetensors raises its own error types)
                raise DatasetError(f"{path}: cannot read this shard any more ({e})") from None
        return self._handles[shard]

    def __getitem__(self, i: int) -> dict:
        shard, j = self._locate(int(i))
        h = self._open(shard)
        item = {k: h.get_slice(k)[j: j + 1][0] for k in self.fields}
        prompts = self._prompts[shard]
        item["prompt"] = prompts[j] if j < len(prompts) else ""
        return item


_INDEX_KEYS = {"format": str, "kind": str, "count": int, "fields": dict, "shards": list}


def _read_index(path: str) -> dict:
    """index.json, checked: valid JSON, our format, the keys with their types, one {file, count} per shard."""
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text file (expected the dataset's JSON index)") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); the dataset "
                           "index is damaged: rebuild the dataset (build-latents / ode-pairs)") from None
    if not isinstance(index, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(index).__name__}")
    if index.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {index.get('format')!r}, expected {FORMAT!r}")
    for key, kind in _INDEX_KEYS.items():
        if not isinstance(index.get(key), kind) or isinstance(index.get(key), bool):
            raise DatasetError(f"{path}: {key!r} must be a {kind.__name__}, got {index.get(key)!r}")
    for name, shape in index["fields"].items():
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise DatasetError(f"{path}: field {name!r} must have a per-sample shape (a list of sizes), got {shape!r}")
    for s in index["shards"]:
        if not (isinstance(s, dict) and isinstance(s.get("file"), str) and isinstance(s.get("count"), int)):
            raise DatasetError(f"{path}: every entry of 'shards' must be {{\"file\": name, \"count\": n}}, got {s!r}")
    return index


def _check_shard(path: str, count: int, fields: dict[str, tuple], index_path: str) -> list[str]:
    """A shard's header against the index (present, complete, same fields and count) -> its prompts."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: shard listed in {index_path} is missing")
    try:
        infos, meta = read_safetensors_header(path)  # also checks the file holds all the bytes its header names
    except ValueError as e:
        raise DatasetError(f"{e}") from None
    found = {k: tuple(i.shape[1:]) for k, i in infos.items()}
    counts = {i.shape[0] for i in infos.values() if i.shape}
    if found != fields or counts != {count}:
        raise DatasetError(f"{path}: holds {sorted(counts)} samples of fields {found}; {index_path} lists {count} "
                           f"samples of {fields}")
    try:
        prompts = json.loads(meta.get("prompts", "[]"))
    except json.JSONDecodeError:
        raise DatasetError(f"{path}: damaged 'prompts' metadata (not JSON)") from None
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise DatasetError(f"{path}: the 'prompts' metadata must be a list of strings")
    return prompts
