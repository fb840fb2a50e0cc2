"""Reading checkpoint files safely: names, shapes and dtypes first, tensor data on demand.

* `.safetensors`: the header is parsed and validated here (truncation is caught before any
  tensor is read); data comes through `safetensors.safe_open`.
* Sharded safetensors: a `*.safetensors.index.json` or a folder holding one (diffusers / official 14B).
* `.pt/.pth/.ckpt/.bin`: ONLY `torch.load(weights_only=True)`; a pickle that carries code is
  refused by torch's restricted unpickler before anything runs, and we never retry unsafely.

Every failure is a `CheckpointError` (a ValueError) whose message starts with the file path.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import struct
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .detect import CheckpointError, TRAINER_KEYS, pick_trainer_entry, split_flat_trainer_names, unwrap_container


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: torch.dtype


_ST_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _name, _attr in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("U16", "uint16"),
                     ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):
        _ST_DTYPES[_name] = getattr(torch, _attr)

_MAX_HEADER = 100 * 1024 * 1024
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def _dtype_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# ---- safetensors header ------------------------------------------------------------------------

def read_safetensors_header(path: str) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate a safetensors header -> ({name: TensorInfo}, metadata). Reads no tensor data."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated or empty file ({size} bytes); not a valid .safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise CheckpointError(
                f"{path}: truncated or damaged .safetensors file: the header claims {n} bytes but the file has {size}"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged .safetensors header ({e}); not a valid .safetensors file") from None
    metadata = header.pop("__metadata__", None) or {}
    infos: dict[str, TensorInfo] = {}
    data_end = 0
    for name, entry in header.items():
        try:
            dtype = _ST_DTYPES[entry["dtype"]]
            shape = tuple(int(s) for s in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: damaged .safetensors header: bad entry for {name!r}: {entry!r}") from None
        if end - begin != _dtype_size(dtype) * _prod(shape):
            raise CheckpointError(f"{path}: damaged .safetensors header: {name!r} has shape {shape} "
                                  f"but {end - begin} bytes")
        infos[name] = TensorInfo(shape, dtype)
        data_end = max(data_end, end)
    have = size - 8 - n
    if have < data_end:
        raise CheckpointError(f"{path}: the file is truncated: its header describes {data_end} bytes of tensor "
                              f"data but only {have} are present (an incomplete download or copy?)")
    return infos, {str(k): str(v) for k, v in metadata.items()}


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


# ---- reader ------------------------------------------------------------------------------------

class CheckpointReader:
    """An open checkpoint: `infos` (name -> shape, dtype), `metadata`, tensors by `read(name)`.

    For trainer checkpoints only the chosen entry is visible (`trainer_entry`; all entries in `entries`).
    Use as a context manager.
    """

    def __init__(self, path: str, kind: str, infos: dict[str, TensorInfo], metadata: dict[str, str],
                 reader: Callable[[str], torch.Tensor], closer: Callable[[], None] = lambda: None,
                 trainer_entry: Optional[str] = None, notes: tuple[str, ...] = (), entries: tuple[str, ...] = ()):
        self.path, self.kind, self.infos, self.metadata = path, kind, infos, metadata
        self.trainer_entry, self.notes, self.entries = trainer_entry, notes, entries  # entries: all trainer keys
        self._reader, self._closer = reader, closer

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: i.shape for k, i in self.infos.items()}

    def read(self, name: str) -> torch.Tensor:
        if name not in self.infos:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}")
        try:
            t = self._reader(name)
        except Exception as e:  # damaged data behind a valid header
            raise CheckpointError(f"{self.path}: cannot read tensor {name!r}: {type(e).__name__}: {e}") from None
        if tuple(t.shape) != self.infos[name].shape:
            raise CheckpointError(f"{self.path}: tensor {name!r} has shape {tuple(t.shape)}, "
                                  f"its header says {self.infos[name].shape}")
        return t

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _select_flat_trainer(path: str, infos: dict, which: str, prefer: str) -> tuple[dict, dict[str, str], Optional[str],
                                                                                  tuple, tuple]:
    """Flattened trainer names (`generator_ema.model....`) -> infos of the chosen entry, name map, entry, notes,
    every entry."""
    groups = split_flat_trainer_names(infos)
    if groups is None:
        if which != "auto":
            raise CheckpointError(f"{path}: weights {which!r} apply to Self Forcing trainer checkpoints "
                                  f"(entries {list(TRAINER_KEYS)}); this file is a plain state dict")
        return infos, {k: k for k in infos}, None, (), ()
    entry, note = pick_trainer_entry(groups, which, path, prefer)
    cut = len(entry) + 1
    names = {n[cut:]: n for n in groups[entry]}
    return {k: infos[v] for k, v in names.items()}, names, entry, (note,), tuple(groups)


def _open_safetensors(path: str, which: str, prefer: str) -> CheckpointReader:
    from safetensors import safe_open

    infos, metadata = read_safetensors_header(path)
    infos, names, entry, notes, entries = _select_flat_trainer(path, infos, which, prefer)
    try:
        handle = safe_open(path, framework="pt", device="cpu")
    except Exception as e:
        raise CheckpointError(f"{path}: cannot open as .safetensors: {e}") from None
    return CheckpointReader(path, "safetensors", infos, metadata, lambda n: handle.get_tensor(names[n]),
                            lambda: handle.__exit__(None, None, None), entry, notes, entries)


def _open_sharded(index_path: str, which: str, prefer: str) -> CheckpointReader:
    from safetensors import safe_open

    try:
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index_path}: not a valid safetensors index (needs a 'weight_map'): {e}") from None
    folder = os.path.dirname(index_path)
    infos: dict[str, TensorInfo] = {}
    metadata: dict[str, str] = {}
    shard_of: dict[str, str] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = os.path.join(folder, shard)
        if not os.path.isfile(shard_path):
            raise CheckpointError(f"{index_path}: shard {shard!r} listed in the index is missing")
        shard_infos, shard_meta = read_safetensors_header(shard_path)
        metadata.update(shard_meta)
        for name, info in shard_infos.items():
            infos[name] = info
            shard_of[name] = shard_path
    missing = [n for n in weight_map if n not in infos]
    if missing:
        raise CheckpointError(f"{index_path}: {len(missing)} tensors in the index are in no shard, e.g. {missing[:5]}")
    infos, names, entry, notes, entries = _select_flat_trainer(index_path, infos, which, prefer)
    handles: dict[str, object] = {}

    def read(name: str) -> torch.Tensor:
        shard = shard_of[names[name]]
        if shard not in handles:
            handles[shard] = safe_open(shard, framework="pt", device="cpu")
        return handles[shard].get_tensor(names[name])

    def close() -> None:
        for h in handles.values():
            h.__exit__(None, None, None)
        handles.clear()

    return CheckpointReader(index_path, "sharded safetensors", infos, metadata, read, close, entry, notes, entries)


def load_torch_file(path: str, mmap: bool = True) -> object:
    """torch.load with weights_only=True (mmap for zip files unless mmap=False); a clear CheckpointError on
    any failure, never torch's advice to lift the restriction."""
    with open(path, "rb") as f:
        is_zip = mmap and f.read(4) == b"PK\x03\x04"
    try:
        with warnings.catch_warnings():  # torch's note on old pickle protocols is noise here
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Weights only load failed" in text:
            raise CheckpointError(
                f"{path}: refused to unpickle: the file contains Python objects or code outside the safe "
                f"tensor allow-list ({_refused_what(text)}); nothing from it was executed. "
                "If you trust its origin, convert it to .safetensors elsewhere"
            ) from None
        raise CheckpointError(f"{path}: damaged checkpoint (unpickling failed: {_first_line(text)})") from None
    except Exception as e:  # zip errors, EOF, garbage
        raise CheckpointError(
            f"{path}: cannot read as a PyTorch checkpoint: the file is truncated, damaged or of another "
            f"format ({type(e).__name__}: {_first_line(str(e))})"
        ) from None


# What torch's restricted unpickler names as refused; its advice (re-run with the restriction off, or
# allow-list the global) is never repeated: either would run the file's code.
_REFUSED = re.compile(r"(unsupported GLOBAL [\w.]+|Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+)")
_ADVICE = re.compile(r"weights_only|safe_globals|add_safe_globals", re.IGNORECASE)


def _refused_what(text: str) -> str:
    found = _REFUSED.search(text)
    return found.group(1) if found else "unsupported pickle content"


def _first_line(text: str) -> str:
    """The first line of an error text, cut to 200 characters; a line of unpickling advice is dropped."""
    line = (text.splitlines() or [""])[0][:200]
    return "restricted unpickler error" if _ADVICE.search(line) else line


def _open_torch(path: str, which: str, prefer: str) -> CheckpointReader:
    obj = load_torch_file(path)
    state, entry, notes = unwrap_container(obj, which, path, prefer)
    entries = tuple(k for k in TRAINER_KEYS if isinstance(obj, dict) and isinstance(obj.get(k), dict) and obj[k])
    infos = {k: TensorInfo(tuple(v.shape), v.dtype) for k, v in state.items()}
    return CheckpointReader(path, "torch", infos, {}, state.__getitem__, state.clear, entry, tuple(notes), entries)


def _resolve_folder(path: str) -> str:
    entries = sorted(os.listdir(path))
    index = [e for e in entries if e.endswith(".safetensors.index.json")]
    singles = [e for e in entries if e.endswith(".safetensors")]
    if len(index) == 1:
        return os.path.join(path, index[0])
    if not index and len(singles) == 1:
        return os.path.join(path, singles[0])
    raise CheckpointError(f"{path}: a folder must hold one .safetensors file or one *.safetensors.index.json; "
                          f"found {index + singles or 'none'}")


def open_checkpoint(path: str | os.PathLike, *, which: str = "auto", prefer: str = "ema") -> CheckpointReader:
    """Open a checkpoint for reading (see the module doc). which picks a Self Forcing trainer entry:
    "auto" (the `prefer`red one, "ema" = generator_ema or "regular" = generator, when present, else the other),
    "ema", "regular" / "generator", "critic"."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if os.path.isdir(path):
        path = _resolve_folder(path)
    if path.endswith(".index.json"):
        return _open_sharded(path, which, prefer)
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":  # safetensors: 8-byte header length, then the JSON header
        return _open_safetensors(path, which, prefer)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80" or path.lower().endswith(TORCH_SUFFIXES):
        return _open_torch(path, which, prefer)
    return _open_safetensors(path, which, prefer)
