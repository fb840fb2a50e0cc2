"""umT5-XXL, the text encoder of Wan 2.1, outside ComfyUI: our own encoder, loaders for Wan's .pth,
ComfyUI's safetensors (fp16 / scaled fp8, tokenizer embedded) and the transformers layout, and the tokenizer
from the user's file (optional extra: pip install -e ".[umt5]").

    enc = load_umt5("umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    context, lengths = enc.encode(["a red fox runs through snow"])   # [1, 512, 4096] float32, padded rows zero
"""
from .config import UMT5_PRESETS, UMT5Config, umt5_preset
from .encoder import SENTINEL_ROWS, WAN_NEGATIVE_PROMPT, UMT5LoadedInfo, UMT5TextEncoder, check_tokenizer_matches
from .layouts import FORMATS, describe_foreign, detect_config, detect_layout, official_to_transformers_name
from .load import load_umt5
from .model import UMT5Encoder, relative_position_buckets
from .scaled_fp8 import dequantize_scaled_fp8
from .tokenizer import MissingTokenizerLibrary, TokenBatch, UMT5Tokenizer, clean_prompt

__all__ = [
    "UMT5Config", "UMT5_PRESETS", "umt5_preset", "UMT5Encoder", "relative_position_buckets",
    "UMT5Tokenizer", "TokenBatch", "clean_prompt", "MissingTokenizerLibrary",
    "UMT5TextEncoder", "UMT5LoadedInfo", "load_umt5", "check_tokenizer_matches", "SENTINEL_ROWS",
    "WAN_NEGATIVE_PROMPT", "FORMATS", "detect_layout", "detect_config", "describe_foreign",
    "official_to_transformers_name", "dequantize_scaled_fp8",
]
