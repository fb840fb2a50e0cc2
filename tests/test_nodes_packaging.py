"""The pack as ComfyUI-Manager / the Comfy Registry install it: git clone + requirements, no pip install."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_workflows"


def test_a_plain_clone_imports_without_salt_core_installed_and_never_shadows_comfyuis_nodes(tmp_path):
    clone = tmp_path / "custom_nodes" / "salt-comfyui"
    clone.parent.mkdir()
    clone.symlink_to(ROOT, target_is_directory=True)
    code = f"""
import importlib.util, sys, types
sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")
                 and "editable" not in getattr(type(f), "__module__", "")]
sys.path = [p for p in sys.path if p not in ("", {str(ROOT)!r})]
try:
    import salt_core
    print("SKIP salt_core is importable without the editable install:", salt_core.__file__)
    sys.exit(0)
except ModuleNotFoundError:
    pass
comfy_nodes = types.ModuleType("nodes")  # ComfyUI's own nodes.py is imported before any custom node
sys.modules["nodes"] = comfy_nodes
path = {str(clone)!r}
name = path.replace(".", "_x_")  # what ComfyUI's load_custom_node does
spec = importlib.util.spec_from_file_location(name, path + "/__init__.py")
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
import salt_core
assert sys.modules["nodes"] is comfy_nodes, "our nodes/ shadowed ComfyUI's nodes module"
assert sys.path[-1] == path, sys.path
assert salt_core.__file__.startswith(path), salt_core.__file__
assert "folder_paths" not in sys.modules
print("OK", sorted(module.NODE_CLASS_MAPPINGS))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stdout + done.stderr
    if done.stdout.startswith("SKIP"):
        pytest.skip(done.stdout)
    assert done.stdout.startswith("OK") and "SaltSampler" in done.stdout


def test_requirements_never_install_torch():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    names = [line.split(">")[0].split("=")[0].split("<")[0].strip().lower() for line in lines if line]
    assert names and not {"torch", "torchvision", "torchaudio"} & set(names)
    assert "imageio-ffmpeg" in names and "safetensors" in names


def test_registry_metadata_is_complete():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    for key in ("PublisherId", "DisplayName", "Icon", "includes", "requires-comfyui"):
        assert comfy.get(key) not in (None, ""), key
    assert comfy["requires-comfyui"].startswith(">=")
    assert not any(p.startswith("nodes") for p in meta["tool"]["setuptools"]["packages"]["find"]["include"])


def test_the_frontend_is_a_pack_extra_and_reaches_the_registry_metadata_when_publishing():
    """The command-line install does not pull the ComfyUI frontend; the Registry still reads its minimum."""
    import importlib.util
    import re

    text = (ROOT / "pyproject.toml").read_text()
    meta = tomllib.loads(text)["project"]
    assert not any(d.startswith("comfyui-frontend-package") for d in meta["dependencies"])
    assert meta["optional-dependencies"]["comfyui"] == ["comfyui-frontend-package>=1.17.11"]
    spec = importlib.util.spec_from_file_location("registry_metadata", ROOT / ".github" / "registry_metadata.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    published = tomllib.loads(tool.with_frontend_dependency(text))["project"]["dependencies"]
    frontend = [d for d in published if d.startswith("comfyui-frontend-package")]
    assert frontend == ["comfyui-frontend-package>=1.17.11"]
    # what the Registry's parser keeps: the text after the package name must be a plain version constraint
    assert re.fullmatch(r">=\d+\.\d+\.\d+", frontend[0].removeprefix("comfyui-frontend-package"))
    assert set(published) - set(frontend) == set(meta["dependencies"])
    assert tool.with_frontend_dependency(tool.with_frontend_dependency(text)) == tool.with_frontend_dependency(text)


def test_node_list_matches_the_registered_nodes():
    from test_nodes import load_pack

    assert set(json.loads((ROOT / "node_list.json").read_text())) == set(load_pack().NODE_CLASS_MAPPINGS)


# ---- example workflows ----------------------------------------------------------------------------

UI_FILES = sorted(EXAMPLES.glob("*.json"))


def test_there_are_the_eight_examples():
    assert {p.stem for p in UI_FILES} == {"salt_t2v_embedded_default", "salt_long_video_sink_window",
                                         "salt_prompt_schedule", "salt_wan_self_forcing", "salt_wan_core_nodes_mix",
                                         "salt_cf", "salt_ll", "longlive_prompt_switch"}


@pytest.mark.parametrize("family", ["salt-cf", "salt-ll", "longlive"])
def test_each_release_template_names_its_release_files_and_samples_as_trained(family):
    from salt_core.families import FAMILIES
    from salt_core.validation import latent_frames_for

    fam = FAMILIES[family]
    api = json.loads((EXAMPLES / "api" / f"{fam.template}.json").read_text())
    loader = next(n["inputs"] for n in api.values() if n["class_type"] == "SaltModelLoader")
    assert loader["family"] == family and loader["weights"] == "auto"
    assert any(loader["model_name"] in r for r in fam.release)  # the released file name, unrenamed
    policy = next(n["inputs"] for n in api.values() if n["class_type"] == "SaltCachePolicy")
    assert policy["policy"] == "model default" and policy["window_frames"] == policy["sink_frames"] == 0
    sampler = next(n["inputs"] for n in api.values() if n["class_type"] == "SaltSampler")
    assert (sampler["height"], sampler["width"]) == fam.sampling.resolution
    assert latent_frames_for(sampler["frames"]) % fam.sampling.chunk_frames == 0
    if fam.adapter is not None:
        lora = next(n["inputs"] for n in api.values() if n["class_type"] == "SaltLoraLoader")
        assert lora["lora_name"] == fam.adapter.file and lora["strength"] == fam.adapter.strength
        starts = sorted(n["inputs"]["start_frame"] for n in api.values() if n["class_type"] == "SaltPromptSchedule")
        assert len(starts) == 2 and policy["recache_on_switch"]


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_example_is_a_ui_workflow_with_thumbnail_and_api_copy(path):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import build_examples
    finally:
        sys.path.remove(str(EXAMPLES))
    from salt_core.comfyui_client.workflow import ui_to_api

    ui = json.loads(path.read_text())
    assert ui["version"] == 0.4 and ui["last_node_id"] == len(ui["nodes"])
    for node in ui["nodes"]:
        assert {"id", "type", "pos", "size", "widgets_values", "inputs", "outputs", "mode"} <= set(node)
    by_id = {n["id"]: n for n in ui["nodes"]}
    for lid, src, slot, dst, dst_slot, kind in ui["links"]:
        assert lid in by_id[src]["outputs"][slot]["links"] and by_id[dst]["inputs"][dst_slot]["link"] == lid
        assert by_id[src]["outputs"][slot]["type"] == kind
    jpg = path.with_suffix(".jpg").read_bytes()
    assert jpg[:2] == b"\xff\xd8" and len(jpg) > 2000
    api = json.loads((EXAMPLES / "api" / path.name).read_text())
    assert api == ui_to_api(ui, build_examples.object_info())
    assert any(n["class_type"] in ("SaltSaveVideo", "SaveVideo") for n in api.values())
