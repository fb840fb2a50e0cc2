"""Before publishing to the Comfy Registry: copy the frontend requirement of the `comfyui` extra into
[project].dependencies, where the Registry's parser (comfy-cli, `comfy node publish`) reads the minimum frontend.

pip users never see this edit: `pip install -e .` reads the committed pyproject.toml, whose dependencies leave the
123 MB frontend out (ComfyUI brings its own). Usage: python .github/registry_metadata.py [pyproject.toml]
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

FRONTEND = "comfyui-frontend-package"


def frontend_requirement(text: str) -> str:
    extra = tomllib.loads(text)["project"].get("optional-dependencies", {}).get("comfyui", [])
    found = [r for r in extra if r.replace("_", "-").lower().startswith(FRONTEND)]
    if len(found) != 1:
        raise SystemExit(f"expected one {FRONTEND} requirement in the `comfyui` extra, found {found}")
    return found[0]


def with_frontend_dependency(text: str) -> str:
    """pyproject text -> the same text with the frontend requirement added to [project].dependencies."""
    requirement = frontend_requirement(text)
    if any(d.startswith(FRONTEND) for d in tomllib.loads(text)["project"].get("dependencies", [])):
        return text
    match = re.search(r"^dependencies = \[\n", text, flags=re.MULTILINE)
    if match is None:
        raise SystemExit("pyproject.toml: no multi-line `dependencies = [` list in [project]")
    out = text[:match.end()] + f'    "{requirement}",\n' + text[match.end():]
    tomllib.loads(out)  # still valid TOML
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    path.write_text(with_frontend_dependency(path.read_text()))
    print(f"{path}: [project].dependencies now declares {frontend_requirement(path.read_text())}")
