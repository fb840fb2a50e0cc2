"""Shared pieces of the umT5 tests: a SentencePiece model trained in-process (T5's special ids: pad 0,
end 1, unk 2), a tiny umT5 with randomised weights, and transformers' UMT5 built to the same geometry."""
from __future__ import annotations

import io

import torch

from salt_core.text.umt5 import UMT5Config, UMT5Encoder, official_to_transformers_name, umt5_preset

CORPUS = [
    "a red circle moves slowly to the right across a white background",
    "the blue square jumps over a small green triangle in the park",
    "une voiture rouge roule vite sur la route mouillée",
    "ein kleiner brauner Hund läuft im Park und spielt mit einem Ball",
    "un gato negro duerme tranquilamente sobre el sofá de la sala",
    "numbers 123 456 and symbols like ! ? , . are here too",
    "a cinematic shot of waves crashing against rocks at sunset, golden light",
    "close-up of a hummingbird drinking nectar from a purple flower",
    "el niño sueña & ríe con su perro",
] * 4


def train_spiece(vocab_size: int = 100) -> bytes:
    """A serialised SentencePiece unigram model (well under a second to train)."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=out, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, hard_vocab_limit=False,
        minloglevel=2)
    return out.getvalue()


def tiny_config(vocab_size: int = 128, **changes) -> UMT5Config:
    return UMT5Config(**{**umt5_preset("tiny").to_dict(), "vocab_size": vocab_size, **changes})


def randomised_encoder(config: UMT5Config, seed: int = 0) -> UMT5Encoder:
    """Every weight random (norm gains around 1), so parity and loading tests can fail."""
    torch.manual_seed(seed)
    model = UMT5Encoder(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")) else 0.0
            p.copy_(base + torch.randn(p.shape, generator=g) * 0.5)
    return model


def transformers_names(state: dict) -> dict:
    return {official_to_transformers_name(k): v for k, v in state.items()}


def transformers_config(c: UMT5Config, **extra):
    """transformers' UMT5Config with our geometry (gated-gelu = GELU-tanh gate, as umt5-xxl's config.json)."""
    import transformers

    return transformers.UMT5Config(
        vocab_size=c.vocab_size, d_model=c.dim, d_kv=c.head_dim, d_ff=c.ffn_dim, num_layers=c.num_layers,
        num_decoder_layers=c.num_layers, num_heads=c.num_heads, relative_attention_num_buckets=c.num_buckets,
        relative_attention_max_distance=c.max_distance, feed_forward_proj="gated-gelu",
        layer_norm_epsilon=c.eps, dropout_rate=0.0, tie_word_embeddings=False, **extra)


def transformers_encoder(ours: UMT5Encoder):
    """transformers.UMT5EncoderModel holding our weights, loaded strictly through our name map."""
    import transformers

    theirs = transformers.UMT5EncoderModel(transformers_config(ours.config)).eval()
    state = transformers_names(ours.state_dict())
    state["encoder.embed_tokens.weight"] = state["shared.weight"]
    theirs.load_state_dict(state, strict=True)
    return theirs
