"""The prompt-embedding cache: umT5 runs once (text-cache), training reads its rows back exactly; a cache made with
another encoder is refused by name."""
import os

import pytest
import torch
from safetensors.torch import save_file

from _training_helpers import run, sets
from _umt5_helpers import randomised_encoder, tiny_config, train_spiece, transformers_names
from salt_core.text.umt5 import UMT5TextEncoder, UMT5Tokenizer
from training.data.prompt_cache import PromptCache, write_prompt_cache

pytest.importorskip("sentencepiece")
PROMPTS = ["a red circle moves slowly to the right", "un gato negro duerme", "a blue square"]


@pytest.fixture(scope="module")
def umt5_file(tmp_path_factory):
    """A tiny umT5 in ComfyUI's layout, its SentencePiece model inside the file."""
    spiece = train_spiece()
    model = randomised_encoder(tiny_config(), seed=5)
    path = tmp_path_factory.mktemp("umt5") / "umt5_tiny.safetensors"
    state = {k: v.contiguous() for k, v in transformers_names(model.state_dict()).items()}
    state["spiece_model"] = torch.frombuffer(bytearray(spiece), dtype=torch.uint8).clone()
    save_file(state, str(path))
    spiece_path = path.parent / "spiece.model"
    spiece_path.write_bytes(spiece)
    return str(path), UMT5TextEncoder(model, UMT5Tokenizer.from_file(spiece_path))


def test_text_cache_writes_what_the_encoder_gives_and_training_reads_it_back(tmp_path, umt5_file):
    path, encoder = umt5_file
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "cache.safetensors"
    assert run("text-cache", None, *sets(text__encoder="umt5", text__path=path, text__cache_output=str(out),
                                         text__negative_prompt="blurry, static", data__path=str(prompts))) == 0
    cache = PromptCache(str(out), expect_encoder=encoder.info.preset if encoder.info else "")
    assert len(cache) == 4 and "blurry, static" in cache
    want, lengths = encoder.encode(PROMPTS)
    got = cache.encode(PROMPTS)  # [B, L_max, D], zero after each prompt
    L = got.shape[1]
    assert L == int(lengths.max())
    torch.testing.assert_close(got, want[:, :L].float(), rtol=1e-2, atol=1e-2)  # stored in bf16
    assert torch.all(want[:, L:] == 0)  # nothing lost past the longest prompt: the encoder zeroes padded rows


def test_a_cache_made_with_another_encoder_or_length_is_refused(tmp_path):
    path = write_prompt_cache(str(tmp_path / "c.safetensors"), ["a"], [torch.ones(2, 8)], encoder="umt5-xxl",
                              text_len=512, source="x.safetensors")
    with pytest.raises(ValueError, match=r"made with text encoder 'umt5-xxl', text.cache_encoder expects 'clip'"):
        PromptCache(path, expect_encoder="clip")
    with pytest.raises(ValueError, match="padded to text_len=512, the model expects text_len=226"):
        PromptCache(path, expect_text_len=226)
    with pytest.raises(ValueError, match=r"no embedding for prompt\(s\) \['b'\]"):
        PromptCache(path).encode(["b"])
    other = tmp_path / "o.safetensors"
    save_file({"x": torch.zeros(1)}, str(other))
    with pytest.raises(ValueError, match="not a prompt cache"):
        PromptCache(str(other))


def test_text_cache_needs_the_umt5_encoder(tmp_path, capsys):
    assert run("text-cache", None, *sets(text__encoder="hash", text__cache_output=str(tmp_path / "c"),
                                         data__path=str(tmp_path / "p.txt"))) == 2
    assert "text-cache encodes with umT5: set text.encoder: umt5" in capsys.readouterr().err
    assert not os.listdir(tmp_path)
