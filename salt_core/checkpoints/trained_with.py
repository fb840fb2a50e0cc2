"""What a checkpoint was trained with besides its own weights: the VAE and text encoder, recorded in its header by
content hash, and the latent format — so a loader finds and uses them without being told.

Header field `salt_trained_with` (JSON):
    {"vae":          {"file": "vae.safetensors", "sha256": "...", "bytes": 10328092},
     "text_encoder": {"file": "text_encoder.safetensors", "sha256": "...", "bytes": 315824, "kind": "salt"},
     "latent_format": {"mean": [...], "std": [...]}}

A companion is found by its recorded name and content (size, then sha256) in the searched folders: the
checkpoint's own folder first (an export made with `bundle` copies its companions there), then the folders the
caller adds (the embedded default's, ComfyUI's vae / text_encoders folders). A file of the same name but other
content is never used; the note says what was found.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Optional

from .io import CheckpointError

HEADER_KEY = "salt_trained_with"
ROLES = ("vae", "text_encoder")
_MODEL_SUFFIXES = (".safetensors", ".sft", ".pt", ".pth", ".ckpt", ".bin")
_hash_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """The file's sha256 (hex), computed once per file version in this process."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


@dataclass(frozen=True)
class Companion:
    file: str  # the file's name when it was recorded
    sha256: str
    bytes: int
    kind: str = ""  # text encoders: "salt" (the tiny world encoder) | "umt5"

    @classmethod
    def of(cls, path: str | os.PathLike, kind: str = "") -> "Companion":
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file to record")
        return cls(os.path.basename(path), file_sha256(path), os.path.getsize(path), kind)

    def matches(self, path: str) -> bool:
        return os.path.isfile(path) and os.path.getsize(path) == self.bytes and file_sha256(path) == self.sha256

    def describe(self) -> str:
        return f"{self.file!r} (sha256 {self.sha256[:12]}..., {self.bytes} bytes)"


@dataclass(frozen=True)
class TrainedWith:
    vae: Optional[Companion] = None
    text_encoder: Optional[Companion] = None
    latent_format: Optional[dict] = None  # {"mean": [...], "std": [...]} of the VAE that made its latents

    def to_metadata(self) -> dict[str, str]:
        return {HEADER_KEY: json.dumps({k: v for k, v in asdict(self).items() if v is not None}, sort_keys=True)}

    def format(self):
        """The recorded latent format as a salt_core.vae.LatentFormat, or None."""
        from ..vae import LatentFormat

        return LatentFormat(**self.latent_format) if self.latent_format else None


def read_trained_with(metadata: Mapping[str, str], source: str) -> Optional[TrainedWith]:
    """The header's record, None when absent; a damaged one is a CheckpointError naming the file and field."""
    raw = metadata.get(HEADER_KEY)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or set(data) - {*ROLES, "latent_format"}:
            raise ValueError(f"expected an object with keys {[*ROLES, 'latent_format']}")
        parts = {role: Companion(**data[role]) for role in ROLES if data.get(role) is not None}
        record = TrainedWith(**parts, latent_format=data.get("latent_format"))
        record.format()  # validates mean / std
        return record
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: header field {HEADER_KEY!r} is invalid ({e})") from None


def find_companion(companion: Companion, folders: Iterable[str]) -> tuple[Optional[str], Optional[str]]:
    """-> (path of the file with the recorded content or None, a note on a same-named file of other content)."""
    mismatch = None
    folders = [f for f in dict.fromkeys(os.path.abspath(f) for f in folders if f) if os.path.isdir(f)]
    for folder in folders:
        named = os.path.join(folder, companion.file)
        if companion.matches(named):
            return named, None
        if os.path.isfile(named) and mismatch is None:
            mismatch = f"{named} has the recorded name but other content (sha256 {file_sha256(named)[:12]}...)"
    for folder in folders:  # renamed copies: same size, then same hash
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith(_MODEL_SUFFIXES) and companion.matches(path):
                return path, None
    return None, mismatch


def record_for(vae: Optional[str] = None, text_encoder: Optional[str] = None, text_kind: str = "",
               latent_format=None) -> TrainedWith:
    """The record of the given files (paths); latent_format: a LatentFormat (default: the VAE file's); text_kind:
    "salt" | "umt5" (default: read from the file)."""
    if latent_format is None and vae:
        from .load import load_vae

        latent_format = load_vae(vae)[0].config.latent_format
    fmt = {"mean": list(latent_format.mean), "std": list(latent_format.std)} if latent_format is not None else None
    if text_encoder and not text_kind:
        from ..text.prompts import text_encoder_kind

        text_kind = text_encoder_kind(text_encoder)
    return TrainedWith(Companion.of(vae) if vae else None,
                       Companion.of(text_encoder, text_kind) if text_encoder else None, fmt)
