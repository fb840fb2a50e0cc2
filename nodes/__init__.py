"""ComfyUI glue: thin node classes over salt_core (classic V1 node API).

Imported relatively by the pack's root `__init__.py`; never installed as a top-level `nodes`
package (that name belongs to ComfyUI's own nodes.py).
"""
from .conditioning import SaltPromptSchedule, SaltTextEncode
from .host import register_model_folder
from .loaders import SaltModelLoader, SaltVAELoader
from .lora import SaltLoraLoader
from .sampler import SaltCachePolicy, SaltSampler
from .video import SaltDecode, SaltSaveVideo

NODE_CLASS_MAPPINGS = {
    "SaltModelLoader": SaltModelLoader,
    "SaltLoraLoader": SaltLoraLoader,
    "SaltTextEncode": SaltTextEncode,
    "SaltCachePolicy": SaltCachePolicy,
    "SaltPromptSchedule": SaltPromptSchedule,
    "SaltSampler": SaltSampler,
    "SaltVAELoader": SaltVAELoader,
    "SaltDecode": SaltDecode,
    "SaltSaveVideo": SaltSaveVideo,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SaltModelLoader": "Salt Model Loader",
    "SaltLoraLoader": "Salt LoRA Loader",
    "SaltTextEncode": "Salt Text Encode",
    "SaltCachePolicy": "Salt Cache Policy",
    "SaltPromptSchedule": "Salt Prompt Schedule",
    "SaltSampler": "Salt Sampler",
    "SaltVAELoader": "Salt VAE Loader",
    "SaltDecode": "Salt Decode",
    "SaltSaveVideo": "Salt Save Video",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "register_model_folder"]
