"""salt_core: pure-torch Wan 2.1 video models, KV-cache memory policies, few-step samplers,
streaming VAE, checkpoints and video IO. Importable without ComfyUI."""

__version__ = "0.1.0"
