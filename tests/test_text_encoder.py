"""The tiny text encoder: word tokenisation, unknown words reported (never silently dropped),
padding zeroed and batch-independent, and an exact, atomic safetensors round trip."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from salt_core.checkpoints import CheckpointError, read_safetensors_header
from salt_core.text import (TextEncoder, TextEncoderConfig, TruncatedPromptWarning, UnknownWordsWarning,
                            WordTokenizer, load_text_encoder, normalize, save_text_encoder)

VOCAB = ("a", "red", "blue", "circle", "square", "moves", "to", "the", "right", "left", "up")
CONFIG = TextEncoderConfig(dim=32, num_layers=2, num_heads=4, ffn_dim=64, text_dim=16, max_len=12)


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return TextEncoder(CONFIG, VOCAB).eval()


def test_normalize_lowercases_and_strips_punctuation():
    assert normalize("A Red circle, moves-to the RIGHT!") == ["a", "red", "circle", "moves", "to", "the", "right"]
    assert normalize("  doesn't  ") == ["doesnt"]
    assert normalize("") == []


def test_tokenizer_ids_mask_and_unknown_words():
    tok = WordTokenizer(VOCAB)
    out = tok(["a red circle", "a Purple circle moonwalks", ""], max_len=12)
    assert out.ids.shape == out.mask.shape == (3, 4)
    assert out.ids[0].tolist() == [2, 3, 5, 0]                        # <pad>=0, <unk>=1, words from 2
    assert out.ids[1].tolist() == [2, 1, 5, 1] and out.mask[1].all()  # unknown words still take a position
    assert out.mask.sum(dim=1).tolist() == [3, 4, 0]
    assert out.unknown == [[], ["Purple", "moonwalks"], []]  # reported as typed
    with pytest.raises(ValueError, match="unique"):
        WordTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="single lower-case words"):
        WordTokenizer(["Red"])
    with pytest.raises(ValueError, match="list of strings"):
        tok("a red circle", max_len=4)


def test_encode_reports_unknown_words(encoder):
    with pytest.warns(UnknownWordsWarning, match=r"prompt 1: \['purple', 'zebra'\]"):
        emb, unknown = encoder.encode(["a red circle", "a purple zebra moves left"])
    assert unknown == [[], ["purple", "zebra"]]
    assert emb.shape == (2, 5, CONFIG.text_dim)
    assert emb[1].abs().sum(dim=-1).gt(0).all()  # the <unk> positions are encoded, not dropped


def test_known_prompts_give_no_warning(encoder, recwarn):
    encoder.encode(["a red circle moves to the right"])
    assert not [w for w in recwarn if issubclass(w.category, UnknownWordsWarning)]


def test_too_long_prompts_are_cut_with_a_warning(encoder):
    prompt = " ".join(["red"] * 15)
    with pytest.warns(TruncatedPromptWarning, match="max_len=12"):
        emb, _ = encoder.encode([prompt])
    assert emb.shape == (1, 12, CONFIG.text_dim)


def test_padding_is_zero_and_does_not_change_the_prompt(encoder):
    with torch.no_grad():
        alone, _ = encoder.encode(["blue square moves up"])
        batch, _ = encoder.encode(["blue square moves up", "a red circle moves to the right", ""])
    assert batch.shape == (3, 7, CONFIG.text_dim)
    assert torch.equal(batch[0, 4:], torch.zeros(3, CONFIG.text_dim))
    assert torch.equal(batch[2], torch.zeros(7, CONFIG.text_dim))            # empty prompt: all padding, no NaN
    assert torch.allclose(batch[0, :4], alone[0], atol=1e-5)
    assert torch.isfinite(batch).all()


def test_save_load_round_trip_is_exact_and_deterministic(encoder, tmp_path):
    path = tmp_path / "te.safetensors"
    save_text_encoder(path, encoder)
    first = read_safetensors_header(str(path)), load_file(str(path))
    save_text_encoder(path, encoder)                                          # overwrite in place
    again = read_safetensors_header(str(path)), load_file(str(path))
    assert first[0] == again[0] and first[1].keys() == again[1].keys()
    assert all(torch.equal(first[1][k], again[1][k]) for k in first[1])
    assert [p.name for p in tmp_path.iterdir()] == ["te.safetensors"]         # no temp file left behind
    _, meta = read_safetensors_header(str(path))
    assert json.loads(meta["vocab"]) == list(VOCAB)
    assert json.loads(meta["config"]) == CONFIG.to_dict()
    loaded = load_text_encoder(path)
    assert loaded.config == CONFIG and loaded.vocab == VOCAB
    want = encoder.state_dict()
    assert loaded.state_dict().keys() == want.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in want.items())  # every tensor as saved
    prompts = ["a red circle moves to the right", "blue square"]
    with torch.no_grad():
        assert torch.equal(loaded.encode(prompts)[0], encoder.encode(prompts)[0])


def test_loading_a_wrong_file_names_the_file_and_the_problem(encoder, tmp_path):
    path = tmp_path / "te.safetensors"
    save_text_encoder(path, encoder)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_text_encoder(cut)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not a text encoder"):
        load_text_encoder(other)
    bigger = TextEncoder(TextEncoderConfig(dim=64, num_heads=4, text_dim=16, max_len=12), VOCAB)
    tensors = {k: v.contiguous() for k, v in bigger.state_dict().items()}
    _, meta = read_safetensors_header(str(path))
    mismatched = tmp_path / "mismatched.safetensors"
    save_file(tensors, str(mismatched), metadata=meta)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_text_encoder(mismatched)
    with pytest.raises(CheckpointError, match="no such file"):
        load_text_encoder(tmp_path / "missing.safetensors")


def test_config_is_validated():
    with pytest.raises(ValueError, match="divisible"):
        TextEncoderConfig(dim=30, num_heads=4)
    with pytest.raises(ValueError, match="num_layers"):
        TextEncoderConfig(num_layers=0)
    with pytest.raises(ValueError, match="unknown fields"):
        TextEncoderConfig.from_dict({"width": 3})


def test_world_vocabulary_builds_an_encoder():
    from training.world import prompt_for, sample_scene, vocabulary
    enc = TextEncoder(TextEncoderConfig(), vocabulary())
    prompts = [prompt_for(sample_scene(s), s) for s in range(20)]
    emb, unknown = enc.encode(prompts)
    assert unknown == [[]] * 20 and emb.shape[0] == 20 and emb.shape[1] <= TextEncoderConfig().max_len


def test_pad_to_gives_every_prompt_the_same_context_length():
    from salt_core.text import TextEncoder, TextEncoderConfig

    enc = TextEncoder(TextEncoderConfig(max_len=8, pad_to=8), ["a", "red", "circle"]).eval()
    with torch.no_grad():
        one, _ = enc.encode(["a red circle"])
        two, _ = enc.encode(["a red circle", "circle"])
    assert one.shape == (1, 8, 32) and two.shape == (2, 8, 32)
    assert torch.allclose(one[0], two[0], atol=1e-6) and one[0, 3:].abs().max() == 0
    with pytest.raises(ValueError, match="pad_to"):
        TextEncoderConfig(max_len=8, pad_to=4)
