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

from salt_core.checkpoints import atomic_write, read_safetensors_header

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
    atomic_write(os.path.join(folder, INDEX), lambda tmp: _write_json(tmp, index))
    return index


def _write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)


class ShardDataset:
    """Random access to the samples of a shard folder: item i -> {field: tensor, "prompt": str}."""

    def __init__(self, folder: str, kind: Optional[str] = None):
        index_path = os.path.join(folder, INDEX)
        if not os.path.isdir(folder):
            raise DatasetError(f"{folder}: dataset folder not found")
        if not os.path.exists(index_path):
            raise DatasetError(f"{folder}: no {INDEX}; is this a dataset written by build-latents / ode-pairs?")
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
        if index.get("format") != FORMAT:
            raise DatasetError(f"{index_path}: format {index.get('format')!r}, expected {FORMAT!r}")
        if kind is not None and index["kind"] != kind:
            raise DatasetError(f"{folder}: a {index['kind']!r} dataset, but data.kind asks for {kind!r}")
        for s in index["shards"]:
            if not os.path.exists(os.path.join(folder, s["file"])):
                raise DatasetError(f"{folder}: shard {s['file']} listed in {INDEX} is missing")
        if index["count"] < 1:
            raise DatasetError(f"{folder}: the dataset is empty")
        self.folder, self.index = folder, index
        self.kind = index["kind"]
        self.meta: dict = index.get("meta", {})
        self.fields = {k: tuple(v) for k, v in index["fields"].items()}
        self._starts, total = [], 0
        for s in index["shards"]:
            self._starts.append(total)
            total += s["count"]
        self._handles: dict[int, object] = {}
        self._prompts: dict[int, list[str]] = {}

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
            handle = safe_open(path, framework="pt", device="cpu")
            self._handles[shard] = handle
            self._prompts[shard] = json.loads(handle.metadata().get("prompts", "[]"))
        return self._handles[shard]

    def __getitem__(self, i: int) -> dict:
        shard, j = self._locate(int(i))
        h = self._open(shard)
        item = {k: h.get_slice(k)[j: j + 1][0] for k in self.fields}
        prompts = self._prompts[shard]
        item["prompt"] = prompts[j] if j < len(prompts) else ""
        return item
