"""One-off: record what the committed checkpoints produce through every sampling loop, BEFORE the sampling core
was rewritten (issue 12). tests/test_reference_outputs.py reproduces each case through the new code and asserts
bit identity. Kept in git history only with the pre-redesign code it calls (commit that adds this file)."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests"))
from reference_cases import signature  # noqa: E402
from salt_core.checkpoints import load_dit  # noqa: E402
from salt_core.kv_cache import CachePolicy  # noqa: E402
from salt_core.pipeline import decode_stream, encode_prompt, load_salt_model, stream_latents  # noqa: E402
from salt_core.sampling import PromptSegment, sample_ar, sample_clip  # noqa: E402
from salt_core.schedules import StepGrid  # noqa: E402
from training.commands.ode_pairs import trajectories, teacher_grid  # noqa: E402
from training.rollout import cache_alignment_term, rollout_ar, rollout_bidirectional  # noqa: E402
from training.rollout.common import mixed_step_grids  # noqa: E402
from training.losses.self_consistency import sc_term, sc_triplet  # noqa: E402
from training.semigroup import semigroup_defect  # noqa: E402

CK = ROOT / "benchmarks" / "quality" / "checkpoints"
OUT = Path(__file__).with_name("reference_outputs.safetensors")
WINDOW = CachePolicy("window", window_frames=6, positions="cache_relative")


def model(name):
    m, info = load_dit(CK / f"{name}.safetensors")
    return m.eval(), info


def ctx_of(seed, L=7, D=32):
    return torch.randn(1, L, D, generator=torch.Generator().manual_seed(seed))


def grad_vector(m):
    return signature(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))


def main():
    torch.set_num_threads(1)
    out = {}
    ctx, neg = ctx_of(1), ctx_of(2)
    grid4 = StepGrid.from_timesteps([1000, 750, 500, 250], 5.0)

    teacher, _ = model("teacher")
    out["clip/teacher_cfg_ode"] = sample_clip(teacher, ctx, latent_shape=(1, 16, 5, 8, 8), grid=StepGrid.uniform(6, 5.0),
                                              transition="ode", seed=3, negative_context=neg, guidance=4.0)
    dmd4, _ = model("dmd-4")
    out["clip/dmd4_renoise"] = sample_clip(dmd4, ctx, latent_shape=(2, 16, 5, 8, 8), grid=grid4, transition="renoise", seed=5)
    out["clip/dmd4_integer"] = sample_clip(dmd4, ctx, latent_shape=(1, 16, 5, 8, 8), grid=grid4, transition="renoise",
                                           seed=5, integer_timesteps=True)

    salt_ar, _ = model("salt-ar")
    out["ar/salt_ar_window"] = sample_ar(salt_ar, ctx, latent_frames=12, latent_hw=(8, 8), chunk_frames=3, grid=grid4,
                                         policy=WINDOW, seed=7)
    out["ar/salt_ar_sink_absolute"] = sample_ar(
        salt_ar, ctx, latent_frames=12, latent_hw=(8, 8), chunk_frames=3, grid=StepGrid.uniform(2, 5.0),
        policy=CachePolicy("sink_window", window_frames=3, sink_frames=3, context_t=10.0), seed=8, integer_timesteps=True)
    out["ar/salt_ar_switch"] = sample_ar(salt_ar, [PromptSegment(0, ctx), PromptSegment(6, neg)], latent_frames=12,
                                         latent_hw=(8, 8), chunk_frames=3, grid=grid4, policy=WINDOW, seed=9)
    out["ar/salt_ar_switch_norecache"] = sample_ar(
        salt_ar, [PromptSegment(0, ctx), PromptSegment(6, neg)], latent_frames=12, latent_hw=(8, 8), chunk_frames=3,
        grid=grid4, policy=CachePolicy("full", max_frames=12, recache_on_switch=False), seed=9)
    teacher_ar, _ = model("teacher-ar")
    out["ar/teacher_ar_cfg_ode"] = sample_ar(teacher_ar, ctx, latent_frames=6, latent_hw=(8, 8), chunk_frames=3,
                                             grid=StepGrid.uniform(5, 5.0), policy=WINDOW, transition="ode", seed=4,
                                             negative_context=neg, guidance=4.0)

    # training rollouts, with gradient
    noise = torch.randn(2, 16, 5, 8, 8, generator=torch.Generator().manual_seed(11))
    ctx2 = ctx.expand(2, -1, -1)
    dmd4.train()
    for p in dmd4.parameters():
        p.requires_grad_(True)
    roll = rollout_bidirectional(dmd4, noise, ctx2, grid4, transition="renoise",
                                 generator=torch.Generator().manual_seed(12), exit_step=1, record_until=3)
    out["rollout_bi/x"] = roll.x.detach()
    for i, s in roll.states.items():
        out[f"rollout_bi/state{i}"] = s
    (roll.x.square().mean()).backward()
    out["rollout_bi/grad"] = grad_vector(dmd4)
    dmd4.zero_grad(set_to_none=True)
    trip = sc_triplet(4, 5.0, index=2)
    loss, _ = sc_term(dmd4, roll.states[2], trip, ctx2, transition="renoise", generator=torch.Generator().manual_seed(13))
    loss.backward()
    out["sc_bi/loss"] = loss.detach().reshape(1)
    out["sc_bi/grad"] = grad_vector(dmd4)
    dmd4.zero_grad(set_to_none=True)
    dmd4.eval()

    salt_ar.train()
    for p in salt_ar.parameters():
        p.requires_grad_(True)
    noise_ar = torch.randn(2, 16, 9, 8, 8, generator=torch.Generator().manual_seed(21))
    g = torch.Generator().manual_seed(22)
    grids = mixed_step_grids(3, choices=(8, 4, 2), shift=5.0, generator=g, current=4)
    roll = rollout_ar(salt_ar, noise_ar, ctx2, chunk_frames=3, grids=grids, policy=WINDOW, transition="renoise",
                      generator=g, exit_steps=None, record_until=2)
    out["rollout_ar/x"] = roll.x.detach()
    out["rollout_ar/exits"] = torch.tensor([c.exit_step for c in roll.chunks])
    out["rollout_ar/steps"] = torch.tensor([c.grid.steps for c in roll.chunks])
    for i, s in roll.chunks[-1].states.items():
        out[f"rollout_ar/last_state{i}"] = s
    roll.x.square().mean().backward()
    out["rollout_ar/grad"] = grad_vector(salt_ar)
    salt_ar.zero_grad(set_to_none=True)
    trip = sc_triplet(4, 5.0, index=1)
    roll = rollout_ar(salt_ar, noise_ar, ctx2, chunk_frames=3, grids=grid4, policy=WINDOW, transition="renoise",
                      generator=torch.Generator().manual_seed(23), exit_steps=[3, 0, 1], grad_chunks=(2,),
                      record_until=1)
    loss, _ = sc_term(roll.current(salt_ar), roll.chunks[-1].states[1], trip, None, transition="renoise",
                      generator=torch.Generator().manual_seed(24))
    loss.backward()
    out["sc_ar/loss"] = loss.detach().reshape(1)
    out["sc_ar/grad"] = grad_vector(salt_ar)
    salt_ar.zero_grad(set_to_none=True)
    fa, stats = cache_alignment_term(salt_ar, noise_ar, ctx2, chunk_frames=3, grid=grid4, policy=WINDOW, low_steps=2,
                                     high_steps=8, shift=5.0, transition="renoise",
                                     generator=torch.Generator().manual_seed(25), layers=(1,), use_x0=True)
    fa.backward()
    out["fa/loss"] = fa.detach().reshape(1)
    out["fa/cache_gap"] = torch.tensor([stats["fa_cache_gap"]])
    out["fa/grad"] = grad_vector(salt_ar)
    salt_ar.zero_grad(set_to_none=True)
    salt_ar.eval()
    for p in salt_ar.parameters():
        p.requires_grad_(False)

    # ODE pairs: bidirectional and causal teachers, with CFG
    class Cfg:  # the fields trajectories() reads
        class grid:
            integer_timesteps = False
            timesteps = (1000.0, 750.0, 500.0, 250.0)
            shift = 5.0

        class ode:
            teacher_steps = 8

        class teacher:
            causal = False

        class ar:
            chunk_frames = 3
            cache = WINDOW

    fine, record = teacher_grid(Cfg)
    nz = torch.randn(1, 16, 6, 8, 8, generator=torch.Generator().manual_seed(31))
    states, x0 = trajectories(teacher, nz, ctx, neg, Cfg, fine, record, 4.0)
    out["ode/bi_states"], out["ode/bi_x0"] = states, x0
    Cfg.teacher.causal = True
    states, x0 = trajectories(teacher_ar, nz, ctx, neg, Cfg, fine, record, 4.0)
    out["ode/ar_states"], out["ode/ar_x0"] = states, x0

    # semigroup defect
    sc8, _ = model("sc-dmd-8")
    d = semigroup_defect(sc8, nz[:, :, :5], ctx, grid4, shift=5.0, transition="renoise", seed=41)
    out["defect/bi"] = torch.tensor([d.mean, *d.per_step], dtype=torch.float64)
    d = semigroup_defect(salt_ar, nz, ctx, grid4, shift=5.0, transition="ode", seed=42, chunk_frames=3, policy=WINDOW)
    out["defect/ar"] = torch.tensor([d.mean, *d.per_step], dtype=torch.float64)

    # the pipeline on the embedded default: prompt -> latents -> frames
    m = load_salt_model(None)
    c, _ = encode_prompt(m, "a red circle moves to the right on a grey background")
    zs = [r.latents for r in stream_latents(m, c, width=64, height=64, frames=45, seed=2)]
    out["pipeline/default_latents"] = torch.cat(zs, dim=2)
    out["pipeline/default_frames"] = signature(torch.cat(list(decode_stream(m, m.vae, zs)), dim=0))

    out = {k: v.detach().contiguous() for k, v in out.items()}
    meta = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": "1"}
    save_file(out, str(OUT), metadata=meta)
    print(f"wrote {len(out)} tensors to {OUT} ({OUT.stat().st_size} bytes), {meta}")


if __name__ == "__main__":
    main()
