"""Block swap (salt_core.dit.offload): some blocks resident, the others streamed in per forward pass. On a CPU both
devices are the CPU, so the streaming is real copies and the outputs must equal the resident model's bit for bit;
with the compute device `meta` under strict device checks, every streamed tensor must reach the compute device."""
import copy

import pytest
import torch
from torch import nn

from salt_core.config import DiTConfig
from salt_core.dit import WanDiT
from salt_core.dit.offload import check_blocks_on_device, enable_block_swap, resident_modules
from salt_core.kv_cache import CachePolicy
from salt_core.lora.patches import LowRankPatch
from salt_core.quant import quantize_linears_
from salt_core.sampling import ChunkLayout, Walk, stream_ar
from salt_core.schedules import StepGrid

from _strict_devices import META, StrictDevices
from conftest import perturbed

CONFIG = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=4, text_dim=32, text_len=16)
GRID = StepGrid.from_timesteps([1000.0, 750.0, 500.0, 250.0], 5.0)


def model_pair(seed=0):
    torch.manual_seed(seed)
    model = perturbed(WanDiT(CONFIG), seed)
    return model, copy.deepcopy(model)


def inputs(frames=3):
    g = torch.Generator().manual_seed(5)
    return (torch.randn(1, 16, frames, 8, 8, generator=g), torch.tensor([700.0]), torch.randn(1, 7, 32, generator=g))


@pytest.mark.parametrize("resident", [1, 3])
def test_bidirectional_forward_is_bit_identical_and_streams_each_block_once(resident):
    swapped, ref = model_pair()
    x, t, ctx = inputs()
    swap = enable_block_swap(swapped, resident, "cpu")
    with torch.no_grad():
        want, got = ref(x, t, ctx), swapped(x, t, ctx)
        assert torch.equal(got, want)
        assert swap.loads == 4 - resident
        assert torch.equal(swapped(x, t, ctx), want)  # a second pass: same result, the same blocks again
    assert swap.loads == 2 * (4 - resident)


def test_chunked_causal_sampling_is_bit_identical():
    swapped, ref = model_pair(1)
    _, _, ctx = inputs()
    enable_block_swap(swapped, 2, "cpu")
    args = dict(layout=ChunkLayout(9, (8, 8), 3), walk=Walk(GRID), policy=CachePolicy("window", window_frames=3),
                seed=4)
    want = [c.latents for c in stream_ar(ref, ctx, **args)]
    got = [c.latents for c in stream_ar(swapped, ctx, **args)]
    assert len(got) == 3
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_lora_patches_and_8bit_weights_stream_with_their_block():
    swapped, _ = model_pair(2)
    quantize_linears_(swapped)
    g = torch.Generator().manual_seed(3)
    for block in swapped.blocks:
        q = block.self_attn.q
        q.patches = nn.ModuleList([LowRankPatch(0.1 * torch.randn(64, 4, generator=g), 0.1 * torch.randn(4, 64, generator=g), 0.5)])
    ref = copy.deepcopy(swapped)
    x, t, ctx = inputs()
    enable_block_swap(swapped, 1, "cpu")
    with torch.no_grad():
        assert torch.equal(swapped(x, t, ctx), ref(x, t, ctx))


def test_a_streamed_block_computes_on_copies_and_rests_on_its_own_tensors():
    swapped, _ = model_pair()
    swap = enable_block_swap(swapped, 1, "cpu")
    block = swapped.blocks[2]
    resting = {n: p.data_ptr() for n, p in block.named_parameters()}
    seen = {}

    def record(module, args):
        seen.update({n: p.data_ptr() for n, p in module.named_parameters()})

    handle = block.register_forward_pre_hook(record)
    x, t, ctx = inputs()
    with torch.no_grad():
        swapped(x, t, ctx)
    handle.remove()
    assert seen.keys() == resting.keys()
    assert all(seen[n] != resting[n] for n in resting)  # it ran on fresh copies...
    assert {n: p.data_ptr() for n, p in block.named_parameters()} == resting  # ...and points back after
    assert swap._copies == {} and swap._at_rest == {}  # nothing left on the device between passes


def test_a_pass_that_fails_midway_leaves_the_blocks_at_rest():
    swapped, ref = model_pair()
    swap = enable_block_swap(swapped, 1, "cpu")
    resting = [p.data_ptr() for p in swapped.blocks[3].parameters()]

    def boom(module, args):
        raise KeyboardInterrupt

    handle = swapped.blocks[2].register_forward_pre_hook(boom)
    x, t, ctx = inputs()
    with torch.no_grad(), pytest.raises(KeyboardInterrupt):
        swapped(x, t, ctx)
    handle.remove()
    assert swap._copies == {} and swap._at_rest == {}
    assert [p.data_ptr() for p in swapped.blocks[3].parameters()] == resting
    with torch.no_grad():
        assert torch.equal(swapped(x, t, ctx), ref(x, t, ctx))


def test_every_streamed_tensor_reaches_the_compute_device():
    """Compute on `meta` (a stand-in second device, strict like CUDA), weights stored on the CPU."""
    swapped, _ = model_pair()
    swap = enable_block_swap(swapped, 1, META)
    assert all(p.device.type == "cpu" for i in swap.streamed for p in swapped.blocks[i].parameters())
    assert all(p.is_meta for m in resident_modules(swapped) for p in m.parameters())
    x, t, ctx = (a.to(META) for a in inputs())
    with torch.no_grad(), StrictDevices() as strict:
        v = swapped(x, t, ctx)
        cache = swapped.new_cache(CachePolicy("window", window_frames=3), batch=1, latent_hw=(8, 8), chunk_frames=3)
        swapped.set_prompt(cache, ctx)
        swapped.forward_chunk(x, t, cache, [0, 1, 2], commit=True)
    assert v.shape == x.shape and v.is_meta and strict.calls > 100
    assert all(p.device.type == "cpu" for i in swap.streamed for p in swapped.blocks[i].parameters())


def test_gradients_are_refused():
    swapped, _ = model_pair()
    enable_block_swap(swapped, 2, "cpu")
    x, t, ctx = inputs()
    with pytest.raises(RuntimeError, match="inference only.*torch.no_grad"):
        swapped(x, t, ctx)


def test_blocks_on_device_is_checked_against_the_depth():
    model, _ = model_pair()
    with pytest.raises(ValueError, match=r"blocks_on_device must be a whole number from 0 to 4 \(this model has 4"):
        enable_block_swap(model, 5, "cpu")
    with pytest.raises(ValueError, match="from 0 to 4"):
        check_blocks_on_device(-1, 4)
    with pytest.raises(ValueError, match="got True"):
        check_blocks_on_device(True, 4)
    assert model.block_swap is None
    for everything in (0, 4):  # all blocks resident: no swap
        assert enable_block_swap(model, everything, "cpu") is None and model.block_swap is None
        assert resident_modules(model) == [model]


def test_a_copy_of_a_swapped_model_has_no_swap_but_equal_outputs():
    swapped, ref = model_pair()
    enable_block_swap(swapped, 1, "cpu")
    clone = copy.deepcopy(swapped)  # as apply_lora copies a model
    assert clone.block_swap is None and swapped.block_swap is not None
    x, t, ctx = inputs()
    with torch.no_grad():
        assert torch.equal(clone(x, t, ctx), ref(x, t, ctx))
