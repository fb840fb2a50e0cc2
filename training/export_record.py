"""What an export records besides the weights: the VAE and text encoder the run was trained with (by content hash)
and the latent format, found from the run's own config — its latents dataset (build-latents records its VAE), its
text encoder file, or the record of the checkpoint it started from — unless the export config names them.
With `export.bundle` the recorded files are copied next to the export, so the folder samples on its own."""
from __future__ import annotations

import json
import os
import shutil
from typing import Optional

from salt_core.checkpoints.io import read_safetensors_header
from salt_core.checkpoints.trained_with import TrainedWith, read_trained_with, record_for


def _dataset_vae(cfg: dict) -> str:
    data = cfg.get("data", {})
    if data.get("kind") not in ("latents", "ode_pairs") or not data.get("path"):
        return ""
    try:
        with open(os.path.join(data["path"], "index.json"), encoding="utf-8") as f:
            vae = (json.load(f).get("meta") or {}).get("vae", "")
    except (OSError, ValueError):
        return ""
    return vae if vae and os.path.isfile(vae) else ""


def _inherited(cfg: dict) -> Optional[TrainedWith]:
    """The record of the checkpoint the run started from (student, else teacher init), if it has one."""
    for role in ("student", "teacher"):
        init = (cfg.get(role) or {}).get("init", "")
        if init.endswith(".safetensors") and os.path.isfile(init):
            record = read_trained_with(read_safetensors_header(init)[1], init)
            if record is not None:
                return record
    return None


def recorded_sources(config_json: str, *, vae: str = "", text_encoder: str = "") -> dict[str, str]:
    """The files of the run by role ('' where the run's config does not name one); explicit paths win."""
    cfg = json.loads(config_json)
    text_cfg = cfg.get("text", {})
    text = text_encoder or (text_cfg.get("path", "") if text_cfg.get("encoder") == "salt" else "")
    return {"vae": vae or _dataset_vae(cfg), "text_encoder": text}


def export_record(config_json: str, *, vae: str = "", text_encoder: str = "") -> Optional[TrainedWith]:
    """The record for an export of the run whose config is `config_json`: its own files, else its init's record."""
    files = recorded_sources(config_json, vae=vae, text_encoder=text_encoder)
    base = _inherited(json.loads(config_json)) or TrainedWith()
    own = record_for(files["vae"] or None, files["text_encoder"] or None)
    merged = TrainedWith(own.vae or base.vae, own.text_encoder or base.text_encoder,
                         own.latent_format or base.latent_format)
    return merged if (merged.vae or merged.text_encoder or merged.latent_format) else None


def bundle_files(record: TrainedWith, sources: dict[str, str], folder: str) -> list[str]:
    """Copy each recorded file (role -> source path) into `folder` under its recorded name; returns the copies.
    A record inherited without a source path cannot be bundled and is an error naming it."""
    out = []
    for role in ("vae", "text_encoder"):
        companion = getattr(record, role)
        if companion is None:
            continue
        src = sources.get(role)
        if not src:
            raise ValueError(f"export.bundle: the {role} {companion.describe()} is recorded (inherited from the "
                             f"init checkpoint) but its file is not known here: give export.{role}")
        dst = os.path.join(folder, companion.file)
        if os.path.abspath(src) != os.path.abspath(dst):
            shutil.copyfile(src, dst)
        out.append(dst)
    return out
