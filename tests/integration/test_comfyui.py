"""The pack inside a real ComfyUI (started by conftest.py): import, templates, every example workflow,
previews, interruption and node errors. Skipped unless COMFYUI_PATH is set."""
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from salt_core.comfyui_client import runner as headless
from salt_core.comfyui_client.workflow import ui_to_api
from salt_core.video_io import read_mp4

pytestmark = pytest.mark.skipif(
    not os.environ.get("COMFYUI_PATH"),
    reason="integration tests need a ComfyUI checkout: set COMFYUI_PATH (and COMFYUI_PYTHON, the python of its "
           "environment) to run them")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "example_workflows"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.json"))
EMBEDDED = ["salt_t2v_embedded_default", "salt_long_video_sink_window", "salt_prompt_schedule"]
WAN = ["salt_wan_self_forcing", "salt_wan_core_nodes_mix"]
RELEASES = ["salt_cf", "salt_ll", "longlive_prompt_switch"]
SALT_NODES = {"SaltModelLoader", "SaltTextEncode", "SaltCachePolicy", "SaltPromptSchedule", "SaltSampler",
              "SaltVAELoader", "SaltDecode", "SaltSaveVideo"}


def api_copy(name: str) -> dict:
    return json.loads((EXAMPLES / "api" / f"{name}.json").read_text())


def node_of(prompt: dict, class_type: str) -> dict:
    [n] = [n for n in prompt.values() if n["class_type"] == class_type]
    return n


def run(comfy, prompt: dict, timeout: float = 600, on_event=None):
    """Queue a prompt and follow its websocket -> (final event type, events, binary message count, prompt id)."""
    client = headless.ComfyClient(comfy.url)
    ws = client.websocket()
    try:
        prompt_id = client.queue(prompt)["prompt_id"]
        events, binary = [], 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ws.settimeout(max(1.0, deadline - time.monotonic()))
            op, payload = ws.recv()
            if op == 0x2:
                binary += 1
                continue
            msg = json.loads(payload)
            data = msg.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            events.append(msg)
            if on_event:
                on_event(msg, client, prompt_id)
            if msg["type"] in ("execution_error", "execution_interrupted", "execution_success"):
                return msg["type"], events, binary, prompt_id
        raise AssertionError(f"no end of run within {timeout} s; events: {[e['type'] for e in events]}")
    finally:
        ws.close()


def mp4s(comfy, prompt_id) -> list[Path]:
    history = headless.finished_history(headless.ComfyClient(comfy.url), prompt_id)
    files = [comfy.output / e.get("subfolder", "") / e["filename"] for _, e in headless.output_files(history)]
    return [f for f in files if f.suffix == ".mp4"]


def check_video(path: Path, frames: int, width: int, height: int) -> None:
    video, fps = read_mp4(path)
    assert video.shape == (frames, height, width, 3), f"{path.name}: {tuple(video.shape)}"
    assert fps == 16.0


# ---- the pack in ComfyUI ----------------------------------------------------------------------------

def test_nodes_are_registered_without_import_failure(comfy):
    info = comfy.get("/object_info")
    assert SALT_NODES <= set(info)
    assert all(info[n]["category"] == "Salt" for n in SALT_NODES)
    log = comfy.log_text()
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and "salt" in line.lower()], log[-3000:]
    assert "self_forcing_dmd.pt" in info["SaltModelLoader"]["input"]["required"]["model_name"][0]


def test_workflow_templates_lists_and_serves_the_examples(comfy):
    templates = comfy.get("/api/workflow_templates")
    assert sorted(templates["salt-comfyui"]) == NAMES == sorted(EMBEDDED + WAN + RELEASES)
    for name in NAMES:
        served = comfy.get(f"/api/workflow_templates/salt-comfyui/{name}.json")
        assert served == json.loads((EXAMPLES / f"{name}.json").read_text())
        assert comfy.get(f"/api/workflow_templates/salt-comfyui/{name}.jpg")[:2] == b"\xff\xd8"


@pytest.mark.parametrize("name", NAMES)
def test_ui_example_converts_to_its_api_copy_with_the_servers_object_info(comfy, name):
    ui = json.loads((EXAMPLES / f"{name}.json").read_text())
    assert ui_to_api(ui, comfy.get("/object_info")) == api_copy(name)


# ---- every example workflow ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_example_makes_its_video(comfy, name):
    prompt = api_copy(name)
    sampler = node_of(prompt, "SaltSampler")["inputs"]
    kind, events, previews, prompt_id = run(comfy, prompt)
    assert kind == "execution_success", events[-1]
    [video] = mp4s(comfy, prompt_id)
    check_video(video, sampler["frames"], sampler["width"], sampler["height"])
    chunks = [e for e in events if e["type"] == "progress" and
              prompt[e["data"]["node"]]["class_type"] == "SaltSampler"]
    assert len(chunks) >= 3 and chunks[-1]["data"]["value"] == chunks[-1]["data"]["max"]
    assert previews >= len(chunks)  # one latent preview per chunk (server started with --preview-method auto)


def test_headless_command_runs_a_ui_workflow(comfy, tmp_path):
    ui = EXAMPLES / "salt_t2v_embedded_default.json"
    cmd = [sys.executable, "-m", "salt_core.comfyui_client", "--server", comfy.url, str(ui), "--out", str(tmp_path),
           "--set", "SaltSampler.seed=99", "--set", "SaltSampler.frames=9"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    [video] = list(tmp_path.rglob("*.mp4"))
    check_video(video, 9, 64, 64)


def wan_with_standins(name: str, frames: int = 9) -> dict:
    """The Wan / release template with the umT5 text encoder swapped for the embedded default's (no 11 GB download
    in a test); the DiT, LoRA and VAE files are the stand-ins conftest wrote under the template's file names."""
    prompt = copy.deepcopy(api_copy(name))
    clip_id = next(k for k, n in prompt.items() if n["class_type"] == "CLIPLoader")
    del prompt[clip_id]
    prompt["900"] = {"class_type": "SaltModelLoader", "inputs": {"model_name": "(embedded default)", "dtype": "auto",
                                                                  "attention": "sdpa", "device": "auto", "offload": True}}
    for text_id in [k for k, n in prompt.items() if n["class_type"] == "CLIPTextEncode"]:
        text = prompt[text_id]["inputs"]["text"]
        prompt[text_id] = {"class_type": "SaltTextEncode", "inputs": {"model": ["900", 0], "text": text}}
    node_of(prompt, "SaltSampler")["inputs"].update(width=64, height=48, frames=frames)
    return prompt


def student_loader(prompt: dict) -> dict:
    """The template's own SaltModelLoader inputs (not the embedded one standing in for umT5)."""
    [n] = [n for k, n in prompt.items() if n["class_type"] == "SaltModelLoader" and k != "900"]
    return n["inputs"]


def shown(events, prompt: dict, class_type: str) -> str:
    """The text a node showed in the UI during the run (its `executed` message)."""
    ids = {k for k, n in prompt.items() if n["class_type"] == class_type}
    return "\n".join(t for e in events if e["type"] == "executed" and e["data"]["node"] in ids
                     for t in (e["data"].get("output") or {}).get("text", []))


@pytest.mark.parametrize("name", WAN)
def test_wan_template_runs_with_standin_weights(comfy, name):
    kind, events, _, prompt_id = run(comfy, wan_with_standins(name))
    assert kind == "execution_success", events[-1]
    videos = mp4s(comfy, prompt_id)
    assert len(videos) == (2 if "mix" in name else 1)
    for video in videos:
        check_video(video, 9, 64, 48)


@pytest.mark.parametrize("name", RELEASES)
def test_release_template_runs_with_standin_weights(comfy, name):
    """Salt-CF (EMA), Salt-LL (regular weights: the EMA entry of the stand-in is NaN, so loading it would fail;
    sink 3 + window 6 as trained) and LongLive (its LoRA through SaltLoraLoader, a prompt switch with re-cache)."""
    prompt = wan_with_standins(name, frames=33)  # 9 latent frames: 3 chunks
    for n in prompt.values():
        if n["class_type"] == "SaltPromptSchedule" and n["inputs"]["start_frame"]:
            n["inputs"]["start_frame"] = 13  # latent frame 3: the second chunk
    kind, events, _, prompt_id = run(comfy, prompt)
    assert kind == "execution_success", events[-1]
    [video] = mp4s(comfy, prompt_id)
    check_video(video, 33, 64, 48)
    loader = shown(events, prompt, "SaltModelLoader")
    family = {"salt_cf": "salt-cf", "salt_ll": "salt-ll", "longlive_prompt_switch": "longlive"}[name]
    assert f"family {family}" in loader, loader
    if name != "salt_cf":
        assert "sink 3 + window 6" in loader and "using 'generator'" in loader
    if name == "longlive_prompt_switch":
        assert node_of(prompt, "SaltLoraLoader")["inputs"]["lora_name"] == "lora.pt"


def test_an_fp8_file_samples_through_our_loader(comfy):
    prompt = wan_with_standins("salt_wan_self_forcing")
    student_loader(prompt).update(model_name="self_forcing_dmd_fp8_scaled.safetensors", family="self-forcing")
    kind, events, _, prompt_id = run(comfy, prompt)
    assert kind == "execution_success", events[-1]
    check_video(mp4s(comfy, prompt_id)[0], 9, 64, 48)
    loader = shown(events, prompt, "SaltModelLoader")  # the embedded loader shows no family
    assert "family self-forcing" in loader and "8-bit tensors dequantised" in loader, loader


def test_a_family_that_contradicts_the_file_is_a_node_error_and_the_server_lives_on(comfy):
    prompt = wan_with_standins("salt_ll")
    student_loader(prompt)["family"] = "salt-export"  # a header this file does not have
    kind, events, _, _ = run(comfy, prompt)
    assert kind == "execution_error"
    data = events[-1]["data"]
    assert data["node_type"] == "SaltModelLoader" and "salt_ll.pt" in data["exception_message"]
    assert "family 'salt-export' reads its settings from this project's header" in data["exception_message"]
    assert comfy.get("/system_stats")["system"]


@pytest.mark.parametrize("name", WAN)
def test_wan_template_without_its_files_gets_node_errors(comfy, name):
    prompt = api_copy(name)
    for n in prompt.values():
        for key in ("model_name", "clip_name", "vae_name"):
            if key in n["inputs"]:
                n["inputs"][key] = "missing_" + n["inputs"][key]
    status, body = comfy.post("/prompt", {"prompt": prompt})
    assert status == 400
    text = headless.format_node_errors(body)
    assert "missing_self_forcing_dmd.pt" in text and "missing_wan_2.1_vae.safetensors" in text


# ---- stopping and bad input ---------------------------------------------------------------------------

def test_interrupt_stops_a_long_run(comfy):
    prompt = api_copy("salt_long_video_sink_window")
    node_of(prompt, "SaltSampler")["inputs"].update(frames=4 * 299 + 1, seed=123)  # 300 latent frames, 100 chunks
    sent = {}

    def interrupt_after_two_chunks(msg, client, prompt_id):
        if msg["type"] == "progress" and msg["data"]["value"] >= 2 and not sent:
            sent["at"] = time.monotonic()
            comfy.post("/interrupt", {"prompt_id": prompt_id})

    kind, events, _, prompt_id = run(comfy, prompt, timeout=300, on_event=interrupt_after_two_chunks)
    assert kind == "execution_interrupted" and sent
    assert time.monotonic() - sent["at"] < 30
    assert max(e["data"]["value"] for e in events if e["type"] == "progress") < 100
    assert mp4s(comfy, prompt_id) == []
    assert comfy.get("/queue")["queue_running"] == []


@pytest.mark.parametrize("change, node, message", [
    ({"SaltSampler": {"frames": 16}}, "SaltSampler", "4k+1"),
    ({"SaltSampler": {"width": 40}}, "SaltSampler", "multiple of 16"),
    ({"SaltModelLoader": {"model_name": "broken.safetensors"}}, "SaltModelLoader", "broken.safetensors"),
])
def test_bad_input_is_a_node_error_and_the_server_lives_on(comfy, change, node, message):
    prompt = api_copy("salt_t2v_embedded_default")
    for class_type, inputs in change.items():
        node_of(prompt, class_type)["inputs"].update(inputs)
    kind, events, _, _ = run(comfy, prompt)
    assert kind == "execution_error"
    data = events[-1]["data"]
    assert data["node_type"] == node and message in data["exception_message"]
    assert comfy.get("/system_stats")["system"]


def test_unknown_cache_policy_is_refused_before_running(comfy):
    prompt = api_copy("salt_long_video_sink_window")
    node_of(prompt, "SaltCachePolicy")["inputs"]["policy"] = "lru"
    status, body = comfy.post("/prompt", {"prompt": prompt})
    assert status == 400 and "policy" in headless.format_node_errors(body)


def test_converter_reads_comfyuis_own_template_workflows(comfy):
    """The frontend-saved templates shipped with ComfyUI (comfyui-workflow-templates): each converts, or is
    refused with a WorkflowError (subgraphs, nodes missing on this server); converted ones have every
    required input."""
    from salt_core.comfyui_client.workflow import WorkflowError, is_ui_workflow

    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    where = subprocess.run([python, "-c", "import comfyui_workflow_templates as t, os; "
                                          "print(os.path.join(os.path.dirname(t.__file__), 'templates'))"],
                           capture_output=True, text=True)
    if where.returncode:
        pytest.skip("comfyui-workflow-templates is not installed in ComfyUI's environment")
    info = comfy.get("/object_info")
    converted, refused = 0, 0
    for path in sorted(Path(where.stdout.strip()).glob("*.json")):
        workflow = json.loads(path.read_text())
        if not is_ui_workflow(workflow):
            continue  # index files
        try:
            prompt = ui_to_api(workflow, info)
        except WorkflowError:
            refused += 1
            continue
        converted += 1
        for nid, n in prompt.items():
            missing = set(info[n["class_type"]]["input"].get("required") or {}) - set(n["inputs"])
            assert not missing, f"{path.name}: node {nid} ({n['class_type']}) lacks {missing}"
    assert converted >= 100 and converted > 5 * refused
