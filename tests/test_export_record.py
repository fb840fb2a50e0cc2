"""An export records the VAE and text encoder its run was trained with (by content), inherits what its init
checkpoint recorded, and with `bundle` copies them next to itself; the loader then finds them there, uses nothing
of other content, and says what it found."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from salt_core.checkpoints import CheckpointError, read_safetensors_header
from salt_core.checkpoints.trained_with import HEADER_KEY, file_sha256, read_trained_with
from salt_core.config import SamplingDefaults, dit_preset
from salt_core.dit import WanDiT
from salt_core.pipeline import DEFAULT_ASSETS, load_salt_model
from training.export import export_state

WORLD_TEACHER = Path(__file__).resolve().parents[1] / "benchmarks" / "quality" / "checkpoints" / "teacher.safetensors"
pytestmark = pytest.mark.skipif(not WORLD_TEACHER.is_file(), reason="committed checkpoints absent")
TEXT, VAE = DEFAULT_ASSETS / "text_encoder.safetensors", DEFAULT_ASSETS / "vae.safetensors"


def trainer_state(text_path: str, init: str) -> dict:
    """What the trainer saves, reduced to what export reads: a tiny DMD student started from `init`."""
    torch.manual_seed(0)
    model = WanDiT(dit_preset("tiny"))
    config = {"text": {"encoder": "salt", "path": text_path}, "data": {"kind": "prompts", "path": "p.txt"},
              "student": {"init": init}, "teacher": {"init": init}}
    return {"command": "dmd", "step": 10, "config_hash": "0" * 16, "config_json": json.dumps(config),
            "primary": "student", "sampling": json.dumps(SamplingDefaults(causal=False).to_dict()),
            "nets": {"student": {"dit_config": json.dumps(model.config.to_dict()), "model": model.state_dict(),
                                 "ema": None}}}


def test_an_export_records_its_text_encoder_and_inherits_its_init_vae(tmp_path):
    out = export_state(trainer_state(str(TEXT), str(WORLD_TEACHER)), str(tmp_path / "model.safetensors"))
    record = read_trained_with(read_safetensors_header(out)[1], out)
    assert record.text_encoder.sha256 == file_sha256(str(TEXT)) and record.text_encoder.kind == "salt"
    teacher = read_trained_with(read_safetensors_header(str(WORLD_TEACHER))[1], str(WORLD_TEACHER))
    assert record.vae == teacher.vae and record.latent_format == teacher.latent_format
    model = load_salt_model(out)  # found in the embedded default's folder
    assert model.vae is not None and model.text_encoder is not None


def test_a_bundled_export_samples_from_its_own_folder(tmp_path):
    state = trainer_state(str(TEXT), str(WORLD_TEACHER))
    with pytest.raises(ValueError, match="export.vae"):
        export_state(state, str(tmp_path / "a" / "model.safetensors"), bundle=True)  # inherited VAE: no file here
    out = export_state(state, str(tmp_path / "b" / "model.safetensors"), vae=str(VAE), bundle=True)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["model.safetensors", "text_encoder.safetensors",
                                                                  "vae.safetensors"]
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "b", moved)
    model = load_salt_model(str(moved / "model.safetensors"))
    assert any(f"using {moved / 'vae.safetensors'}" in n for n in model.notes)
    assert any(f"using {moved / 'text_encoder.safetensors'}" in n for n in model.notes)


def test_a_same_named_file_of_other_content_is_not_used(tmp_path, monkeypatch):
    out = export_state(trainer_state(str(TEXT), str(WORLD_TEACHER)), str(tmp_path / "model.safetensors"))
    (tmp_path / "vae.safetensors").write_bytes(b"not the trained VAE")
    monkeypatch.setattr("salt_core.pipeline.DEFAULT_ASSETS", tmp_path / "nowhere")
    model = load_salt_model(out)
    assert model.vae is None
    assert any("has the recorded name but other content" in n and "pass the VAE explicitly" in n for n in model.notes)


def test_a_damaged_record_names_the_file_and_field(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    meta = dict(read_safetensors_header(str(WORLD_TEACHER))[1], **{HEADER_KEY: '{"vae": {"file": 3}}'})
    save_file({k: torch.zeros(v.shape) for k, v in read_safetensors_header(str(WORLD_TEACHER))[0].items()}, path,
              metadata=meta)
    with pytest.raises(CheckpointError, match=rf"bad\.safetensors: header field '{HEADER_KEY}' is invalid"):
        load_salt_model(str(path))
