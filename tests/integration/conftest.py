"""A real ComfyUI server with this pack in its custom_nodes, for the integration tests.

Runs only when COMFYUI_PATH (a ComfyUI checkout) is set; COMFYUI_PYTHON is the interpreter of its
environment (default: this one). The server gets a temporary base directory (custom_nodes holds a
symlink to this repository; models, input, output, user live there too), so nothing is written into
the repository or the ComfyUI checkout. It listens on 127.0.0.1 only.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACK_FOLDER = "salt-comfyui"  # the folder name a `git clone` of the repository gives


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, base: Path, url: str, process: subprocess.Popen, log: Path):
        self.base, self.url, self.process, self.log = base, url, process, log

    def get(self, path: str, timeout: float = 30.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            data = r.read()
        return json.loads(data) if data[:1] in (b"{", b"[") else data

    def post(self, path: str, body: dict, timeout: float = 30.0):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = r.read()
                return r.status, (json.loads(data) if data else None)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def output(self) -> Path:
        return self.base / "output"


@pytest.fixture(scope="session")
def comfy_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("comfyui-base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_FOLDER).symlink_to(ROOT, target_is_directory=True)
    (base / "custom_nodes" / "salt_test_probe.py").symlink_to(Path(__file__).with_name("_probe_nodes.py"))
    for sub in ("models/diffusion_models", "models/vae", "models/text_encoders", "models/salt", "models/loras",
                "output", "input"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "models" / "diffusion_models" / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{oops}")
    return base


def make_wan_standins(models: Path, text_dim: int) -> None:
    """Files under the Wan template's names, small enough for a CPU: a tiny causal DiT in the Self Forcing
    trainer format (generator / generator_ema, `model.` prefix) and a randomly initialised full-size
    Wan 2.1 VAE (what ComfyUI's VAELoader accepts). Random weights: the videos are noise, the plumbing is real."""
    import torch
    from safetensors.torch import save_file

    from salt_core.config import DiTConfig
    from salt_core.dit import WanDiT
    from salt_core.vae import WanVAE, vae_preset

    torch.manual_seed(0)
    dit = WanDiT(DiTConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=2, text_dim=text_dim))
    sd = {f"model.{k}": v.clone() for k, v in dit.state_dict().items()}
    torch.save({"generator": sd, "generator_ema": sd}, models / "diffusion_models" / "self_forcing_dmd.pt")
    vae = WanVAE(vae_preset("wan2.1-vae"))
    save_file({k: v.half().contiguous() for k, v in vae.state_dict().items()}, str(models / "vae" / "wan_2.1_vae.safetensors"))
    make_release_standins(models, dit)


def make_release_standins(models: Path, dit) -> None:
    """The release templates' files (salt_cf.pt, salt_ll.pt, longlive_base.pt + loras/lora.pt) holding the same tiny
    stand-in DiT, and an fp8 copy of it. salt_ll.pt's EMA entry is poisoned with NaN: its template samples only if
    the loader takes the regular weights, as Salt's authors do."""
    import torch
    from safetensors.torch import save_file

    from salt_core.quant import comfyui_fp8_state_dict

    sd = {f"model.{k}": v.clone() for k, v in dit.state_dict().items()}
    poisoned = {k: torch.full_like(v, float("nan")) for k, v in sd.items()}
    folder = models / "diffusion_models"
    torch.save({"generator": sd, "generator_ema": sd}, folder / "salt_cf.pt")
    torch.save({"generator": sd, "generator_ema": poisoned}, folder / "salt_ll.pt")
    torch.save({"generator": sd, "generator_ema": poisoned}, folder / "longlive_base.pt")
    g = torch.Generator().manual_seed(3)
    lora = {}
    for name, m in dit.named_modules():
        if isinstance(m, torch.nn.Linear) and name.startswith("blocks."):
            lora[f"base_model.model.{name}.lora_A.weight"] = torch.randn(8, m.in_features, generator=g) * 0.05
            lora[f"base_model.model.{name}.lora_B.weight"] = torch.randn(m.out_features, 8, generator=g) * 0.05
    torch.save({"generator_lora": lora, "step": 1}, models / "loras" / "lora.pt")
    save_file(comfyui_fp8_state_dict(dit, scaled=True), str(folder / "self_forcing_dmd_fp8_scaled.safetensors"))


@pytest.fixture(scope="session")
def embedded_text_dim() -> int:
    from salt_core.pipeline import load_salt_model

    return load_salt_model(None).dit.config.text_dim


@pytest.fixture(scope="session")
def comfy(comfy_base, embedded_text_dim) -> ComfyServer:
    make_wan_standins(comfy_base / "models", embedded_text_dim)
    comfy_path = Path(os.environ["COMFYUI_PATH"])
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    port = _free_port()
    log = comfy_base / "server.log"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)  # the pack must find salt_core on its own (plain git-clone install)
    cmd = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory",
           str(comfy_base), "--disable-auto-launch", "--preview-method", "auto", "--log-stdout"]
    with open(log, "w") as f:
        process = subprocess.Popen(cmd, cwd=comfy_path, stdout=f, stderr=subprocess.STDOUT, env=env)
    server = ComfyServer(comfy_base, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            pytest.fail(f"ComfyUI exited with {process.returncode}:\n{server.log_text()[-4000:]}")
        try:
            server.get("/system_stats", timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"ComfyUI did not start within 300 s:\n{server.log_text()[-4000:]}")
            time.sleep(1)
    yield server
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
