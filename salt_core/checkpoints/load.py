"""Loading a DiT (or VAE) checkpoint: all-or-nothing.

Order: open the file (names, shapes, dtypes only) -> detect format and config -> compare every
key and shape with the model the config describes -> only then build the model on the meta
device and fill it tensor by tensor (`load_state_dict(strict=True, assign=True)`), so memory
holds one copy of the weights and a bad file never yields a half-loaded model.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch

from ..config import DiTConfig, SamplingDefaults
from ..dit import WanDiT
from ..kv_cache import CachePolicy
from .detect import Detection, detect_from_shapes
from .io import CheckpointError, CheckpointReader, open_checkpoint
from .save import SALT_FORMAT_VERSION
from .storage import StoragePlan, choose_dtype, fill, listing, majority_dtype, plan_storage

@dataclass(frozen=True)
class LoadedInfo:
    path: str
    format: str  # "salt" | "official" | "comfyui" | "diffusers" | "self_forcing"
    config: DiTConfig
    preset: Optional[str]
    sampling: SamplingDefaults
    sampling_source: str  # "header" | "family"
    dtype: torch.dtype
    trainer_entry: Optional[str] = None  # e.g. "generator_ema"
    metadata: dict = field(default_factory=dict)  # the safetensors header metadata, as stored
    notes: tuple[str, ...] = ()
    eight_bit_weights: int = 0  # Linear weights kept 8-bit (dtype is then the compute dtype)
    loras: tuple[str, ...] = ()  # adapter files applied, in order
    family: str = ""  # salt_core.families name
    family_why: str = ""  # which family was chosen and why (one sentence)
    guidance_scale: float = 1.0  # the family's classifier-free guidance at sampling (1 = none)


# ---- our header --------------------------------------------------------------------------------

def _header_json(metadata: Mapping[str, str], key: str, source: str):
    if key not in metadata:
        raise CheckpointError(f"{source}: salt header has no {key!r} field")
    try:
        return json.loads(metadata[key])
    except ValueError as e:
        raise CheckpointError(f"{source}: salt header field {key!r} is not valid JSON ({e})") from None


def salt_header_kind(metadata: Mapping[str, str], source: str) -> Optional[str]:
    """'dit' / 'vae' for files written by save_dit / save_vae, None for foreign files."""
    if "salt_format" not in metadata:
        return None
    try:
        version = int(metadata["salt_format"])
    except ValueError:
        raise CheckpointError(f"{source}: salt header field 'salt_format' is {metadata['salt_format']!r}, "
                              "expected an integer") from None
    if version > SALT_FORMAT_VERSION:
        raise CheckpointError(f"{source}: written in salt format {version} by salt_core "
                              f"{metadata.get('salt_core_version', '?')}; this salt_core reads up to "
                              f"{SALT_FORMAT_VERSION}: upgrade salt_core")
    return metadata.get("salt_kind", "dit")


def _from_header(cls, metadata, key, source):
    try:
        return cls.from_dict(_header_json(metadata, key, source))
    except CheckpointError:
        raise
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: salt header field {key!r} is invalid: {e}") from None


LEGACY_CACHE_KEY = "salt_trainer_cache_policy"  # where exports before the typed `sampling.cache` kept the policy


def _with_legacy_cache(sampling: SamplingDefaults, metadata: Mapping[str, str], source: str) -> SamplingDefaults:
    """Older exports stored the trained cache policy beside the sampling header; fold it in."""
    raw = metadata.get(LEGACY_CACHE_KEY)
    if sampling.cache is not None or not raw or not sampling.causal:
        return sampling
    try:
        policy = CachePolicy.from_dict(json.loads(raw))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: header field {LEGACY_CACHE_KEY!r} is not a valid cache policy ({e})") from None
    return dataclasses.replace(sampling, cache=policy)


# ---- checks ------------------------------------------------------------------------------------

def check_keys(expected: Mapping[str, tuple], found: Mapping[str, tuple], names: Mapping[str, str],
               source: str, what: str) -> None:
    """Every expected key present with its shape, nothing else -> else one CheckpointError."""
    missing = [f"{k}  (expected {tuple(s)})" for k, s in expected.items() if k not in found]
    unexpected = [f"{names.get(k, k)}  (found {tuple(s)})" for k, s in found.items() if k not in expected]
    wrong = [f"{names.get(k, k)}: expected {tuple(expected[k])}, found {tuple(s)}"
             for k, s in found.items() if k in expected and tuple(s) != tuple(expected[k])]
    if missing or unexpected or wrong:
        msg = f"{source}: does not match {what}; nothing was loaded."
        if missing:
            msg += listing("missing keys", missing)
        if unexpected:
            msg += listing("unexpected keys", unexpected)
        if wrong:
            msg += listing("shape mismatches", wrong)
        raise CheckpointError(msg)


# ---- DiT ---------------------------------------------------------------------------------------

def _describe_dit(c: DiTConfig, preset: Optional[str]) -> str:
    name = f"preset {preset!r}" if preset else "config"
    return (f"a Wan 2.1 DiT ({name}: dim={c.dim}, ffn_dim={c.ffn_dim}, layers={c.num_layers}, "
            f"text_dim={c.text_dim}, qk_norm={c.qk_norm}, cross_attn_norm={c.cross_attn_norm})")


@dataclass(frozen=True)
class _Inspection:
    detection: Detection
    format: str
    choice: object  # salt_core.families.FamilyChoice
    header_sampling: Optional[SamplingDefaults]
    model: WanDiT  # on the meta device, its keys and shapes checked against the file


def _inspect(reader: CheckpointReader, path: str, config: Optional[DiTConfig], family: str,
             loras: Sequence[str]) -> _Inspection:
    """Header, layout, geometry, family and every key and shape of an open DiT file; reads no tensor data."""
    from ..families.detect import Evidence, choose_family  # the families module reads this package's errors

    kind = salt_header_kind(reader.metadata, path)
    if kind == "vae":
        raise CheckpointError(f"{path}: this is a salt VAE checkpoint; load it with load_vae")
    header_sampling = None
    if kind == "dit":
        config = config or _from_header(DiTConfig, reader.metadata, "dit_config", path)
        header_sampling = _with_legacy_cache(
            _from_header(SamplingDefaults, reader.metadata, "sampling", path), reader.metadata, path)
    det = detect_from_shapes(reader.shapes(), trainer_entry=reader.trainer_entry, config=config,
                             source=path, notes=reader.notes)
    container = "salt" if kind == "dit" else ("trainer" if reader.trainer_entry else "plain")
    evidence = Evidence(path, det.config, det.preset, container, header_sampling, reader.trainer_entry,
                        tuple(os.fspath(f) for f in loras))
    choice = choose_family(evidence, family)
    with torch.device("meta"):
        model = WanDiT(det.config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_keys(expected, det.shapes, det.names, path, _describe_dit(det.config, det.preset))
    return _Inspection(det, "salt" if kind == "dit" else det.format, choice, header_sampling, model)


def _prefer(path: str, which: str, family: str) -> str:
    from ..families.detect import entry_preference

    return entry_preference(path, family) if which == "auto" else "ema"


def inspect_dit(path: str | os.PathLike, *, which: str = "auto", family: str = "auto",
                config: Optional[DiTConfig] = None, lora: Sequence[tuple[str | os.PathLike, float]] = ()
                ) -> LoadedInfo:
    """What load_dit would load, without reading any weight: format, geometry, family and sampling (the dtype is
    the file's most common one)."""
    path = os.fspath(path)
    with open_checkpoint(path, which=which, prefer=_prefer(path, which, family)) as reader:
        seen = _inspect(reader, path, config, family, [f for f, _ in lora])
        dtype = majority_dtype(reader.infos, []) or torch.float32
    return _info(path, seen, dtype, dict(reader.metadata), list(seen.detection.notes), 0, ())


def _info(path: str, seen: _Inspection, dtype: torch.dtype, metadata: dict, notes: list[str], eight_bit: int,
          loras: tuple[str, ...]) -> LoadedInfo:
    choice = seen.choice
    source = "header" if seen.header_sampling is not None else "family"
    return LoadedInfo(path, seen.format, seen.detection.config, seen.detection.preset, choice.sampling, source, dtype,
                      seen.detection.trainer_entry, metadata, (choice.why, *choice.notes, *notes), eight_bit, loras,
                      choice.name, choice.why, choice.guidance_scale)


def load_dit(path: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: Optional[torch.dtype] = None,
             which: str = "auto", config: Optional[DiTConfig] = None, compute_dtype: Optional[torch.dtype] = None,
             lora: Sequence[tuple[str | os.PathLike, float]] = (), merge_lora: Optional[bool] = None,
             family: str = "auto") -> tuple[WanDiT, LoadedInfo]:
    """Load a Wan 2.1 t2v DiT from any supported format -> (model in eval mode, LoadedInfo).

    family: a salt_core.families name, or "auto" (detected from the header, file name, container and shapes; the
    reason is the first note). It sets the sampling defaults and, for trainer files, which weights load.
    which: trainer entry ("auto" = the family's weights: EMA or regular, the other when absent; "ema",
    "regular" / "generator", "critic"). config: skip geometry detection.
    dtype: None keeps the file's: 8-bit float Linear weights (plain or ComfyUI scaled fp8) stay 8-bit and are
    cast per layer at each call; every other tensor is held in compute_dtype (default: the file's most common
    16/32-bit dtype, bfloat16 if all are 8-bit). A dtype casts every tensor, 8-bit ones dequantised.
    lora: [(adapter file, strength), ...] applied in order (PEFT / kohya / ComfyUI / diffusers layouts, a
    LongLive `lora.pt`); merge_lora: fold them into the weights (None: merge unless weights stay 8-bit, where
    merging would store those layers in the compute dtype).
    Every check (family against the file, keys, shapes, adapters, dtypes) runs before any weight is read."""
    path = os.fspath(path)
    with open_checkpoint(path, which=which, prefer=_prefer(path, which, family)) as reader:
        seen = _inspect(reader, path, config, family, [f for f, _ in lora])
        det, model = seen.detection, seen.model
        notes = list(det.notes)
        plan = plan_storage(model, {k: reader.infos[det.names[k]] for k in model.state_dict()}, reader, det.names,
                            det.fp8_scales, det.fp8_marker, dtype=dtype, compute_dtype=compute_dtype, source=path)
        notes += plan.notes
        adapters = _read_loras(lora, model)  # every adapter checked against the geometry before any weight is read
        fill(model, reader, det.names, device, plan)
    model.eval()
    if adapters:
        notes += _with_loras(model, adapters, merge_lora, bool(plan.kept_8bit))
    info = _info(path, seen, plan.compute, dict(reader.metadata), notes, len(plan.kept_8bit),
                 tuple(adapter.path for adapter, _, _ in adapters))
    model.timestep_convention = info.sampling.timestep_convention
    return model, info


def _read_loras(loras, meta_model: WanDiT) -> list:
    from ..lora import match_lora, read_lora

    adapters = []
    for entry in loras:
        try:
            source, strength = entry
            strength = float(strength)
        except (TypeError, ValueError):
            raise ValueError(f"lora entries must be (file, strength) pairs, got {entry!r}") from None
        adapter = read_lora(source)
        _, notes = match_lora(adapter, meta_model)
        adapters.append((adapter, strength, notes))
    return adapters


def _with_loras(model: WanDiT, adapters, merge: Optional[bool], eight_bit: bool) -> list[str]:
    """Patch (and merge into) the freshly loaded model in place: nothing else holds it, so no copy is made."""
    from ..lora import apply_lora, merge_lora

    notes = []
    for adapter, strength, more in adapters:
        apply_lora(model, adapter, strength, in_place=True)
        notes += [f"LoRA {adapter.path!r} applied at strength {strength:g}", *more]
    if merge if merge is not None else not eight_bit:
        merge_lora(model)
        notes.append("LoRA merged into the weights")
    return notes


# ---- VAE ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VAELoadedInfo:
    path: str
    format: str  # "salt" | "official" | "diffusers"
    config: object  # VAEConfig
    preset: Optional[str]
    dtype: torch.dtype
    metadata: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _materialise_config_buffers(model: torch.nn.Module, config, device) -> None:
    """Non-persistent buffers left on meta (not in the file) that mirror a config field, e.g. the VAE's
    latent_mean / latent_std, are rebuilt from the config."""
    for full, buf in list(model.named_buffers()):
        if not buf.is_meta:
            continue
        owner_name, _, name = full.rpartition(".")
        if not hasattr(config, name):
            raise RuntimeError(f"cannot materialise buffer {full!r}: no config field {name!r}")
        owner = model.get_submodule(owner_name) if owner_name else model
        value = torch.tensor(getattr(config, name), dtype=buf.dtype, device=device).view(buf.shape)
        owner.register_buffer(name, value, persistent=False)


def load_vae(path: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: Optional[torch.dtype] = None,
             config=None):
    """Load a Wan 2.1 VAE (official .pth / .safetensors, ComfyUI wan_2.1_vae, diffusers names, ours)
    -> (WanVAE in eval mode, VAELoadedInfo). config (a VAEConfig) skips detection."""
    from ..vae import VAEConfig, WanVAE
    from .detect import detect_vae

    path = os.fspath(path)
    with open_checkpoint(path) as reader:
        kind = salt_header_kind(reader.metadata, path)
        if kind == "dit":
            raise CheckpointError(f"{path}: this is a salt DiT checkpoint; load it with load_dit")
        if kind == "vae":
            config = config or _from_header(VAEConfig, reader.metadata, "vae_config", path)
        det = detect_vae(reader.shapes(), config=config, source=path)
        notes = [*reader.notes, *det.notes]
        with torch.device("meta"):
            model = WanVAE(det.config)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        check_keys(expected, det.shapes, det.names, path,
                   f"a Wan 2.1 VAE ({f'preset {det.preset!r}' if det.preset else 'given config'})")
        dtype = choose_dtype({k: reader.infos[det.names[k]] for k in expected}, dtype, path, notes)
        fill(model, reader, det.names, device, StoragePlan(dtype))
    _materialise_config_buffers(model, det.config, device)
    info = VAELoadedInfo(path, "salt" if kind == "vae" else det.format, det.config, det.preset, dtype,
                         dict(reader.metadata), tuple(notes))
    return model.eval(), info
