"""Model families: every row of the table is detected from a real-size file in its own container, with its sampling
defaults and weights; the released window semantics map onto our cache policy; an override that contradicts the
file is refused by name before any weight is read; tiny real files load the family's weights."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from salt_core.checkpoints import CheckpointError, inspect_dit, load_dit, save_dit
from salt_core.checkpoints.io import CheckpointReader
from salt_core.config import SamplingDefaults, dit_preset
from salt_core.dit import WanDiT
from salt_core.families import FAMILIES, window_from_local_attention
from salt_core.families.table import TOPICS
from salt_core.kv_cache import CachePolicy
from salt_core.lora import match_lora, read_lora

from _family_files import (comfyui_scaled_fp8, meta_shapes, our_header, plain, write_sharded,
                           write_sparse_safetensors, write_trainer_pt)

EXPORT_SAMPLING = SamplingDefaults(causal=True, chunk_frames=3, cache=CachePolicy(
    "sink_window", window_frames=4, sink_frames=3), resolution=(480, 832))

# (family, where the release puts the file, how it is written, DiT size)
RELEASED = [
    ("salt-cf", "checkpoints/salt_cf.pt", "trainer", "1.3b"),
    ("salt-ll", "checkpoints/salt_ll.pt", "trainer", "1.3b"),
    ("self-forcing", "checkpoints/self_forcing_dmd.pt", "trainer", "1.3b"),
    ("causal-forcing-chunkwise", "chunkwise/causal_forcing.pt", "trainer", "1.3b"),
    ("causal-forcing-framewise", "framewise/causal_forcing.pt", "trainer", "1.3b"),
    ("longlive", "models/longlive_base.pt", "trainer", "1.3b"),
    ("causvid", "autoregressive_checkpoint/model.pt", "generator only", "1.3b"),
    ("wan2.1-t2v-1.3b", "Wan2.1-T2V-1.3B/diffusion_pytorch_model.safetensors", "official", "1.3b"),
    ("wan2.1-t2v-1.3b", "diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors", "comfyui", "1.3b"),
    ("wan2.1-t2v-14b", "Wan2.1-T2V-14B", "sharded", "14b"),
    ("wan2.1-t2v-14b", "diffusion_models/wan2.1_t2v_14B_fp8_scaled.safetensors", "scaled fp8", "14b"),
    ("salt-export", "runs/student/model.safetensors", "salt header", "1.3b"),
]


def write_release(root, where: str, how: str, size: str):
    path, shapes = root / where, meta_shapes(size)
    if how == "trainer":
        return write_trainer_pt(path, shapes)
    if how == "generator only":
        return write_trainer_pt(path, shapes, entries=("generator",))
    if how == "official":
        return write_sparse_safetensors(path, plain(shapes))
    if how == "comfyui":
        return write_sparse_safetensors(path, plain(shapes, torch.float16, "model.diffusion_model."))
    if how == "sharded":
        write_sharded(path, plain(shapes))
        return path
    if how == "scaled fp8":
        return write_sparse_safetensors(path, comfyui_scaled_fp8(size))
    assert how == "salt header"
    return write_sparse_safetensors(path, plain(shapes, torch.float32), our_header(size, EXPORT_SAMPLING))


@pytest.mark.parametrize("name, where, how, size", RELEASED, ids=[f"{r[0]}-{r[2]}" for r in RELEASED])
def test_every_family_is_detected_from_a_real_size_file_in_its_container(tmp_path, name, where, how, size):
    path = write_release(tmp_path, where, how, size)
    info = inspect_dit(path)
    family = FAMILIES[name]
    assert info.family == name, info.family_why
    assert info.preset == ("wan2.1-t2v-14b" if size == "14b" else "wan2.1-t2v-1.3b")
    assert info.sampling == (family.sampling or EXPORT_SAMPLING)
    assert info.guidance_scale == family.guidance_scale
    assert info.trainer_entry == (family.trainer_entry if how == "trainer" else "generator" if how == "generator only"
                                  else None)
    assert info.notes[0] == info.family_why and name in info.family_why


def test_every_family_states_a_source_for_every_setting():
    for family in FAMILIES.values():
        topics = {f.topic for f in family.facts}
        assert topics == set(TOPICS), (family.name, set(TOPICS) - topics)
        assert all(f.source and f.value for f in family.facts)
        assert family.release, family.name
        assert family.sampling is None or family.sampling.resolution is not None


def test_released_defaults_match_the_published_configs():
    sf, ll, cv = FAMILIES["self-forcing"].sampling, FAMILIES["salt-ll"].sampling, FAMILIES["causvid"].sampling
    assert (sf.causal, sf.chunk_frames, sf.shift, sf.timesteps, sf.transition, sf.integer_timesteps) == (
        True, 3, 5.0, (1000.0, 750.0, 500.0, 250.0), "renoise", False)
    assert FAMILIES["causal-forcing-framewise"].sampling.chunk_frames == 1
    assert ll.cache == CachePolicy("sink_window", window_frames=6, sink_frames=3)
    # LongLive re-caches keeping its sink (global_sink: true in its inference configs); Salt-LL does not switch
    assert FAMILIES["longlive"].sampling.cache == dataclasses.replace(ll.cache, recache_keeps_sink=True)
    assert (cv.shift, cv.timesteps) == (1.0, (1000.0, 757.0, 522.0))
    assert [FAMILIES[n].weights for n in ("salt-cf", "salt-ll", "longlive", "causal-forcing-chunkwise")] == [
        "ema", "regular", "regular", "regular"]
    wan = FAMILIES["wan2.1-t2v-14b"]
    assert not wan.sampling.causal and len(wan.sampling.timesteps) == 50 and wan.guidance_scale == 5.0
    assert FAMILIES["longlive"].adapter.rank == 256 and FAMILIES["longlive"].adapter.file == "lora.pt"


# ---- window semantics ------------------------------------------------------------------------------------

def released_attention(local_attn_size: int, sink: int, chunk: int, frames: int) -> torch.Tensor:
    """Which frames each query frame attends under the released rule, written from their code's bookkeeping:
    the span of local_attn_size frames ends at the current chunk's end; with a sink the first `sink` frames are
    in it and the rest is the last local_attn_size - sink frames. [T_query, T_key] bool."""
    mask = torch.zeros(frames, frames, dtype=torch.bool)
    for q in range(frames):
        end = (q // chunk + 1) * chunk
        local = local_attn_size - sink
        for k in range(end):
            mask[q, k] = k < sink or k >= end - local
    return mask


@pytest.mark.parametrize("local, sink, chunk", [(12, 3, 3), (12, 3, 1), (21, 0, 3), (9, 0, 1)])
def test_our_window_numbers_attend_exactly_what_the_released_models_attend(local, sink, chunk):
    policy = window_from_local_attention(local, sink, chunk)
    assert policy.window_frames == local - sink - chunk and policy.sink == sink
    assert torch.equal(policy.frame_mask(30, chunk), released_attention(local, sink, chunk, 30))


def test_no_local_attention_is_their_21_frame_buffer():
    assert window_from_local_attention(-1, 0, 3) == CachePolicy("full", max_frames=21)
    with pytest.raises(ValueError, match="leaves no past frame"):
        window_from_local_attention(6, 3, 3)


# ---- the user's choice, checked against the file ------------------------------------------------------------

@pytest.fixture()
def no_weight_read(monkeypatch):
    def refuse(self, name):
        raise AssertionError(f"a weight was read: {name}")
    monkeypatch.setattr(CheckpointReader, "read", refuse)


def test_a_family_of_another_size_is_refused_naming_file_and_sizes(tmp_path, no_weight_read):
    small = write_release(tmp_path, "checkpoints/salt_cf.pt", "trainer", "1.3b")
    with pytest.raises(CheckpointError) as e:
        load_dit(small, family="wan2.1-t2v-14b")
    msg = str(e.value)
    assert str(small) in msg and "expects a wan2.1-t2v-14b DiT" in msg and "wan2.1-t2v-1.3b" in msg
    big = write_release(tmp_path, "big/wan2.1_t2v_14B_fp8_scaled.safetensors", "scaled fp8", "14b")
    with pytest.raises(CheckpointError, match="family 'salt-ll' expects a wan2.1-t2v-1.3b DiT"):
        load_dit(big, family="salt-ll")


@pytest.mark.parametrize("family, words", [
    ("causal-forcing-framewise", ["chunk_frames: family 1, file 3"]),
    ("salt-ll", ["cache window_frames: family 6, larger than the file's trained 4"]),
    ("wan2.1-t2v-1.3b", ["causal: family False, file True"]),
])
def test_a_family_that_contradicts_our_header_is_refused_before_any_weight(tmp_path, no_weight_read, family, words):
    path = write_release(tmp_path, "runs/student/model.safetensors", "salt header", "1.3b")
    with pytest.raises(CheckpointError) as e:
        load_dit(path, family=family)
    msg = str(e.value)
    assert str(path) in msg and "contradicts what the file records" in msg and "nothing was loaded" in msg
    assert all(w in msg for w in words), msg


def test_a_family_that_agrees_with_our_header_keeps_the_header(tmp_path):
    trained = dataclasses.replace(EXPORT_SAMPLING, cache=CachePolicy("sink_window", window_frames=8, sink_frames=3))
    path = write_sparse_safetensors(tmp_path / "model.safetensors", plain(meta_shapes("1.3b")),
                                    our_header("1.3b", trained))
    info = inspect_dit(path, family="salt-ll")  # sink 3 as trained, window 6 within the trained 8
    assert info.sampling == trained and info.family == "salt-ll" and "agrees" in info.family_why


def test_header_family_needs_our_header_and_unknown_names_are_listed(tmp_path):
    path = write_release(tmp_path, "checkpoints/salt_cf.pt", "trainer", "1.3b")
    with pytest.raises(CheckpointError, match="has none"):
        inspect_dit(path, family="salt-export")
    with pytest.raises(ValueError, match="unknown model family 'salt-xl'.*salt-ll"):
        inspect_dit(path, family="salt-xl")


def test_an_anonymous_trainer_file_is_self_forcing_with_a_note_naming_the_alternatives(tmp_path):
    path = write_release(tmp_path, "run7/checkpoint_model_000600/model.pt", "trainer", "1.3b")
    info = inspect_dit(path)
    assert info.family == "self-forcing" and info.trainer_entry == "generator_ema"
    assert any("Causal Forcing" in n and "--family" in n for n in info.notes)
    assert inspect_dit(path, family="salt-ll").trainer_entry == "generator"  # the override picks the weights too


def test_longlive_base_without_its_adapter_says_so_and_the_adapter_matches_the_real_shapes(tmp_path):
    base = write_release(tmp_path, "models/longlive_base.pt", "trainer", "1.3b")
    shapes = meta_shapes("1.3b")
    one = torch.zeros((), dtype=torch.bfloat16)
    lora = {}
    for name, shape in shapes.items():  # every block Linear, rank 256, PEFT names under generator_lora
        if name.startswith("blocks.") and name.endswith(".weight") and len(shape) == 2:
            layer = name[: -len(".weight")]
            lora[f"base_model.model.{layer}.lora_A.weight"] = one.expand(256, shape[1])
            lora[f"base_model.model.{layer}.lora_B.weight"] = one.expand(shape[0], 256)
    torch.save({"generator_lora": lora, "step": 1000}, base.parent / "lora.pt")
    info = inspect_dit(base)
    assert any("rank-256 LoRA lora.pt" in n and str(base.parent / "lora.pt") in n for n in info.notes)
    assert not any("rank-256" in n for n in inspect_dit(base, lora=[(base.parent / "lora.pt", 1.0)]).notes)
    with torch.device("meta"):
        model = WanDiT(dit_preset("wan2.1-t2v-1.3b"))
    layers, _ = match_lora(read_lora(base.parent / "lora.pt"), model)
    assert len(layers) == 30 * 10  # per block: q, k, v, o of self- and cross-attention, ffn.0, ffn.2


# ---- tiny real files: the family's weights load ------------------------------------------------------------

def tiny(seed: int) -> WanDiT:
    torch.manual_seed(seed)
    return WanDiT(dit_preset("tiny")).eval()


def trainer_file(path, entries: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({e: {"model." + k: v.clone() for k, v in m.state_dict().items()} for e, m in entries.items()}, path)
    return path


def same(a: WanDiT, b: WanDiT) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_salt_ll_loads_its_regular_weights_and_salt_cf_its_ema(tmp_path):
    ema, regular = tiny(1), tiny(2)
    ll = trainer_file(tmp_path / "checkpoints" / "salt_ll.pt", {"generator": regular, "generator_ema": ema})
    model, info = load_dit(ll)
    assert same(model, regular) and info.trainer_entry == "generator" and info.family == "salt-ll"
    assert info.sampling.cache == CachePolicy("sink_window", window_frames=6, sink_frames=3)
    forced, finfo = load_dit(ll, which="ema")
    assert same(forced, ema) and any("samples its regular weights" in n for n in finfo.notes)
    cf = trainer_file(tmp_path / "checkpoints" / "salt_cf.pt", {"generator": regular, "generator_ema": ema})
    model, info = load_dit(cf)
    assert same(model, ema) and info.family == "salt-cf"


def test_a_missing_preferred_entry_falls_back_with_a_note_and_an_explicit_one_is_an_error(tmp_path):
    ema = tiny(3)
    ll = trainer_file(tmp_path / "checkpoints" / "salt_ll.pt", {"generator_ema": ema})
    model, info = load_dit(ll)
    assert same(model, ema) and any("has no 'generator'" in n for n in info.notes)
    with pytest.raises(CheckpointError, match="weights 'regular' ask for 'generator'.*generator_ema"):
        load_dit(ll, which="regular")


def test_our_export_keeps_its_header_settings(tmp_path):
    sampling = dataclasses.replace(EXPORT_SAMPLING, resolution=(64, 64))
    path = save_dit(tmp_path / "model.safetensors", tiny(4), sampling)
    _, info = load_dit(path)
    assert info.family == "salt-export" and info.sampling == sampling and info.sampling_source == "header"


def test_the_docs_list_every_family_with_its_release_and_template():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc, readme = (root / "docs" / "families.md").read_text(), (root / "README.md").read_text()
    for family in FAMILIES.values():
        assert f"`{family.name}`" in doc and f"`{family.name}`" in readme, family.name
        assert family.release[0].split(": ")[0] in doc or family.name == "salt-export", family.name
        if family.template:
            assert f"`{family.template}`" in readme
            assert (root / "example_workflows" / f"{family.template}.json").is_file()
