"""FrameMask attention: chunked keys and FlexAttention equal masked SDPA with the frame mask expanded to tokens
(built here only, as the reference), and the dispatch picks FlexAttention on CUDA or says why not.

Tolerance: fp32, 1e-5 relative to the largest reference value (the same scores, another summation order)."""
import logging
import sys
import types
import importlib.machinery

import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from salt_core.dit import frame_attention
from salt_core.dit.attention import Attention, sdpa
from salt_core.dit.frame_attention import chunked_key_attention, flex_frame_attention
from salt_core.dit.frame_mask import FrameMask
from salt_core.kv_cache import CachePolicy
from training.losses.critic import teacher_forcing_inputs

from conftest import rel_err
from test_attention import import_error, messages, modules, on_cuda  # noqa: F401  (fixture)

N = 3  # tokens per frame


def dense(table: torch.Tensor, n: int) -> torch.Tensor:
    """The replaced representation: [T', T'] frames -> [L, L] tokens."""
    return table.repeat_interleave(n, 0).repeat_interleave(n, 1)


def teacher_forcing_mask(T: int, chunk: int, policy=CachePolicy()) -> torch.Tensor:
    x = torch.zeros(1, 1, T, 1, 1)
    return teacher_forcing_inputs(x, x, torch.zeros(1, T), chunk_frames=chunk, policy=policy)[2]


def with_gaps() -> torch.Tensor:
    """A mask whose identical rows are not adjacent (frames 0 and 4; 1 and 5) and whose keys are scattered."""
    g = torch.Generator().manual_seed(3)
    table = torch.rand(7, 7, generator=g) < 0.4
    table |= torch.eye(7, dtype=torch.bool)
    table[4], table[5] = table[0], table[1]
    return table


MASKS = {
    "full_chunk1": CachePolicy("full").frame_mask(6, 1),
    "full_chunk3": CachePolicy("full").frame_mask(9, 3),
    "window_chunk1": CachePolicy("window", window_frames=2).frame_mask(6, 1),
    "window_chunk3": CachePolicy("window", window_frames=4).frame_mask(9, 3),
    "sink_window_chunk1": CachePolicy("sink_window", sink_frames=1, window_frames=2).frame_mask(6, 1),
    "sink_window_chunk3": CachePolicy("sink_window", sink_frames=1, window_frames=2).frame_mask(9, 3),
    "teacher_forcing_full": teacher_forcing_mask(6, 3),
    "teacher_forcing_window": teacher_forcing_mask(9, 3, CachePolicy("window", window_frames=4)),
    "scattered_rows": with_gaps(),
}


def qkv(frames: int, n: int = N, grad: bool = False):
    g = torch.Generator().manual_seed(frames * 31 + n)
    # [B, heads, L, head_dim]
    return tuple(torch.randn(2, 2, frames * n, 8, generator=g).requires_grad_(grad) for _ in range(3))


# ---- the groups ---------------------------------------------------------------------------------------------

def test_block_causal_groups_are_one_per_chunk_and_views_of_contiguous_tokens():
    mask = FrameMask(CachePolicy("full").frame_mask(9, 3), N)
    assert [g.query_frames for g in mask.groups] == [(0, 1, 2), (3, 4, 5), (6, 7, 8)]
    assert [g.key_frames for g in mask.groups] == [(0, 1, 2), tuple(range(6)), tuple(range(9))]
    assert [g.queries for g in mask.groups] == [slice(0, 9), slice(9, 18), slice(18, 27)]
    assert [g.keys for g in mask.groups] == [slice(0, 9), slice(0, 18), slice(0, 27)]
    assert mask.query_split == [9, 9, 9] and not mask.allows_everything


def test_teacher_forcing_has_two_groups_per_chunk_and_gathers_only_split_keys():
    mask = FrameMask(teacher_forcing_mask(6, 3), N)  # frames 0..5 clean, 6..11 noisy
    assert [g.query_frames for g in mask.groups] == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11)]
    assert [g.key_frames for g in mask.groups] == [(0, 1, 2), tuple(range(6)), (6, 7, 8), (0, 1, 2, 9, 10, 11)]
    assert isinstance(mask.groups[1].keys, slice) and isinstance(mask.groups[2].keys, slice)
    split = mask.groups[3].keys  # clean past + own noisy chunk: two runs, gathered
    assert split.tolist() == list(range(0, 9)) + list(range(27, 36))
    assert mask.query_split == [9, 9, 9, 9]


def test_identical_rows_apart_are_one_group_and_the_groups_partition_the_queries():
    mask = FrameMask(with_gaps(), N)
    assert (0, 4) in [g.query_frames[:2] for g in mask.groups]
    assert mask.query_split is None  # results are written into their rows instead of concatenated
    rows = torch.cat([torch.arange(mask.tokens)[g.queries] for g in mask.groups])
    assert sorted(rows.tolist()) == list(range(mask.tokens))  # every query token in exactly one group
    for g in mask.groups:  # a group's keys are the allowed frames of its rows
        assert all(with_gaps()[f].nonzero().flatten().tolist() == list(g.key_frames) for f in g.query_frames)


def test_an_all_true_mask_is_plain_attention():
    mask = FrameMask(torch.ones(4, 4, dtype=torch.bool), N)
    assert mask.allows_everything
    q, k, v = qkv(4)
    assert torch.equal(Attention()(q, k, v, mask), sdpa(q, k, v))


# ---- chunked keys equal the dense reference (values and gradients) ---------------------------------------------

@pytest.mark.parametrize("name", list(MASKS))
def test_chunked_keys_equal_masked_sdpa_with_gradients(name):
    table = MASKS[name]
    q, k, v = qkv(table.shape[0], grad=True)
    ref = sdpa(q, k, v, dense(table, N))
    out = chunked_key_attention(q, k, v, FrameMask(table, N), sdpa)
    assert rel_err(out, ref) <= 1e-5
    w = torch.randn_like(ref)
    for got, want in zip(torch.autograd.grad(out, (q, k, v), w), torch.autograd.grad(ref, (q, k, v), w)):
        assert rel_err(got, want) <= 1e-5


def test_attention_on_cpu_uses_chunked_keys_silently(caplog):
    table = MASKS["teacher_forcing_full"]
    q, k, v = qkv(table.shape[0])
    with caplog.at_level(logging.WARNING, logger="salt.attention"):
        out = Attention()(q, k, v, FrameMask(table, N))
    assert messages(caplog) == []
    assert rel_err(out, sdpa(q, k, v, dense(table, N))) <= 1e-5


# ---- refusals ------------------------------------------------------------------------------------------------

def test_a_query_frame_without_keys_is_refused_naming_the_rows():
    table = CachePolicy("full").frame_mask(6, 3)
    table[1] = False
    table[4] = False
    with pytest.raises(ValueError, match=r"frame_mask rows \[1, 4\] allow no key frame"):
        FrameMask(table, N)


@pytest.mark.parametrize("table, message", [
    (torch.ones(3, 4, dtype=torch.bool), r"square \[T', T'\] tensor .* got \(3, 4\)"),
    (torch.ones(3, dtype=torch.bool), r"square \[T', T'\] tensor .* got \(3,\)"),
    (torch.ones(3, 3), r"must be bool \(True = may attend\), got dtype torch.float32"),
])
def test_a_table_that_is_not_a_square_bool_is_refused(table, message):
    with pytest.raises(ValueError, match=message):
        FrameMask(table, N)


def test_tokens_that_do_not_match_the_mask_are_refused():
    q, k, v = qkv(5)
    with pytest.raises(ValueError, match="covers 18 tokens, got 15 queries and 15 keys"):
        chunked_key_attention(q, k, v, FrameMask(torch.ones(6, 6, dtype=torch.bool), N), sdpa)


# ---- FlexAttention ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["full_chunk3", "sink_window_chunk3", "teacher_forcing_window", "scattered_rows"])
@pytest.mark.parametrize("n, block", [(5, 8), (4, 8), (3, 16)], ids=["tail_block", "blocks_divide", "big_blocks"])
def test_block_mask_from_frames_equals_torch_create_block_mask(name, n, block):
    table = MASKS[name]
    mask = FrameMask(table, n)
    frame_of = torch.arange(mask.tokens) // n
    want = create_block_mask(lambda b, h, q, k: table[frame_of[q], frame_of[k]], None, None, mask.tokens,
                             mask.tokens, device="cpu", BLOCK_SIZE=block)
    got = mask.block_mask(block)
    assert got.shape == want.shape and got.BLOCK_SIZE == want.BLOCK_SIZE
    for count, index in (("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")):
        c_got, c_want = getattr(got, count), getattr(want, count)
        assert torch.equal(c_got, c_want), count
        for row, used in enumerate(c_want[0, 0].tolist()):  # the listed blocks; the rest is padding
            assert torch.equal(getattr(got, index)[0, 0, row, :used], getattr(want, index)[0, 0, row, :used])
    assert mask.block_mask(block) is got  # built once, shared by every layer
    assert FrameMask(table.clone(), n).block_mask(block) is got  # and by the next step with the same mask
    assert FrameMask(table, n + 1).block_mask(block) is not got


@pytest.mark.parametrize("name", list(MASKS))
@torch.no_grad()  # torch 2.13 has no FlexAttention backward on CPU; the CUDA test below covers gradients
def test_flex_attention_equals_masked_sdpa(name):
    table = MASKS[name]
    q, k, v = qkv(table.shape[0], n=5)
    out = flex_frame_attention(q, k, v, FrameMask(table, 5), kernel=flex_attention, block_size=8)
    assert rel_err(out, sdpa(q, k, v, dense(table, 5))) <= 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled FlexAttention needs CUDA")
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-3), (torch.bfloat16, 2e-2)])
def test_compiled_flex_attention_on_cuda_equals_masked_sdpa_with_gradients(dtype, tol):
    table, n = MASKS["teacher_forcing_window"], 20  # 360 tokens: blocks of 128 straddle frames, padded tail
    q, k, v = (x.detach().cuda().to(dtype).requires_grad_() for x in qkv(table.shape[0], n=n))
    mask = FrameMask(table.cuda(), n)
    attn = Attention()
    out = attn(q, k, v, mask)
    assert attn._flex_failed is None  # FlexAttention ran, no fallback
    ref = sdpa(q.float(), k.float(), v.float(), dense(table, n).cuda())
    assert rel_err(out.float(), ref) <= tol
    w = torch.randn_like(ref)
    got = torch.autograd.grad(out.float(), (q, k, v), w)
    want = torch.autograd.grad(ref, (q, k, v), w)
    for a, b in zip(got, want):
        assert rel_err(a.float(), b.float()) <= tol


# ---- dispatch on CUDA (CUDA faked: the selection is what is tested) ------------------------------------------

FLEX_MODULE = "torch.nn.attention.flex_attention"
FLEX_FALLBACK = "'flex_attention' (frame mask)"


@pytest.fixture
def triton(monkeypatch):
    mod = types.ModuleType("triton")
    mod.__spec__ = importlib.machinery.ModuleSpec("triton", None)
    monkeypatch.setitem(sys.modules, "triton", mod)


@pytest.fixture
def flex_calls(monkeypatch):
    """compiled_flex_attention replaced by eager flex_attention on plain tensors, recording its calls."""
    calls = []

    def kernel(q, k, v, block_mask):
        calls.append(block_mask)
        plain = [x.as_subclass(torch.Tensor) for x in (q, k, v)]
        return flex_attention(*plain, block_mask=block_mask)

    monkeypatch.setattr(frame_attention, "compiled_flex_attention", lambda: kernel)
    return calls


def cuda_case(dtype=torch.float32):
    table = MASKS["teacher_forcing_full"]
    q, k, v = qkv(table.shape[0])
    return table, on_cuda(q, k, v, dtype=dtype), sdpa(q, k, v, dense(table, N))


@torch.no_grad()
def test_cuda_frame_mask_runs_flex_attention_with_the_frame_block_mask(modules, triton, flex_calls, caplog):
    table, (q, k, v), ref = cuda_case()
    mask = FrameMask(table, N)
    with caplog.at_level(logging.WARNING, logger="salt.attention"):
        out = Attention()(q, k, v, mask)
    assert flex_calls == [mask.block_mask(frame_attention.FLEX_BLOCK_SIZE)] and messages(caplog) == []
    assert rel_err(out.as_subclass(torch.Tensor), ref) <= 1e-5


@pytest.mark.parametrize("absent, reason", [
    (FLEX_MODULE, lambda: f"torch.nn.attention.flex_attention is not importable ({import_error(FLEX_MODULE)})"),
    ("triton", lambda: "triton is not importable (FlexAttention compiles Triton kernels on CUDA)"),
], ids=["no_flex_attention", "no_triton"])
@torch.no_grad()
def test_cuda_without_flex_falls_back_to_chunked_keys_once_with_the_reason(modules, triton, flex_calls, monkeypatch,
                                                                           caplog, absent, reason):
    monkeypatch.setitem(sys.modules, absent, None)
    table, (q, k, v), ref = cuda_case()
    attn = Attention()
    with caplog.at_level(logging.WARNING, logger="salt.attention"):
        out = attn(q, k, v, FrameMask(table, N))
        attn(q, k, v, FrameMask(table, N))
    assert flex_calls == []
    assert messages(caplog) == [f"attention: falling back from {FLEX_FALLBACK} to chunked keys: {reason()}"]
    assert rel_err(out.as_subclass(torch.Tensor), ref) <= 1e-5


@torch.no_grad()
def test_a_flex_compile_failure_falls_back_to_chunked_keys_and_is_not_retried(modules, triton, monkeypatch, caplog):
    calls = []

    def broken(q, k, v, block_mask):
        calls.append(1)
        raise torch._dynamo.exc.BackendCompilerFailed(broken, RuntimeError("no working triton"), None)

    monkeypatch.setattr(frame_attention, "compiled_flex_attention", lambda: broken)
    table, (q, k, v), ref = cuda_case()
    attn = Attention()
    with caplog.at_level(logging.WARNING, logger="salt.attention"):
        out = attn(q, k, v, FrameMask(table, N))
        attn(q, k, v, FrameMask(table, N))
    assert len(calls) == 1
    [msg] = messages(caplog)
    assert msg.startswith(f"attention: falling back from {FLEX_FALLBACK} to chunked keys: torch.compile of "
                          "flex_attention failed (BackendCompilerFailed:")
    assert rel_err(out.as_subclass(torch.Tensor), ref) <= 1e-5


@torch.no_grad()
def test_chunked_keys_send_each_group_to_the_selected_kernel(modules, monkeypatch):
    calls = []

    def flash_attn_func(q, k, v):  # exact attention in flash's [B, L, heads, head_dim] layout
        calls.append((q.shape[1], k.shape[1]))
        return sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    modules("flash_attn", flash_attn_func=flash_attn_func)
    monkeypatch.setitem(sys.modules, FLEX_MODULE, None)
    table, (q, k, v), _ = cuda_case(torch.bfloat16)
    out = Attention("flash")(q, k, v, FrameMask(table, N))
    # (query tokens, key tokens) per group: clean chunks 0, 1, noisy chunks 0, 1
    assert calls == [(9, 9), (9, 18), (9, 9), (9, 18)]
    ref = sdpa(*(x.as_subclass(torch.Tensor).float() for x in (q, k, v)), dense(table, N))
    assert rel_err(out.as_subclass(torch.Tensor).float(), ref) <= 1e-2  # bf16 inputs
