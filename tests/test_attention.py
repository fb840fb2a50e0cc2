"""Attention backends: SDPA by default; 'sage' / 'flash' run their kernel when the module is importable and
the call is CUDA fp16/bf16 without a mask, otherwise the call falls back to SDPA and says once from what,
to what and why. The kernels' modules and CUDA are faked here, so the selection logic is what is tested."""
import importlib.machinery
import logging
import sys
import types

import pytest
import torch

from salt_core.dit.attention import BACKENDS, Attention, available_backends, sdpa

KERNEL_MODULES = ("sageattention", "flash_attn", "flash_attn_interface")


class OnCuda(torch.Tensor):
    """A CPU tensor that reports `is_cuda`, the property Attention checks before calling a CUDA kernel
    (ops on it keep the subclass, so a whole model forward can run 'on CUDA')."""

    @property
    def is_cuda(self):
        return True


def on_cuda(*tensors, dtype=torch.bfloat16):
    return tuple(t.to(dtype).as_subclass(OnCuda) for t in tensors)


def qkv():
    # q: [B, heads, Lq, head_dim], k / v: [B, heads, Lk, head_dim]
    return torch.randn(1, 2, 6, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)


class FakeKernel:
    """Records its calls and returns a known tensor (`result(q)` gives it for a query)."""

    def __init__(self, returns_tuple: bool = False):
        self.returns_tuple, self.calls = returns_tuple, []

    @staticmethod
    def result(q):
        return torch.arange(q.numel(), dtype=torch.float32).view(q.shape).to(q.dtype) / q.numel()

    def __call__(self, q, k, v, **kwargs):
        self.calls.append(((q, k, v), kwargs))
        out = self.result(q)
        return (out, torch.zeros(1)) if self.returns_tuple else out


@pytest.fixture
def modules(monkeypatch):
    """Every kernel module absent (whatever is installed), with `install(name, **attrs)` to fake one."""
    for name in KERNEL_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises, find_spec(name) is None

    def install(name, **attrs):
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        for key, value in attrs.items():
            setattr(mod, key, value)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    return install


def import_error(name: str) -> str:
    """The message `import name` raises while the module is absent."""
    with pytest.raises(ImportError) as e:
        __import__(name)
    return f"{type(e.value).__name__}: {e.value}"


def fallback(backend: str, reason: str) -> str:
    return f"attention: falling back from '{backend}' to 'sdpa': {reason}"


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "salt.attention"]


# ---- SDPA ---------------------------------------------------------------------------------------

def test_sdpa_is_default_and_exact():
    q, k, v = qkv()
    attn = Attention()
    assert attn.active == "sdpa" and attn.requested == "sdpa"
    ref = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, -1) @ v
    assert torch.allclose(attn(q, k, v), ref, atol=1e-6)


def test_mask_is_honoured():
    q, k, v = qkv()
    mask = torch.zeros(6, 9, dtype=torch.bool)
    mask[:, :3] = True
    out = Attention()(q, k, v, mask)
    assert torch.allclose(out, sdpa(q, k[:, :, :3], v[:, :, :3]), atol=1e-6)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match=rf"allowed: {list(BACKENDS)!r}".replace("[", r"\[").replace("]", r"\]")):
        Attention("xformers")


# ---- which backends are offered ----------------------------------------------------------------------

@pytest.mark.parametrize("present, offered", [
    ((), ["sdpa"]),
    (("sageattention",), ["sdpa", "sage"]),
    (("flash_attn",), ["sdpa", "flash"]),
    (("flash_attn_interface",), ["sdpa", "flash"]),
    (("sageattention", "flash_attn"), ["sdpa", "sage", "flash"]),
])
def test_available_backends_follow_the_importable_modules(modules, present, offered):
    for name in present:
        modules(name)
    assert available_backends() == offered


# ---- the kernel runs when usable -----------------------------------------------------------------------

def test_sage_kernel_gets_the_head_major_layout_and_its_result_is_returned(modules, caplog):
    kernel = FakeKernel()
    modules("sageattention", sageattn=kernel)
    q, k, v = on_cuda(*qkv())
    with caplog.at_level(logging.WARNING, logger="salt.attention"):
        attn = Attention("sage")
        out = attn(q, k, v)
    assert attn.active == "sage" and messages(caplog) == []
    [((kq, kk, kv), kwargs)] = kernel.calls
    assert kq is q and kk is k and kv is v  # [B, heads, L, head_dim] as given ("HND")
    assert kwargs == {"tensor_layout": "HND", "is_causal": False}
    assert torch.equal(out, FakeKernel.result(q))


@pytest.mark.parametrize("module, returns_tuple", [("flash_attn_interface", True), ("flash_attn", False)],
                         ids=["flash3_returns_out_and_lse", "flash2"])
def test_flash_kernel_gets_the_sequence_major_layout_and_its_result_is_transposed_back(modules, module,
                                                                                      returns_tuple):
    kernel = FakeKernel(returns_tuple)
    modules(module, flash_attn_func=kernel)
    q, k, v = on_cuda(*qkv(), dtype=torch.float16)
    attn = Attention("flash")
    out = attn(q, k, v)
    assert attn.active == "flash"
    [((kq, kk, kv), kwargs)] = kernel.calls
    assert kwargs == {}
    for given, seen in ((q, kq), (k, kk), (v, kv)):
        assert torch.equal(seen, given.transpose(1, 2))  # [B, L, heads, head_dim]
    assert out.shape == q.shape and torch.equal(out, FakeKernel.result(kq).transpose(1, 2))


def test_flash3_is_preferred_over_flash2(modules):
    fa3, fa2 = FakeKernel(returns_tuple=True), FakeKernel()
    modules("flash_attn_interface", flash_attn_func=fa3)
    modules("flash_attn", flash_attn_func=fa2)
    Attention("flash")(*on_cuda(*qkv()))
    assert len(fa3.calls) == 1 and fa2.calls == []


# ---- fallbacks: from what, to what, why; once per reason -----------------------------------------------

@pytest.mark.parametrize("backend, module", [("sage", "sageattention"), ("flash", "flash_attn")])
def test_missing_module_falls_back_once_at_construction(modules, caplog, backend, module):
    q, k, v = on_cuda(*qkv())
    with caplog.at_level(logging.WARNING, logger="salt.attention"):
        attn = Attention(backend)
        out = attn(q, k, v)
        attn(q, k, v)
    assert attn.active == "sdpa"
    assert messages(caplog) == [fallback(backend, f"{module} is not importable ({import_error(module)})")]
    torch.testing.assert_close(out, sdpa(q, k, v))


def test_a_broken_install_falls_back_with_the_import_error(modules, caplog):
    modules("sageattention")  # importable, but without `sageattn`
    with caplog.at_level(logging.WARNING, logger="salt.attention"):
        attn = Attention("sage")
    [msg] = messages(caplog)
    assert attn.active == "sdpa"
    assert msg.startswith(fallback("sage", "sageattention is not importable (ImportError: cannot import name 'sageattn'"))


@pytest.mark.parametrize("backend, module, name", [("sage", "sageattention", "sageattn"),
                                                   ("flash", "flash_attn", "flash_attn_func")])
def test_each_unusable_call_falls_back_to_sdpa_and_each_reason_is_logged_once(modules, caplog, backend, module,
                                                                              name):
    kernel = FakeKernel()
    modules(module, **{name: kernel})
    q, k, v = qkv()
    mask = torch.ones(6, 9, dtype=torch.bool)
    mask[:, 4:] = False
    cuda_half = on_cuda(q, k, v)
    cuda_fp32 = on_cuda(q, k, v, dtype=torch.float32)
    cases = [  # (inputs, mask, reason)
        ((q, k, v), None, "tensors are on cpu, the kernel needs CUDA"),
        (cuda_fp32, None, "dtype torch.float32 is not fp16/bf16"),
        (cuda_half, mask, "a mask is needed (block-causal training forward)"),
    ]
    attn = Attention(backend)
    with caplog.at_level(logging.WARNING, logger="salt.attention"):
        for (a, b, c), m, _ in cases:
            for _ in range(2):
                torch.testing.assert_close(attn(a, b, c, m), sdpa(a, b, c, m))
    assert kernel.calls == []
    assert messages(caplog) == [fallback(backend, reason) for _, _, reason in cases]
    attn(*cuda_half)  # a usable call still reaches the kernel after fallbacks
    assert len(kernel.calls) == 1


# ---- the model's backend ---------------------------------------------------------------------------------

def flash_by_sdpa():
    """A flash_attn_func that computes exact attention in flash's [B, L, heads, head_dim] layout."""
    calls = []

    def flash_attn_func(q, k, v):
        calls.append(q.shape)
        return sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    return flash_attn_func, calls


def test_model_sends_every_attention_call_to_the_selected_kernel(tiny_dit, modules):
    kernel, calls = flash_by_sdpa()
    modules("flash_attn", flash_attn_func=kernel)
    model = tiny_dit.to(torch.bfloat16)
    x, ctx = on_cuda(torch.randn(1, 16, 1, 4, 4), torch.randn(1, 3, 32))
    t = torch.tensor([10.0])
    with torch.no_grad():
        model.set_attention_backend("flash")
        assert model.attention.active == "flash"
        a = model(x, t, ctx)
        model.set_attention_backend("sdpa")
        b = model(x, t, ctx)
    assert len(calls) == 2 * model.config.num_layers  # self- and cross-attention of every block
    torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)  # bf16: the same attention, another summation order


def test_model_on_cpu_falls_back_once_for_the_whole_forward(tiny_dit, modules, caplog):
    kernel, calls = flash_by_sdpa()
    modules("flash_attn", flash_attn_func=kernel)
    x, t, ctx = torch.randn(1, 16, 1, 4, 4), torch.tensor([10.0]), torch.randn(1, 3, 32)
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="salt.attention"):
        tiny_dit.set_attention_backend("flash")
        a = tiny_dit(x, t, ctx)
        tiny_dit(x, t, ctx)
        tiny_dit.set_attention_backend("sdpa")
        b = tiny_dit(x, t, ctx)
    assert calls == [] and torch.equal(a, b)
    assert messages(caplog) == [fallback("flash", "tensors are on cpu, the kernel needs CUDA")]
