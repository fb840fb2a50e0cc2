"""The tiny text encoder of the embedded default: a word-level tokenizer over a fixed vocabulary
(stored with the weights) and a 2-layer transformer encoder -> [B, L, text_dim].

    enc = load_text_encoder("text_encoder.safetensors")
    emb, unknown = enc.encode(["a red circle moves to the right"])   # unknown words are reported as typed

umT5-XXL, the text encoder of real Wan 2.1 models, is in salt_core.text.umt5:

    enc = load_umt5("umt5_xxl_fp16.safetensors")                      # or Wan's .pth with tokenizer=...
    context, lengths = enc.encode(["a red fox runs through snow"])    # [1, 512, 4096], padded rows zero
"""
from .config import TextEncoderConfig
from .io import load_text_encoder, save_text_encoder
from .model import NoKnownWordsError, TextEncoder, TruncatedPromptWarning, UnknownWordsWarning
from .tokenizer import PAD, SPECIALS, UNK, Tokenized, WordTokenizer, normalize, split_words
from .umt5 import UMT5Config, UMT5TextEncoder, UMT5Tokenizer, load_umt5, umt5_preset

__all__ = [
    "TextEncoderConfig", "TextEncoder", "UnknownWordsWarning", "TruncatedPromptWarning", "NoKnownWordsError",
    "WordTokenizer", "Tokenized", "normalize", "split_words", "PAD", "UNK", "SPECIALS",
    "save_text_encoder", "load_text_encoder",
    "load_umt5", "UMT5TextEncoder", "UMT5Tokenizer", "UMT5Config", "umt5_preset",
]
