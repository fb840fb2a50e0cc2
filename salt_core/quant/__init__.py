"""Reduced-precision weight storage (8-bit float Linear weights, ComfyUI's scaled-fp8 layout)."""
from .fp8 import (FP8_DTYPES, SCALE_INPUT, SCALE_WEIGHT, SCALED_FP8_MARKER, block_linears, comfyui_fp8_state_dict,
                  is_8bit, linear_weight_bytes, quantize_linears_, quantize_weight)

__all__ = ["FP8_DTYPES", "SCALE_INPUT", "SCALE_WEIGHT", "SCALED_FP8_MARKER", "block_linears",
           "comfyui_fp8_state_dict", "is_8bit", "linear_weight_bytes", "quantize_linears_", "quantize_weight"]
