"""WanDiT.forward with a frame mask equals the forward it replaced (frame mask expanded to [L, L] tokens, masked
SDPA), in its output and in the gradients w.r.t. inputs and parameters, and never allocates a token-level mask.

Tolerance: fp32, 1e-5 relative to the largest reference value."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from salt_core.dit.attention import Attention, sdpa
from salt_core.dit.frame_mask import FrameMask
from salt_core.kv_cache import CachePolicy
from training.losses.critic import teacher_forcing_inputs

from conftest import rel_err

HW = (4, 6)  # latent H x W: 2 x 3 = 6 tokens per frame with the tiny model's 2 x 2 patches


class DenseMaskSDPA(Attention):
    """The replaced path, as the reference: the frame mask expanded to tokens, then masked SDPA."""

    def __call__(self, q, k, v, mask=None):
        if isinstance(mask, FrameMask):
            n = mask.tokens_per_frame
            mask = mask.table.repeat_interleave(n, 0).repeat_interleave(n, 1)  # [L, L]
        return sdpa(q, k, v, mask)


def inputs(T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 16, T, *HW, generator=g)
    t = torch.rand(2, T, generator=g) * 1000  # per-frame timesteps
    return x, t, torch.randn(2, 5, 32, generator=g)


def teacher_forcing(T: int, chunk: int, policy: CachePolicy):
    x0, t, ctx = inputs(T, seed=1)
    x_t = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    x_in, t_in, mask, pos = teacher_forcing_inputs(x0, x_t, t, chunk_frames=chunk, policy=policy)
    return x_in, t_in, ctx, mask, pos  # [B, C, 2T, H, W], [B, 2T], [2T, 2T], [2T]


def policy_case(policy: CachePolicy, T: int, chunk: int):
    x, t, ctx = inputs(T)
    return x, t, ctx, policy.frame_mask(T, chunk), None


POLICIES = {
    "full": CachePolicy("full"),
    "window": CachePolicy("window", window_frames=4),
    "sink_window": CachePolicy("sink_window", sink_frames=1, window_frames=2),
}
CASES = {
    **{f"{name}_chunk{c}": (lambda p=p, c=c: policy_case(p, 9 if c == 3 else 6, c))
       for name, p in POLICIES.items() for c in (1, 3)},
    "teacher_forcing_full": lambda: teacher_forcing(6, 3, POLICIES["full"]),
    "teacher_forcing_window": lambda: teacher_forcing(9, 3, POLICIES["window"]),
}


def output_and_grads(model, x, t, ctx, mask, pos):
    x, ctx = x.clone().requires_grad_(), ctx.clone().requires_grad_()
    v = model(x, t, ctx, frame_mask=mask, frame_positions=pos)
    weights = torch.randn(v.shape, generator=torch.Generator().manual_seed(7)).to(v.device)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad((v * weights).sum(), [x, ctx, *params])
    return v.detach(), grads


@pytest.mark.parametrize("name", list(CASES))
def test_masked_forward_and_gradients_equal_the_dense_mask_reference(tiny_dit, name):
    case = CASES[name]()
    out, grads = output_and_grads(tiny_dit, *case)
    tiny_dit.attention = DenseMaskSDPA()
    ref, ref_grads = output_and_grads(tiny_dit, *case)
    assert rel_err(out, ref) <= 1e-5
    assert len(grads) == len(ref_grads)
    for got, want in zip(grads, ref_grads):
        assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("name", ["full_chunk3", "teacher_forcing_window"])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_dit, name):
    case = CASES[name]()
    out, grads = output_and_grads(tiny_dit, *case)
    tiny_dit.gradient_checkpointing = True
    out_ckpt, grads_ckpt = output_and_grads(tiny_dit, *case)
    assert torch.equal(out, out_ckpt)
    for a, b in zip(grads, grads_ckpt):
        assert rel_err(a, b) <= 1e-6


class TensorShapes(TorchDispatchMode):
    """Records (shape, dtype) of every tensor an ATen op returns."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor):
                self.seen.append((tuple(o.shape), o.dtype))
        return out


def test_no_token_level_mask_or_score_matrix_is_allocated_forward_or_backward(tiny_dit):
    x_in, t_in, ctx, mask, pos = teacher_forcing(6, 3, POLICIES["full"])
    L = x_in.shape[2] * (HW[0] // 2) * (HW[1] // 2)  # 72 tokens
    x_in.requires_grad_()
    with TensorShapes() as rec:
        tiny_dit(x_in, t_in, ctx, frame_mask=mask, frame_positions=pos).square().sum().backward()
    assert rec.seen, "the recorder saw no op"
    assert not [s for s in rec.seen if s[0][-2:] == (L, L)]
    assert not [s for s in rec.seen if s[1] == torch.bool and torch.Size(s[0]).numel() >= L * L]
    # the recorder would have caught the replaced path
    tiny_dit.attention = DenseMaskSDPA()
    with torch.no_grad(), TensorShapes() as rec:
        tiny_dit(x_in, t_in, ctx, frame_mask=mask, frame_positions=pos)
    assert ((L, L), torch.bool) in rec.seen


@torch.no_grad()
def test_bidirectional_forward_is_plain_sdpa_bit_for_bit(tiny_dit):
    x, t, ctx = inputs(4)
    out = tiny_dit(x, t, ctx)
    everything = tiny_dit(x, t, ctx, frame_mask=torch.ones(4, 4, dtype=torch.bool))
    tiny_dit.attention = DenseMaskSDPA()
    assert torch.equal(out, tiny_dit(x, t, ctx))
    assert torch.equal(everything, out)


def test_a_bad_frame_mask_is_refused_before_any_block_runs(tiny_dit):
    x, t, ctx = inputs(6)
    mask = CachePolicy("full").frame_mask(6, 3)
    mask[2] = False
    calls = []
    tiny_dit.blocks[0].register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=r"frame_mask rows \[2\] allow no key frame: every query frame must attend"):
        tiny_dit(x, t, ctx, frame_mask=mask)
    with pytest.raises(ValueError, match=r"frame_mask must be bool \(True = may attend\), got dtype torch.float32"):
        tiny_dit(x, t, ctx, frame_mask=torch.ones(6, 6))
    with pytest.raises(ValueError, match=r"frame_mask must be \[6, 6\], got \(5, 5\)"):
        tiny_dit(x, t, ctx, frame_mask=torch.ones(5, 5, dtype=torch.bool))
    assert calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the FlexAttention path runs on CUDA")
def test_on_cuda_the_flex_attention_forward_and_gradients_equal_the_dense_mask_reference(tiny_dit):
    model = tiny_dit.cuda()
    case = [c.cuda() if isinstance(c, torch.Tensor) else c for c in CASES["teacher_forcing_window"]()]
    out, grads = output_and_grads(model, *case)
    assert model.attention._flex_failed is None  # FlexAttention served the masked calls
    model.attention = DenseMaskSDPA()
    ref, ref_grads = output_and_grads(model, *case)
    assert rel_err(out, ref) <= 1e-3  # fp32 on the GPU: FlexAttention's tiling vs SDPA's
    for got, want in zip(grads, ref_grads):
        assert rel_err(got, want) <= 1e-3
