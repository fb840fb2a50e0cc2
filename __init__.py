"""Salt for ComfyUI: few-step and autoregressive Wan 2.1 video nodes.

ComfyUI imports this folder as a package (custom_nodes/<folder>/__init__.py). A plain `git clone`
into custom_nodes works without `pip install`: when `salt_core` is not installed, this folder is
appended (never prepended) to sys.path so the bundled `salt_core` is found. Our `nodes` package is
imported relatively, so it never shadows ComfyUI's own top-level `nodes` module.
"""
import os
import sys


def _make_salt_core_importable() -> None:
    try:
        import salt_core  # noqa: F401  (installed, e.g. `pip install -e .`)
        return
    except ModuleNotFoundError as e:
        if e.name != "salt_core":
            raise
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.append(here)


_make_salt_core_importable()

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, register_model_folder

register_model_folder()

WEB_DIRECTORY = None

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
