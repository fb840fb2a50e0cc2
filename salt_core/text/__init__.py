"""The tiny text encoder of the embedded default: a word-level tokenizer over a fixed vocabulary
(stored with the weights) and a 2-layer transformer encoder -> [B, L, text_dim].

    enc = load_text_encoder("text_encoder.safetensors")
    emb, unknown = enc.encode(["a red circle moves to the right"])   # unknown words are reported as typed
"""
from .config import TextEncoderConfig
from .io import load_text_encoder, save_text_encoder
from .model import NoKnownWordsError, TextEncoder, TruncatedPromptWarning, UnknownWordsWarning
from .tokenizer import PAD, SPECIALS, UNK, Tokenized, WordTokenizer, normalize, split_words

__all__ = [
    "TextEncoderConfig", "TextEncoder", "UnknownWordsWarning", "TruncatedPromptWarning", "NoKnownWordsError",
    "WordTokenizer", "Tokenized", "normalize", "split_words", "PAD", "UNK", "SPECIALS",
    "save_text_encoder", "load_text_encoder",
]
