"""The umT5 tokenizer from a user's file: a SentencePiece model trained here, read as spiece.model, as
ComfyUI's spiece_model tensor and as a tokenizer.json, gives Wan's ids (transformers' tokenizer with
padding='max_length', truncation=True, as Wan's HuggingfaceTokenizer calls it)."""
import json
import sys

import pytest
import torch

from salt_core.text.umt5 import MissingTokenizerLibrary, UMT5Tokenizer, clean_prompt

from _umt5_helpers import train_spiece

spm = pytest.importorskip("sentencepiece", reason="the umt5 extra: pip install -e '.[umt5]'")

PROMPTS = [
    "a red circle moves slowly to the right",
    "  un gato   negro\n duerme &amp;amp; sueña  ",
    "",
    "close-up of a hummingbird, golden light! 123",
]
TEXT_LEN = 64


@pytest.fixture(scope="module")
def spiece_bytes():
    return train_spiece()


@pytest.fixture(scope="module")
def files(tmp_path_factory, spiece_bytes):
    """The same vocabulary as spiece.model and as the tokenizer.json transformers converts it to."""
    transformers = pytest.importorskip("transformers", reason="converts spiece.model to tokenizer.json")
    folder = tmp_path_factory.mktemp("umt5_tok")
    (folder / "spiece.model").write_bytes(spiece_bytes)
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    out = tmp_path_factory.mktemp("umt5_tok_json")
    hf.save_pretrained(str(out))
    return folder / "spiece.model", out / "tokenizer.json", hf


def test_clean_prompt_is_wans_whitespace_cleaning():
    assert clean_prompt("  a  cat\n\ton &amp;amp; a\u00a0sofa  ") == "a cat on & a sofa"
    assert clean_prompt("\u201cquoted\u201d") == '"quoted"'          # ftfy straightens curly quotes
    assert clean_prompt("") == ""


def test_file_tensor_and_json_give_the_same_ids(files, spiece_bytes):
    spiece, tokenizer_json, _ = files
    from_file = UMT5Tokenizer.from_file(spiece)(PROMPTS, TEXT_LEN)
    from_tensor_bytes = torch.frombuffer(bytearray(spiece_bytes), dtype=torch.uint8).numpy().tobytes()
    from_tensor = UMT5Tokenizer.from_sentencepiece_bytes(from_tensor_bytes, "spiece_model")(PROMPTS, TEXT_LEN)
    from_json = UMT5Tokenizer.from_file(tokenizer_json)(PROMPTS, TEXT_LEN)
    for other in (from_tensor, from_json):
        assert torch.equal(other.ids, from_file.ids) and torch.equal(other.mask, from_file.mask)
    assert from_file.ids.shape[1] == int(from_file.lengths.max()) > 1


def test_ids_equal_wans_tokenizer_call(files):
    spiece, tokenizer_json, hf = files
    ref = hf([clean_prompt(p) for p in PROMPTS], padding="max_length", truncation=True, max_length=TEXT_LEN,
             add_special_tokens=True, return_tensors="pt")
    for path in (spiece, tokenizer_json):
        ours = UMT5Tokenizer.from_file(path)(PROMPTS, TEXT_LEN)
        n = ours.ids.shape[1]
        assert torch.equal(ours.ids, ref.input_ids[:, :n])
        assert torch.equal(ours.mask, ref.attention_mask[:, :n].bool())
        assert not ref.attention_mask[:, n:].any()
        assert torch.equal(ours.lengths, ref.attention_mask.sum(1))


def test_round_trip_decodes_to_the_cleaned_prompt(files, spiece_bytes):
    sp = spm.SentencePieceProcessor(model_proto=spiece_bytes)
    batch = UMT5Tokenizer.from_file(files[0])(PROMPTS, TEXT_LEN)
    for i, prompt in enumerate(PROMPTS):
        n = int(batch.lengths[i])
        assert batch.ids[i, n - 1] == sp.eos_id() == 1
        assert sp.decode(batch.ids[i, : n - 1].tolist()) == clean_prompt(prompt)
        assert (batch.ids[i, n:] == 0).all()


def test_long_prompts_are_cut_to_text_len_keeping_the_end_token(files):
    spiece, tokenizer_json, hf = files
    long = " ".join(["a red circle moves to the right"] * 20)
    for path in (spiece, tokenizer_json):
        batch = UMT5Tokenizer.from_file(path)([long, "a cat"], TEXT_LEN)
        assert batch.ids.shape == (2, TEXT_LEN) and int(batch.lengths[0]) == TEXT_LEN
        assert batch.ids[0, -1] == 1 and batch.dropped[0] > 0 and batch.dropped[1] == 0
        ref = hf([long], padding="max_length", truncation=True, max_length=TEXT_LEN, return_tensors="pt")
        assert torch.equal(batch.ids[:1], ref.input_ids)


def test_a_folder_prefers_tokenizer_json(files, tmp_path):
    spiece, tokenizer_json, _ = files
    assert UMT5Tokenizer.from_file(spiece.parent).source.endswith("spiece.model")
    (tmp_path / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    (tmp_path / "spiece.model").write_bytes(spiece.read_bytes())
    assert UMT5Tokenizer.from_file(tmp_path).source.endswith("tokenizer.json")
    with pytest.raises(FileNotFoundError, match="tokenizer.json or spiece.model"):
        UMT5Tokenizer.from_file(tmp_path / "nothing_here")


def test_damaged_tokenizer_files_name_the_file(tmp_path):
    bad = tmp_path / "spiece.model"
    bad.write_bytes(b"not a sentencepiece model")
    with pytest.raises(ValueError, match="spiece.model: not a valid SentencePiece model"):
        UMT5Tokenizer.from_file(bad)
    bad_json = tmp_path / "tokenizer.json"
    bad_json.write_text("{}")
    with pytest.raises(ValueError, match="tokenizer.json: not a valid tokenizer.json"):
        UMT5Tokenizer.from_file(bad_json)


def test_missing_library_names_the_extra(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)   # import now raises ImportError
    with pytest.raises(MissingTokenizerLibrary, match=r"'sentencepiece'.*pip install -e \"\.\[umt5\]\""):
        UMT5Tokenizer.from_file(files[0])
    monkeypatch.setitem(sys.modules, "ftfy", None)
    with pytest.raises(MissingTokenizerLibrary, match=r"'ftfy'.*\[umt5\]"):
        UMT5Tokenizer.from_file(files[1])
    assert UMT5Tokenizer.from_file(files[1], clean="none").clean == "none"   # no cleaning, no ftfy needed


def test_bad_prompts_are_refused(files):
    tok = UMT5Tokenizer.from_file(files[0])
    for bad in ("a bare string", [], ["ok", 3]):
        with pytest.raises(ValueError, match="non-empty list of strings"):
            tok(bad, TEXT_LEN)
