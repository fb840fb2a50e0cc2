"""Test-only ComfyUI nodes (linked into the test server's custom_nodes by conftest.py; never part of the pack):
what ComfyUI's model management has loaded, and a random umT5-shaped prompt embedding (no 11 GB text encoder in a
test)."""
import json

import torch


class SaltTestLoadedModels:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"nonce": ("INT", {"default": 0, "min": 0, "max": 2**31})},
                "optional": {"images": ("IMAGE",), "latent": ("LATENT",)}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "report"
    CATEGORY = "testing"

    def report(self, nonce, images=None, latent=None):
        import comfy.model_management as mm

        models = [{"class": type(p.model).__name__, "device": str(p.load_device), "size": p.model_size(),
                   "loaded": p.loaded_size()} for p in mm.loaded_models()]
        return {"ui": {"text": [json.dumps({"models": models, "images": _summary(images),
                                            "latent": _summary(None if latent is None else latent["samples"])})]}}


def _summary(t):
    """Shape and a checksum over every value (equal for bit-identical tensors)."""
    return None if t is None else {"shape": list(t.shape), "sum": float(t.double().sum()),
                                   "abs": float(t.double().abs().sum())}


class SaltTestConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tokens": ("INT", {"default": 512}), "dim": ("INT", {"default": 4096}),
                             "seed": ("INT", {"default": 0})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, tokens, dim, seed):
        g = torch.Generator().manual_seed(seed)
        return ([[0.1 * torch.randn(1, tokens, dim, generator=g), {"pooled_output": None}]],)


NODE_CLASS_MAPPINGS = {"SaltTestLoadedModels": SaltTestLoadedModels, "SaltTestConditioning": SaltTestConditioning}
