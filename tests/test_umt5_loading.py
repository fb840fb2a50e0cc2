"""load_umt5 reads one tiny umT5 written in each layout a user may have (Wan's .pth, transformers'
save_pretrained, ComfyUI's fp16 and scaled-fp8 safetensors with the tokenizer inside) to the same encoder,
and refuses everything else with one error that names the file and what was expected."""
import pytest
import torch
from safetensors.torch import save_file

from salt_core.checkpoints import CheckpointError
from salt_core.config import dit_preset
from salt_core.dit import WanDiT
from salt_core.text import TruncatedPromptWarning
from salt_core.text.umt5 import UMT5Encoder, UMT5TextEncoder, UMT5Tokenizer, load_umt5, WAN_NEGATIVE_PROMPT
from salt_core.text.umt5.scaled_fp8 import dequantize_scaled_fp8
from salt_core.vae import WanVAE, vae_preset

from _umt5_helpers import randomised_encoder, tiny_config, train_spiece, transformers_encoder, transformers_names
from conftest import rel_err

pytest.importorskip("sentencepiece", reason="the umt5 extra: pip install -e '.[umt5]'")

PROMPTS = ["a red circle moves slowly to the right", "un gato negro duerme", ""]
LINEARS = ("attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate.0", "ffn.fc1", "ffn.fc2")
# e4m3 with the largest |w| scaled to 448: the rounding step near the top is 32, so any weight is off by at
# most 16 / 448 = 3.6% of the largest one (random tiny models are too chaotic for an end-to-end tolerance)
FP8_WEIGHT_TOL = 16 / 448


@pytest.fixture(scope="module")
def spiece_bytes():
    return train_spiece()


@pytest.fixture(scope="module")
def spiece_file(tmp_path_factory, spiece_bytes):
    path = tmp_path_factory.mktemp("tok") / "spiece.model"
    path.write_bytes(spiece_bytes)
    return path


@pytest.fixture(scope="module")
def reference(spiece_file):
    """The tiny encoder with random weights and the contexts it gives PROMPTS."""
    model = randomised_encoder(tiny_config(), seed=3)
    enc = UMT5TextEncoder(model, UMT5Tokenizer.from_file(spiece_file))
    return model, enc.encode(PROMPTS)


def spiece_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def comfyui_fp16(model: UMT5Encoder, spiece: bytes) -> dict:
    state = {k: v.half() for k, v in transformers_names(model.state_dict()).items()}
    return {**state, "spiece_model": spiece_tensor(spiece)}


def comfyui_scaled_fp8(model: UMT5Encoder, spiece: bytes) -> tuple[dict, dict]:
    """ComfyUI's umt5_xxl_fp8_e4m3fn_scaled layout -> (file tensors, {official name: dequantised weight})."""
    file = comfyui_fp16(model, spiece)
    expected = {}
    for official, w in model.state_dict().items():
        if not official.endswith(tuple(f"{n}.weight" for n in LINEARS)):
            continue
        hf = transformers_names({official: w}).popitem()[0]
        scale = w.abs().max() / 448.0
        w8 = (w / scale).to(torch.float8_e4m3fn)
        file[hf] = w8
        file[hf[: -len(".weight")] + ".scale_weight"] = scale.reshape(()).float()
        file[hf[: -len(".weight")] + ".scale_input"] = torch.ones(())   # an activation hint; ignored
        expected[official] = w8.float() * scale
    file["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return file, expected


def test_wan_official_pth(tmp_path, reference, spiece_file):
    model, (context, lengths) = reference
    path = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save(model.state_dict(), path)
    enc = load_umt5(path, tokenizer=spiece_file)
    assert enc.info.format == "official" and enc.info.dtype == torch.float32
    got, got_lengths = enc.encode(PROMPTS)
    assert torch.equal(got, context) and torch.equal(got_lengths, lengths)


def test_transformers_save_pretrained(tmp_path, reference, spiece_file):
    transformers = pytest.importorskip("transformers")
    model, (context, _) = reference
    theirs = transformers_encoder(model)
    theirs.save_pretrained(tmp_path / "enc")
    enc = load_umt5(tmp_path / "enc" / "model.safetensors", tokenizer=spiece_file)
    assert enc.info.format == "transformers"
    got, lengths = enc.encode(PROMPTS)
    assert torch.equal(got, context)
    batch = enc.tokenizer(PROMPTS, enc.config.text_len)
    with torch.no_grad():
        ref = theirs(input_ids=batch.ids, attention_mask=batch.mask.long()).last_hidden_state
    assert rel_err(got[:, : ref.shape[1]] * batch.mask[..., None], ref * batch.mask[..., None]) <= 1e-4

    # a whole encoder-decoder checkpoint (google/umt5-xxl is one): the decoder is ignored, with a note
    from _umt5_helpers import transformers_config
    seq2seq = transformers.UMT5ForConditionalGeneration(transformers_config(model.config)).eval()
    seq2seq.encoder.load_state_dict(theirs.encoder.state_dict())
    seq2seq.shared.weight.data.copy_(theirs.shared.weight)
    seq2seq.save_pretrained(tmp_path / "s2s")
    enc2 = load_umt5(tmp_path / "s2s" / "model.safetensors", tokenizer=spiece_file)
    assert torch.equal(enc2.encode(PROMPTS)[0], context)
    assert any("decoder" in n for n in enc2.info.notes)


def test_comfyui_fp16_carries_its_tokenizer(tmp_path, reference, spiece_bytes):
    model, _ = reference
    path = tmp_path / "umt5_xxl_fp16.safetensors"
    save_file(comfyui_fp16(model, spiece_bytes), str(path))
    enc = load_umt5(path, dtype=torch.float32)   # no tokenizer argument: the file's spiece_model is used
    assert enc.info.format == "comfyui" and enc.info.tokenizer_source.endswith("[spiece_model]")
    rounded = randomised_encoder(tiny_config(), seed=3)
    rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    want = UMT5TextEncoder(rounded, enc.tokenizer).encode(PROMPTS)[0]
    assert rel_err(enc.encode(PROMPTS)[0], want) <= 1e-6
    assert load_umt5(path).info.dtype == torch.float16   # dtype=None keeps the file's


def test_comfyui_scaled_fp8_is_dequantised(tmp_path, reference, spiece_bytes):
    model, _ = reference
    file, expected = comfyui_scaled_fp8(model, spiece_bytes)
    path = tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    save_file(file, str(path))
    enc = load_umt5(path, dtype=torch.float32)
    state = enc.model.state_dict()
    assert len(expected) == 7 * model.config.num_layers
    for name, w in expected.items():
        assert torch.equal(state[name], w), name        # exactly weight.float() * scale_weight
        assert rel_err(w, model.state_dict()[name]) <= FP8_WEIGHT_TOL
        assert rel_err(w, model.state_dict()[name] / 448) > 1   # the scale was applied
    same = randomised_encoder(tiny_config(), seed=3)
    same.load_state_dict({k: expected.get(k, v.half().float()) for k, v in model.state_dict().items()})
    assert rel_err(enc.encode(PROMPTS)[0], UMT5TextEncoder(same, enc.tokenizer).encode(PROMPTS)[0]) <= 1e-6
    assert load_umt5(path).info.dtype == torch.bfloat16   # fp8 storage computes in bf16 by default


def test_plain_fp8_and_a_prefixed_comfyui_file(tmp_path, reference, spiece_bytes):
    model, _ = reference
    file = comfyui_fp16(model, spiece_bytes)
    q = "encoder.block.1.layer.0.SelfAttention.q.weight"
    file[q] = file[q].to(torch.float8_e4m3fn)           # fp8 without a scale_weight: a plain cast
    path = tmp_path / "umt5_saved_by_clipsave.safetensors"
    save_file({f"umt5xxl.transformer.{k}": v for k, v in file.items()}, str(path))
    enc = load_umt5(path, dtype=torch.float32)
    assert torch.equal(enc.model.state_dict()["blocks.1.attn.q.weight"], file[q].float())
    assert any("umt5xxl.transformer." in n for n in enc.info.notes)


def test_dequantize_scaled_fp8_bounds_memory_and_checks_the_scale():
    w = torch.randn(9000, 3)
    w8, scale = (w / 0.01).to(torch.float8_e4m3fn), torch.tensor(0.01)
    assert torch.equal(dequantize_scaled_fp8(w8, scale, torch.float32), w8.float() * 0.01)
    with pytest.raises(ValueError, match="does not broadcast"):
        dequantize_scaled_fp8(w8, torch.ones(2), torch.float32)


def test_padded_rows_are_zero_and_prompts_do_not_depend_on_their_batch(reference, spiece_file):
    model, (context, lengths) = reference
    assert context.shape == (3, 64, 32) and context.dtype == torch.float32
    for i, n in enumerate(lengths.tolist()):
        assert torch.count_nonzero(context[i, n:]) == 0 and context[i, :n].abs().amin(dim=1).gt(0).all()
    assert lengths[2] == 1   # the empty prompt is its end token
    enc = UMT5TextEncoder(model, UMT5Tokenizer.from_file(spiece_file))
    alone, _ = enc.encode([PROMPTS[1]])
    assert rel_err(alone[0], context[1]) <= 1e-5


def test_negative_prompt_and_truncation(reference, spiece_file):
    model, _ = reference
    enc = UMT5TextEncoder(model, UMT5Tokenizer.from_file(spiece_file))
    uncond, lengths = enc.encode_negative(batch_size=2)
    assert uncond.shape == (2, 64, 32) and torch.equal(uncond[0], uncond[1])
    assert torch.equal(uncond[:1], enc.encode([WAN_NEGATIVE_PROMPT])[0])
    empty, empty_len = enc.encode_negative("")
    assert empty_len.tolist() == [1] and not torch.equal(empty, uncond[:1])
    with pytest.warns(TruncatedPromptWarning, match="prompt 0 lost its last"):
        long, long_len = enc.encode([" ".join(["a red circle moves"] * 40)])
    assert long_len.tolist() == [64] and long.shape == (1, 64, 32)


def test_cached_context_can_feed_a_training_graph(reference):
    _, (context, _) = reference
    w = torch.ones(32, requires_grad=True)
    (context * w).sum().backward()   # inference-mode tensors would refuse this
    assert w.grad is not None


# ---- refusals ---------------------------------------------------------------------------------------------

def test_dit_or_vae_given_as_text_encoder(tmp_path, spiece_file):
    dit = tmp_path / "wan2.1_t2v_1.3B_fp16.safetensors"
    dit_state = WanDiT(dit_preset("tiny")).state_dict()
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in dit_state.items()}, str(dit))
    with pytest.raises(CheckpointError, match=r"wan2\.1_t2v_1\.3B_fp16\.safetensors: not a umT5 text encoder: this "
                                              r"looks like a Wan DiT"):
        load_umt5(dit, tokenizer=spiece_file)
    vae = tmp_path / "wan_2.1_vae.safetensors"
    save_file({k: v.contiguous() for k, v in WanVAE(vae_preset("tiny")).state_dict().items()}, str(vae))
    with pytest.raises(CheckpointError, match="this looks like a video VAE"):
        load_umt5(vae, tokenizer=spiece_file)


def test_t5_v1_1_with_one_shared_bias_is_named(tmp_path, reference, spiece_bytes):
    model, _ = reference
    state = {k: v for k, v in comfyui_fp16(model, spiece_bytes).items()
             if "relative_attention_bias" not in k or k.startswith("encoder.block.0.")}
    path = tmp_path / "t5xxl_fp16.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="t5xxl_fp16.safetensors: a T5 v1.1 encoder"):
        load_umt5(path)


def test_missing_or_misshapen_keys_load_nothing(tmp_path, reference, spiece_file):
    model, _ = reference
    state = dict(model.state_dict())
    del state["blocks.1.ffn.fc2.weight"]
    state["blocks.1.attn.q.weight"] = torch.zeros(5, 5)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        load_umt5(path, tokenizer=spiece_file)
    text = str(e.value)
    assert text.startswith(str(path)) and "nothing was loaded" in text
    assert "blocks.1.ffn.fc2.weight  (expected (32, 48))" in text
    assert "blocks.1.attn.q.weight: expected (32, 32), found (5, 5)" in text


def test_no_tokenizer_anywhere(tmp_path, reference):
    model, _ = reference
    path = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match=r"enc-bf16\.pth: no tokenizer.*pass tokenizer= a tokenizer\.json"):
        load_umt5(path)


def test_tokenizer_that_does_not_match_the_encoder_names_both_files(tmp_path, spiece_file):
    for rows in (1000, 64):   # far more rows than the tokenizer's 100 ids / fewer rows than ids
        path = tmp_path / f"umt5_{rows}.pth"
        torch.save(randomised_encoder(tiny_config(vocab_size=rows)).state_dict(), path)
        with pytest.raises(ValueError, match=rf"tokenizer {spiece_file} \(100 ids.*text encoder {path} \({rows} "
                                             r"embedding rows\)"):
            load_umt5(path, tokenizer=spiece_file)


def test_salt_text_encoder_file_is_refused(tmp_path):
    from salt_core.text import TextEncoder, TextEncoderConfig, save_text_encoder

    path = tmp_path / "text_encoder.safetensors"
    save_text_encoder(path, TextEncoder(TextEncoderConfig(), ["red", "circle"]))
    with pytest.raises(CheckpointError, match="tiny text encoder, not umT5"):
        load_umt5(path)
