"""Load another checkout's `salt_core` under a different name, to time before/after in one process.

    base = load_salt_core("/tmp/base_tree", "salt_base")   # e.g. `git archive <commit> | tar -x -C /tmp/base_tree`
    base.dit.WanDiT(...)

salt_core imports itself only relatively, so the copy is a separate package with its own modules.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path


def load_salt_core(checkout: str, name: str = "salt_base"):
    root = Path(checkout).resolve() / "salt_core"
    if not (root / "__init__.py").exists():
        raise SystemExit(f"--baseline {checkout}: no salt_core/__init__.py there")
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    for sub in ("config", "dit", "vae", "kv_cache", "pipeline", "sampling", "schedules", "checkpoints"):
        try:
            setattr(module, sub, importlib.import_module(f"{name}.{sub}"))
        except ImportError:
            pass
    return module
