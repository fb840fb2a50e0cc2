"""The nodes' model placement (nodes/memory.py): through ComfyUI's model management when the host has it (a stand-in
ModelPatcher / load_models_gpu here that records what it is given; the real one runs in tests/integration), plain
moves otherwise; block swap from the loader; device and block-count errors before any compute."""
import sys
import types

import pytest
import torch

from test_nodes import N, fake_comfy, outputs  # noqa: F401  (fixtures)

MEMORY = "salt_pack_under_test.nodes.memory"


@pytest.fixture
def comfy_mm(fake_comfy, monkeypatch):  # noqa: F811
    """ComfyUI's model management API as far as the nodes use it: ModelPatcher(model, load_device, offload_device,
    size) and load_models_gpu(models, memory_required, force_full_load), which loads fully and says where."""
    made, loads = [], []

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0):
            self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size
            made.append(self)

    def load_models_gpu(models, memory_required=0, force_full_load=False):
        for p in models:
            p.model.to(p.load_device)
            p.model.device = p.load_device
        loads.append(([type(p.model).__name__ for p in models], memory_required, force_full_load))

    sys.modules["comfy.model_management"].load_models_gpu = load_models_gpu
    patcher = types.ModuleType("comfy.model_patcher")
    patcher.ModelPatcher = ModelPatcher
    monkeypatch.setitem(sys.modules, "comfy.model_patcher", patcher)
    return {"made": made, "loads": loads}


def embedded(N, **kw):  # noqa: F811
    return outputs(N["SaltModelLoader"]().load("(embedded default)", **kw))[0]


def encode(N, model):  # noqa: F811
    out = N["SaltTextEncode"]().encode(model, "a red circle moves left")
    return out["result"][0] if isinstance(out, dict) else out[0]


def sample(N, model, cond, seed=3):  # noqa: F811
    return N["SaltSampler"]().sample(model, 32, 32, 9, seed=seed, conditioning=cond)[0]["samples"]


def tensor_bytes(module):
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


@pytest.fixture(scope="module")
def reference(N):  # noqa: F811
    """Latents of the embedded default sampled with plain moves and every block resident."""
    model = embedded(N, offload=False)
    cond = encode(N, model)
    return cond, sample(N, model, cond)


def test_sampling_loads_the_dit_through_comfyuis_model_management(N, comfy_mm, reference):  # noqa: F811
    cond, want = reference
    model = embedded(N)
    got = [sample(N, model, cond), sample(N, model, cond, seed=4)]
    assert torch.equal(got[0], want)
    [patcher] = comfy_mm["made"]  # one patcher per loaded model, reused by every run
    assert patcher is model.salt_patcher and patcher.model.parts["diffusion_model"] is model.dit
    assert patcher.size == tensor_bytes(model.dit)
    assert (patcher.load_device, patcher.offload_device) == (torch.device("cpu"), torch.device("cpu"))
    assert [names for names, _, _ in comfy_mm["loads"]] == [["SaltDiT"], ["SaltDiT"]]  # loaded before each run
    assert all(required > 0 for _, required, _ in comfy_mm["loads"])
    assert model.dit.run_device == torch.device("cpu")  # the patcher's device is the DiT's compute device


def test_block_swap_in_comfyui_hands_it_only_the_resident_modules(N, comfy_mm, reference):  # noqa: F811
    cond, want = reference
    plain = embedded(N)
    sample(N, plain, cond)
    model = embedded(N, blocks_on_device=1)
    assert torch.equal(sample(N, model, cond), want)
    patcher = model.salt_patcher
    managed = {id(p) for p in patcher.model.parameters()}
    streamed = list(model.dit.blocks)[1:]
    assert streamed and not managed & {id(p) for b in streamed for p in b.parameters()}  # not ComfyUI's to move
    assert {id(p) for p in model.dit.blocks[0].parameters()} <= managed
    assert patcher.size == tensor_bytes(model.dit) - sum(tensor_bytes(b) for b in streamed)
    (_, plain_required, _), (_, swap_required, _) = comfy_mm["loads"]
    assert swap_required - plain_required == 2 * model.dit.block_swap.block_bytes()  # two blocks in flight


def test_block_swap_without_comfyui_samples_the_same_latents(N, reference):  # noqa: F811
    cond, want = reference
    model = embedded(N, blocks_on_device=1)
    assert torch.equal(sample(N, model, cond), want)
    assert model.dit.block_swap is not None and model.dit.block_swap.loads > 0


def test_a_block_count_above_the_depth_is_refused_naming_the_setting(N):  # noqa: F811
    depth = len(embedded(N).dit.blocks)
    with pytest.raises(ValueError, match=rf"blocks_on_device must be a whole number from 0 to {depth} \(this model "
                                         rf"has {depth} transformer blocks; 0 keeps all of them on the device\), "
                                         rf"got {depth + 1}"):
        embedded(N, blocks_on_device=depth + 1)


@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_a_device_this_machine_lacks_is_refused_naming_what_is_allowed(N, device):  # noqa: F811
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=rf"device '{device}' was chosen but no CUDA GPU is available; "
                                         r"allowed here: auto, cpu$"):
        embedded(N, device=device)
    with pytest.raises(ValueError, match="allowed here: auto, cpu"):
        N["SaltVAELoader"]().load("(embedded default)", device=device)


def test_decoding_loads_the_vae_whole_through_comfyuis_model_management(N, comfy_mm):  # noqa: F811
    vae = N["SaltVAELoader"]().load("(embedded default)")[0]
    z = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    want = N["SaltDecode"]().decode({"samples": z}, vae, chunk_frames=1)[0]
    assert torch.equal(N["SaltDecode"]().decode({"samples": z}, vae, chunk_frames=1)[0], want)
    [patcher] = comfy_mm["made"]
    assert patcher is vae.salt_patcher and set(patcher.model.parts) == {n for n, _ in vae.named_children()}
    assert [(names, full) for names, _, full in comfy_mm["loads"]] == [(["SaltVAE"], True)] * 2
    assert comfy_mm["loads"][0][1] > 0


def test_decoding_outside_comfyui_equals_decoding_inside(N, comfy_mm):  # noqa: F811
    vae = N["SaltVAELoader"]().load("(embedded default)")[0]
    z = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    inside = N["SaltDecode"]().decode({"samples": z}, vae, chunk_frames=2)[0]
    del sys.modules["comfy.model_patcher"]
    assert torch.equal(N["SaltDecode"]().decode({"samples": z}, vae, chunk_frames=2)[0], inside)


@pytest.mark.parametrize("kind", ["window", "full"])
def test_the_sampling_estimate_covers_the_kv_cache_it_allocates(N, kind):  # noqa: F811
    """The 1.3B at 832x480, 21 latent frames in chunks of 3: the estimate holds the whole cache (meta tensors: no
    memory used) and grows with the video only when the cache does."""
    from salt_core.config import dit_preset
    from salt_core.dit import WanDiT
    from salt_core.kv_cache import CachePolicy
    from salt_core.sampling import ChunkLayout, Walk
    from salt_core.sampling.settings import SamplingPlan
    from salt_core.schedules import StepGrid

    sampling_bytes = sys.modules[MEMORY].sampling_bytes
    with torch.device("meta"):
        dit = WanDiT(dit_preset("wan2.1-t2v-1.3b")).to(torch.bfloat16)
    policy = CachePolicy("window", window_frames=6) if kind == "window" else CachePolicy("full", max_frames=1024)
    estimate = {}
    for frames in (21, 42):
        plan = SamplingPlan(Walk(StepGrid.from_timesteps([1000.0], 5.0)), True, ChunkLayout(frames, (60, 104), 3), policy)
        estimate[frames] = sampling_bytes(dit, plan, frames, (60, 104))
    if kind == "window":  # allocated whole up front: window + one chunk
        held = dit.new_cache(policy, batch=1, latent_hw=(60, 104), chunk_frames=3).memory_bytes()
    else:  # grows to the video: layers, K and V, frames + a chunk, tokens per frame, dim, bf16
        held = 30 * 2 * (21 + 3) * 1560 * 1536 * 2
    assert held <= estimate[21] <= held + 2 * 2**30
    if kind == "window":
        assert estimate[42] == estimate[21]
    else:
        assert estimate[42] > 1.8 * estimate[21] - 2 * 2**30
