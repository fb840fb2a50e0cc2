"""Which family a checkpoint file is: from its header, file name, container and shapes — or the user's choice,
checked against the file.

Names and shapes alone cannot tell the causal 1.3B students apart (Self Forcing, Causal Forcing, CausVid, LongLive
and Salt all keep Wan's weight names and sizes), so the file name (and its folder: Causal Forcing publishes two
`causal_forcing.pt`, under chunkwise/ and framewise/) decides between them; a trainer file with no telling name
is taken for Self Forcing, with a note naming the alternatives. Every choice comes with the reason for it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

from ..checkpoints.detect import CheckpointError
from ..config import DiTConfig, SamplingDefaults
from .table import FAMILIES, Family, get_family

AUTO = "auto"
WEIGHTS = ("auto", "ema", "regular")
RELEASED_PRESETS = ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Evidence:
    """What the loader saw in the file, before choosing a family."""

    path: str
    config: DiTConfig
    preset: Optional[str]  # the DIT_PRESETS entry the shapes match, None for other sizes
    container: str  # "salt" (our header) | "trainer" (generator / generator_ema dict) | "plain"
    header: Optional[SamplingDefaults] = None  # our header's trained settings
    entry: Optional[str] = None  # the trainer entry loaded
    loras: tuple[str, ...] = ()  # adapter files given with it


@dataclass(frozen=True)
class FamilyChoice:
    family: Family
    sampling: SamplingDefaults
    guidance_scale: float
    why: str  # one sentence: which family and the evidence for it
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.family.name


def _haystack(path: str) -> str:
    """The file name and its folder's, lower-case, letters and digits only ('Wan2.1-T2V-1.3B' -> 'wan21t2v13b')."""
    path = os.path.abspath(path)
    parts = [os.path.basename(os.path.dirname(path)), os.path.basename(path)]
    return " ".join(_NOT_ALNUM.sub("", p.lower()) for p in parts)


def _hint_score(family: Family, haystack: str) -> int:
    return max((sum(map(len, hint)) for hint in family.name_hints if all(t in haystack for t in hint)), default=0)


def hinted_family(path: str) -> Optional[Family]:
    """The family whose name hints match the file name (and folder) best, or None."""
    haystack = _haystack(path)
    scored = [(f, _hint_score(f, haystack)) for f in FAMILIES.values()]
    best = max(scored, key=lambda fs: fs[1])
    return best[0] if best[1] else None


def entry_preference(path: str, family: str = AUTO, weights: str = AUTO) -> str:
    """Which trainer entry to load when the file holds several: 'ema' or 'regular' — the user's `weights`, else
    the family's (named, or hinted by the file name), else the EMA weights."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r} is not one of {list(WEIGHTS)}")
    if weights != AUTO:
        return weights
    fam = get_family(family) if family != AUTO else hinted_family(path)
    return (fam.weights if fam is not None else None) or "ema"


def _size(config: DiTConfig, preset: Optional[str]) -> str:
    return f"a {preset} DiT" if preset else f"a DiT of dim {config.dim} x {config.num_layers} layers"


def _container_text(ev: Evidence) -> str:
    if ev.container == "trainer":
        return f"a Self Forcing-layout trainer checkpoint (loading '{ev.entry}')"
    return {"salt": "our header", "plain": "a plain state dict"}[ev.container]


def _check_size(family: Family, ev: Evidence) -> None:
    if ev.preset in RELEASED_PRESETS and family.presets and ev.preset not in family.presets:
        raise CheckpointError(
            f"{ev.path}: family {family.name!r} expects a {' or '.join(family.presets)} DiT, but the file holds "
            f"{_size(ev.config, ev.preset)} (dim {ev.config.dim}, {ev.config.num_layers} layers); choose the "
            "family that matches the file, or family 'auto'")


def _header_conflicts(family: Family, header: SamplingDefaults) -> list[str]:
    """Settings in which the family contradicts what the header records, as 'setting: family X, file Y'."""
    want = family.sampling
    out = []
    if want.causal != header.causal:
        out.append(f"causal: family {want.causal}, file {header.causal}")
    elif want.causal:
        if want.chunk_frames != header.chunk_frames:
            out.append(f"chunk_frames: family {want.chunk_frames}, file {header.chunk_frames}")
        a, b = want.cache, header.cache
        if a is not None and b is not None:
            if a.kind != b.kind:
                out.append(f"cache policy: family {a.kind!r}, file {b.kind!r}")
            if a.kind != "full" and b.kind != "full" and a.window_frames > b.window_frames:
                out.append(f"cache window_frames: family {a.window_frames}, larger than the file's trained "
                           f"{b.window_frames}")
            if a.sink != b.sink:
                out.append(f"cache sink_frames: family {a.sink}, file {b.sink}")
    return out


def _user_choice(family: Family, ev: Evidence) -> tuple[SamplingDefaults, str]:
    if family.sampling is None:
        if ev.header is None:
            raise CheckpointError(f"{ev.path}: family {family.name!r} reads its settings from this project's "
                                  "header, and this file has none (it is not one of our exports)")
        return ev.header, "as chosen; settings from the file's header"
    _check_size(family, ev)
    if ev.header is not None:
        conflicts = _header_conflicts(family, ev.header)
        if conflicts:
            raise CheckpointError(
                f"{ev.path}: family {family.name!r} contradicts what the file records in its header; nothing was "
                "loaded.\n  " + "\n  ".join(conflicts) + "\n  use family 'auto' (the header's settings) or the "
                "sampling options (steps, cache) to change what differs")
        return ev.header, "as chosen; it agrees with the file's header, whose settings are used"
    return family.sampling, "as chosen"


def _auto_choice(ev: Evidence) -> tuple[Family, str, list[str]]:
    notes: list[str] = []
    if ev.header is not None:
        return FAMILIES["salt-export"], "the file carries this project's header", notes
    hinted = hinted_family(ev.path)
    if hinted is not None and not (ev.preset in RELEASED_PRESETS and hinted.presets and
                                   ev.preset not in hinted.presets):
        named = os.path.join(os.path.basename(os.path.dirname(os.path.abspath(ev.path))), os.path.basename(ev.path))
        return hinted, f"its folder and file name {named!r} say so", notes
    if hinted is not None:
        notes.append(f"the file name suggests {hinted.describe()}, but the file holds {_size(ev.config, ev.preset)}: "
                     "going by size")
    if ev.container == "trainer":
        notes.append("the file name does not say which causal family this is (Self Forcing, Salt + Causal Forcing, "
                     "Causal Forcing chunk-wise and CausVid share this layout and size; frame-wise Causal Forcing "
                     "and LongLive-style models sample differently): choose one with family= / --family")
        return FAMILIES["self-forcing"], "a trainer checkpoint whose name names no family", notes
    family = FAMILIES["wan2.1-t2v-14b" if ev.preset == "wan2.1-t2v-14b" else "wan2.1-t2v-1.3b"]
    notes.append("no header and no family in the file name: taken for a plain Wan 2.1 teacher (bidirectional, "
                 f"{len(family.sampling.timesteps)} steps with CFG); if it is a distilled student, choose its family")
    return family, f"a plain state dict of {_size(ev.config, ev.preset)} with no family in its name", notes


def _adapter_note(family: Family, ev: Evidence) -> Optional[str]:
    pairing = family.adapter
    if pairing is None or ev.loras:
        return None
    beside = os.path.join(os.path.dirname(os.path.abspath(ev.path)), pairing.file)
    where = f" (there is one next to it: {beside})" if os.path.isfile(beside) else ""
    return (f"{family.title} is released as this base plus its rank-{pairing.rank} LoRA {pairing.file}{where}; "
            "without it this is the base model: add it with --lora / lora= / the Salt LoRA Loader node")


def choose_family(ev: Evidence, family: str = AUTO) -> FamilyChoice:
    """The family of the file described by `ev`: the user's `family` (checked against the file: size, header) or,
    with 'auto', the one the evidence points to. Raises CheckpointError naming the file on a contradiction."""
    notes: list[str] = []
    if family != AUTO:
        fam = get_family(family)
        sampling, how = _user_choice(fam, ev)
        why = f"family {fam.describe()}: {how}"
    else:
        fam, how, notes = _auto_choice(ev)
        sampling = fam.sampling or ev.header
        why = f"family {fam.describe()}: {how}"
    why += f"; {_container_text(ev)}, {_size(ev.config, ev.preset)}"
    if ev.preset not in RELEASED_PRESETS and fam.presets:
        notes.append(f"the file holds {_size(ev.config, ev.preset)}, not the family's released size "
                     f"({', '.join(fam.presets)}); its sampling settings are used as they are")
    if fam.trainer_entry and ev.entry and ev.entry != fam.trainer_entry:
        notes.append(f"{fam.title} samples its {fam.weights} weights ('{fam.trainer_entry}'); loaded '{ev.entry}'")
    adapter = _adapter_note(fam, ev)
    notes += [adapter] if adapter else []
    notes += list(fam.caveats)
    return FamilyChoice(fam, sampling, fam.guidance_scale, why, tuple(notes))

