"""Non-ASCII prompts: every word is kept and an unknown one is reported exactly as typed (`café`, not `caf`);
a prompt with no known word is refused instead of silently giving an unconditioned video."""
from __future__ import annotations

import pytest
import torch

from salt_core.text import NoKnownWordsError, TextEncoder, TextEncoderConfig, UnknownWordsWarning, split_words

VOCAB = ("a", "red", "blue", "circle", "square", "moves", "left", "cafe")


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return TextEncoder(TextEncoderConfig(dim=16, num_heads=2, ffn_dim=16, text_dim=8, max_len=12), VOCAB).eval()


@pytest.mark.parametrize("text, words", [
    ("a red café circle", ["a", "red", "café", "circle"]),
    ("a red cafe\u0301 circle", ["a", "red", "cafe\u0301", "circle"]),     # e + combining accent stays one word
    ("Ünïcode Straße", ["Ünïcode", "Straße"]),
    ("红色的圆 moves left", ["红色的圆", "moves", "left"]),
    ("a red🔴circle", ["a", "red", "🔴", "circle"]),                        # a symbol run is a word of its own
    ("👨\u200d👩\u200d👧 family", ["👨\u200d👩\u200d👧", "family"]),           # a ZWJ sequence stays whole
    ("red\u200bcircle, moves-left! a+b", ["red", "circle", "moves", "left", "a", "b"]),  # separators
    ("doesn't", ["doesn't"]),
])
def test_splitting_keeps_every_typed_word(text, words):
    assert split_words(text) == words


def test_unknown_non_ascii_words_are_reported_as_typed(encoder):
    with pytest.warns(UnknownWordsWarning, match=r"\['Café', '🔴', '円'\]"):
        emb, unknown = encoder.encode(["a red Café circle 🔴 円"])
    assert unknown == [["Café", "🔴", "円"]]
    assert emb.shape[1] == 6  # each unknown word takes a position (<unk>), nothing is dropped


@pytest.mark.parametrize("prompt, named", [
    ("🎉🎉 🦄", "['🎉🎉', '🦄']"), ("红色的圆", "['红色的圆']"), ("Ça va", "['Ça', 'va']"),
    ("... !!", "only punctuation")])
def test_a_prompt_without_any_known_word_is_refused(encoder, prompt, named):
    with pytest.raises(NoKnownWordsError) as info:
        encoder.encode(["a red circle", prompt])
    msg = str(info.value)
    assert f"prompt 1 {prompt!r} has no word this model knows" in msg and named in msg
    assert "unconditioned" in msg and "e.g. a, blue, cafe" in msg  # what it would cause, what would work


def test_the_blank_prompt_stays_the_explicit_unconditional_input(encoder):
    emb, unknown = encoder.encode([""])
    assert unknown == [[]] and torch.equal(emb, torch.zeros_like(emb))


def test_prompt_datasets_refuse_such_prompts_before_any_compute(tmp_path):
    from salt_core.text import save_text_encoder
    from training.config import TextConfig
    from training.data import PromptDataset, build_text_encoder

    path = save_text_encoder(tmp_path / "t.safetensors",
                             TextEncoder(TextEncoderConfig(dim=16, num_heads=2, ffn_dim=16, text_dim=8), VOCAB))
    enc = build_text_encoder(TextConfig(encoder="salt", path=path), 8)
    ds = PromptDataset(["a red circle", "blue square"], enc)  # fine
    assert ds[0]["context"].shape[-1] == 8
    with pytest.raises(NoKnownWordsError, match="prompt 1 '🦄🦄' has no word"):
        PromptDataset(["a red circle", "🦄🦄"], enc)


def test_the_text_encode_node_says_what_happens_to_unknown_words():
    from test_nodes import load_pack

    nodes = load_pack().NODE_CLASS_MAPPINGS
    model = nodes["SaltModelLoader"]().load("(embedded default)")["result"][0]
    with pytest.warns(UnknownWordsWarning):
        out = nodes["SaltTextEncode"]().encode(model, "a red circle moves left on a blue café background")
    [msg] = out["ui"]["text"]
    assert "'café'" in msg and "<unk>" in msg and "ignored" not in msg
    with pytest.raises(ValueError, match="has no word this model knows"):
        nodes["SaltTextEncode"]().encode(model, "🔴 🟦")
    tip = nodes["SaltTextEncode"].INPUT_TYPES()["required"]["text"][1]["tooltip"]
    assert "<unk>" in tip and "error" in tip
