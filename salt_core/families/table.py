"""The released Wan 2.1 text-to-video families and how each samples, as data — every fact with its source.

Window semantics of the released causal models, read in their code, and our numbers for them. Self Forcing,
Causal Forcing, CausVid, LongLive and Salt give a cache size `local_attn_size` in latent frames (-1 = a fixed
buffer of 32760 tokens = 21 latent frames of 1560 tokens at 832x480). Their attention over the cache spans
`local_attn_size x 1560` tokens that END AT THE CURRENT CHUNK'S LAST TOKEN: the current chunk is inside the span.
With a sink (`sink_size` frames, LongLive-style models only) the sink is INSIDE the span too: the sink frames are
attended and the local part is the last `local_attn_size - sink_size` frames up to the current chunk's end
(Salt `wan/modules/causal_model_longlive.py`, LongLive `wan/modules/causal_model.py`: `max_attention_size`,
`local_budget = max_attention_size - sink_tokens`, `local_start_for_window = max(sink, local_end - local_budget)`).
Our `CachePolicy` sizes count PAST latent frames and exclude the current chunk, so

    window_frames = local_attn_size - sink_size - chunk_frames,   sink_frames = sink_size

e.g. LongLive / Salt-LL (local_attn_size 12, sink 3, chunks of 3) -> `sink_window` sink 3 + window 6: the chunk
starting at frame 12 attends frames 0-2 (sink), 6-11 (window) and itself, 12 frames in all, as theirs does.
"""
from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from typing import Optional

from ..config import SamplingDefaults
from ..kv_cache import CachePolicy

# Topics every row states a source for (the tests hold each row to it).
TOPICS = ("architecture", "container", "weights", "chunks", "steps", "transition", "timesteps", "cache",
          "guidance", "text", "resolution")
RELEASED_FRAMES = 21  # latent frames of the 81-frame videos the Self Forcing family trains and samples
TOKENS_PER_FRAME = 1560  # 832x480 latent frame: 30 x 52 patches


@dataclass(frozen=True)
class Fact:
    """One setting of a family and where it comes from: `repository path (what it says)`."""

    topic: str
    value: str
    source: str

    def __post_init__(self) -> None:
        if self.topic not in TOPICS:
            raise ValueError(f"Fact topic {self.topic!r} is not one of {TOPICS}")


@dataclass(frozen=True)
class AdapterPairing:
    """A LoRA released to be applied on top of the family's base file (LongLive's long-video adapter)."""

    file: str  # its released file name, expected next to the base checkpoint
    rank: int
    alpha: float
    strength: float = 1.0  # alpha / rank scaling is the adapter's own; this is the user-facing strength


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    sampling: Optional[SamplingDefaults]  # None: the file's header says (our exports)
    weights: Optional[str] = None  # trainer entry to load: "ema" (generator_ema) | "regular" (generator)
    guidance_scale: float = 1.0  # classifier-free guidance at sampling; 1 = none (distilled students)
    presets: tuple[str, ...] = ("wan2.1-t2v-1.3b",)  # released DiT sizes; () = any
    text_len: int = 512  # umT5 tokens per prompt
    fps: float = 16.0
    name_hints: tuple[tuple[str, ...], ...] = ()  # each: tokens that must all occur in the file's name / folder
    container: str = "trainer"  # "trainer" (generator / generator_ema dict) | "plain" (a state dict) | "salt"
    adapter: Optional[AdapterPairing] = None
    release: tuple[str, ...] = ()  # where the files are published
    template: Optional[str] = None  # example workflow (example_workflows/<name>.json)
    facts: tuple[Fact, ...] = ()
    caveats: tuple[str, ...] = ()  # where our sampler differs from the family's own

    @property
    def trainer_entry(self) -> Optional[str]:
        return {"ema": "generator_ema", "regular": "generator"}.get(self.weights or "")

    def describe(self) -> str:
        return f"{self.name} ({self.title})"


def window_from_local_attention(local_attn_size: int, sink_size: int, chunk_frames: int) -> CachePolicy:
    """The released `local_attn_size` / `sink_size` (frames attended, sink and current chunk included) -> our
    CachePolicy (past frames kept, current chunk excluded); -1 is their fixed 21-frame buffer (a full cache)."""
    if local_attn_size == -1:
        return CachePolicy("full", max_frames=RELEASED_FRAMES)
    window = local_attn_size - sink_size - chunk_frames
    if window < 1:
        raise ValueError(f"local_attn_size {local_attn_size} leaves no past frame beside the sink {sink_size} and "
                         f"the current chunk of {chunk_frames}")
    if sink_size:
        return CachePolicy("sink_window", window_frames=window, sink_frames=sink_size)
    return CachePolicy("window", window_frames=window)


def _few_step(chunk_frames: int, cache: CachePolicy, timesteps=(1000.0, 750.0, 500.0, 250.0), shift=5.0,
              integer=False) -> SamplingDefaults:
    return SamplingDefaults(causal=True, chunk_frames=chunk_frames, shift=shift, timesteps=tuple(timesteps),
                            transition="renoise", integer_timesteps=integer, cache=cache, resolution=(480, 832))


def _wan_grid(steps: int = 50) -> tuple[float, ...]:
    return tuple(1000.0 * (1.0 - i / steps) for i in range(steps))


_FULL21 = window_from_local_attention(-1, 0, 3)
_LONGLIVE = window_from_local_attention(12, 3, 3)

SALT = "XingtongGe/Salt"
SF = "guandeh17/Self-Forcing"
CF = "thu-ml/Causal-Forcing"
LL = "NVlabs/LongLive@2462895"  # LongLive 1.0 (Wan 2.1 1.3B), the last commit before LongLive 2.0 (Wan 2.2 5B)
CV = "tianweiy/CausVid"
WAN = "Wan-Video/Wan2.1"


def _self_forcing_facts(repo: str, config: str, weights_fact: Fact, cache_fact: Fact,
                        resolution: Optional[Fact] = None) -> tuple[Fact, ...]:
    """The facts Self Forcing and the repositories built on it share, each read in `repo`."""
    return (
        Fact("architecture", "causal Wan 2.1 T2V 1.3B student", f"{repo} {config} (model_kwargs / fake_name: "
             "Wan2.1-T2V-1.3B)"),
        Fact("container", "trainer dict {generator, generator_ema, ...}, keys prefixed model.",
             f"{repo} inference.py (state_dict['generator' or 'generator_ema'], FSDP segments stripped)"),
        weights_fact,
        Fact("steps", "[1000, 750, 500, 250] warped onto the shift-5 grid",
             f"{repo} {config} (denoising_step_list, warp_denoising_step: true, timestep_shift: 5.0)"),
        Fact("transition", "re-noise x0 with fresh noise between steps",
             f"{repo} pipeline/causal_inference.py (scheduler.add_noise(denoised_pred, randn_like, next t))"),
        Fact("timesteps", "float timesteps (937.5, 833.3, ...)",
             f"{repo} pipeline/causal_inference.py (the warped float list multiplies the timestep tensor)"),
        cache_fact,
        Fact("guidance", "none at sampling (guidance_scale 3.0 is the DMD teacher's)",
             f"{repo} pipeline/causal_inference.py (one conditional forward per step)"),
        Fact("text", "umT5-XXL, 512 tokens, padded rows zero",
             f"{repo} utils/wan_wrapper.py (WanTextEncoder: seq_len=512, u[v:] = 0)"),
        resolution or Fact("resolution", "832x480, 81 frames (21 latent frames)",
                           f"{repo} {config} (image_or_video_shape [1, 21, 16, 60, 104])"),
    )


def _chunks(repo: str, config: str, n: int) -> Fact:
    return Fact("chunks", f"{n} latent frame{'s' if n > 1 else ''} per chunk",
                f"{repo} {config} (num_frame_per_block: {n})")


_FULL_CACHE_FACT = "full cache of the 21-frame video, clean context pass at t=0"


def _full_cache(repo: str) -> Fact:
    return Fact("cache", _FULL_CACHE_FACT, f"{repo} pipeline/causal_inference.py (no local_attn_size: KV cache of "
                "32760 tokens = 21 frames; context pass at context_noise = 0, configs/default_config.yaml)")


def _wan_facts(size: str, config: str, steps: Fact, guidance: Fact, resolution: Fact) -> tuple[Fact, ...]:
    """The Wan 2.1 teachers' facts; the ones that differ between sizes are given."""
    return (
        Fact("architecture", f"bidirectional Wan 2.1 T2V {size}", f"{WAN} {config}"),
        Fact("container", "plain state dict (official names; the 14B in shards)", f"{WAN} wan/modules/model.py"),
        Fact("weights", "the file's only weights", f"{WAN} wan/text2video.py (WanModel.from_pretrained)"),
        Fact("chunks", "none: the whole clip at once", f"{WAN} wan/text2video.py"),
        steps,
        Fact("transition", "multistep UniPC there; deterministic Euler (ode) here",
             f"{WAN} generate.py (--sample_solver unipc)"),
        Fact("timesteps", "integer timesteps", f"{WAN} wan/utils/fm_solvers_unipc.py (timesteps as torch.int64)"),
        Fact("cache", "none (bidirectional)", f"{WAN} wan/modules/model.py (full self-attention)"),
        guidance,
        Fact("text", "umT5-XXL, 512 tokens", f"{WAN} wan/configs/shared_config.py (text_len = 512)"),
        resolution,
    )


_LONGLIVE_CACHE = ("sink 3 + window 6 past frames (local_attn_size 12 incl. sink and current chunk), absolute "
                   "positions, clean context pass at t=0")

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(
        "salt-cf", "Salt + Causal Forcing, chunk-wise", _few_step(3, _FULL21), weights="ema",
        name_hints=(("saltcf",), ("salt", "causalforcing")),
        release=("huggingface domiso/Salt: checkpoints/salt_cf.pt",), template="salt_cf",
        facts=(_chunks(SALT, "configs/inference/salt_causal_forcing.yaml", 3), *_self_forcing_facts(
            SALT, "configs/inference/salt_causal_forcing.yaml",
            Fact("weights", "EMA generator (generator_ema)", f"{SALT} README.md (Salt + Causal Forcing uses the EMA "
                 "generator: inference.py --use_ema)"), _full_cache(SALT))),
    ),
    Family(
        "salt-ll", "Salt + LongLive-style attention (sink + window)", _few_step(3, _LONGLIVE), weights="regular",
        name_hints=(("saltll",), ("salt", "longlive")),
        release=("huggingface domiso/Salt: checkpoints/salt_ll.pt",), template="salt_ll",
        facts=(_chunks(SALT, "configs/inference/salt_longlive.yaml", 3), *_self_forcing_facts(
            SALT, "configs/inference/salt_longlive.yaml",
            Fact("weights", "regular generator (generator), not the EMA", f"{SALT} README.md (the selected Salt + "
                 "LongLive checkpoint uses the regular generator: inference.py without --use_ema)"),
            Fact("cache", _LONGLIVE_CACHE, f"{SALT} configs/inference/salt_longlive.yaml (local_attn_size: 12, "
                 "sink_size: 3) + wan/modules/causal_model_longlive.py (max_attention_size, local_budget)"))),
    ),
    Family(
        "self-forcing", "Self Forcing (DMD), chunk-wise", _few_step(3, _FULL21), weights="ema",
        name_hints=(("selfforcing",),),
        release=("huggingface gdhe17/Self-Forcing: checkpoints/self_forcing_dmd.pt",),
        facts=(_chunks(SF, "configs/self_forcing_dmd.yaml", 3), *_self_forcing_facts(
            SF, "configs/self_forcing_dmd.yaml",
            Fact("weights", "EMA generator (generator_ema)", f"{SF} README.md (inference.py --use_ema)"),
            _full_cache(SF))),
    ),
    Family(
        "causal-forcing-chunkwise", "Causal Forcing, chunk-wise (4 steps)", _few_step(3, _FULL21), weights="regular",
        name_hints=(("causalforcing",), ("causalforcing", "chunkwise")),
        release=("huggingface zhuhz22/Causal-Forcing: chunkwise/causal_forcing.pt",),
        facts=(_chunks(CF, "configs/causal_forcing_dmd_chunkwise.yaml", 3), *_self_forcing_facts(
            CF, "configs/causal_forcing_dmd_chunkwise.yaml",
            Fact("weights", "regular generator (generator)", f"{CF} README.md (the chunk-wise inference command "
                 "has no --use_ema; inference.py: key = 'generator_ema' if args.use_ema else 'generator')"),
            _full_cache(CF))),
    ),
    Family(
        "causal-forcing-framewise", "Causal Forcing, frame-wise (4 steps)", _few_step(1, _FULL21), weights="ema",
        name_hints=(("causalforcing", "framewise"), ("framewise",)),
        release=("huggingface zhuhz22/Causal-Forcing: framewise/causal_forcing.pt",),
        facts=(_chunks(CF, "configs/causal_forcing_dmd_framewise.yaml", 1), *_self_forcing_facts(
            CF, "configs/causal_forcing_dmd_framewise.yaml",
            Fact("weights", "EMA generator (generator_ema)", f"{CF} README.md (frame-wise inference --use_ema)"),
            _full_cache(CF))),
        caveats=("Causal Forcing++'s 1- and 2-step frame-wise files (framewise-1step.pt / framewise-2step.pt) "
                 "denoise their first frame with a 4-step list of its own (denoising_step_list_first_chunk); "
                 "this sampler uses one list for every chunk",),
    ),
    Family(
        "longlive", "LongLive 1.3B (base + long-video LoRA)",
        _few_step(3, dataclasses.replace(_LONGLIVE, recache_keeps_sink=True)), weights="regular",
        name_hints=(("longlive",),), adapter=AdapterPairing("lora.pt", rank=256, alpha=256.0),
        release=("huggingface Efficient-Large-Model/LongLive-1.3B: models/longlive_base.pt + models/lora.pt",),
        template="longlive_prompt_switch",
        facts=(_chunks(LL, "configs/longlive_inference.yaml", 3), *_self_forcing_facts(
            LL, "configs/longlive_train_long.yaml",
            Fact("weights", "regular generator (generator) + LoRA rank 256 / alpha 256 from lora.pt",
                 f"{LL} configs/longlive_inference.yaml (use_ema: false, generator_ckpt longlive_base.pt, "
                 "lora_ckpt lora.pt, adapter rank 256 alpha 256) + inference.py (peft over generator_lora)"),
            Fact("cache", _LONGLIVE_CACHE + "; re-cache of the last <= 12 frames on a prompt switch",
                 f"{LL} configs/longlive_inference.yaml (local_attn_size 12, sink_size 3, context_noise 0) + "
                 "wan/modules/causal_model.py + pipeline/interactive_causal_inference.py (_recache_after_switch)"),
            Fact("resolution", "832x480, long videos (120 latent frames in the inference config)",
                 f"{LL} configs/longlive_train_long.yaml (image_or_video_shape [1, 240, 16, 60, 104]) + "
                 "configs/longlive_inference.yaml (num_output_frames: 120)")),
            Fact("cache", "re-cache on a prompt switch: the sink keeps its K/V from the earlier prompt; the frames "
                 "after it are recomputed under the new one",
                 f"{LL} configs/longlive_inference.yaml + configs/longlive_interactive_inference.yaml (global_sink: "
                 "true) + pipeline/interactive_causal_inference.py (_recache_after_switch: with global_sink the KV "
                 "cache is not zeroed and the re-cache forward passes sink_recache_after_switch=False)")),
    ),
    Family(
        "causvid", "CausVid (autoregressive DMD)",
        _few_step(3, _FULL21, timesteps=(1000.0, 757.0, 522.0), shift=1.0, integer=True), weights="regular",
        name_hints=(("causvid",), ("autoregressivecheckpoint",)),
        release=("huggingface tianweiy/CausVid: autoregressive_checkpoint/model.pt",),
        facts=(
            Fact("architecture", "causal Wan 2.1 T2V 1.3B student", f"{CV} configs/wan_causal_dmd.yaml "
                 "(model_name: wan, generator_name: causal_wan; Wan2.1-T2V-1.3B base, README.md)"),
            Fact("container", "trainer dict {generator: ...}, keys prefixed model.",
                 f"{CV} minimal_inference/autoregressive_inference.py (torch.load(model.pt)['generator'])"),
            Fact("weights", "generator (the file has no EMA entry)",
                 f"{CV} minimal_inference/autoregressive_inference.py (['generator'], strict=True)"),
            _chunks(CV, "configs/wan_causal_dmd.yaml", 3),
            Fact("steps", "t = [1000, 757, 522] used as given (no warp: shift 1 here)",
                 f"{CV} configs/wan_causal_dmd.yaml (denoising_step_list [1000, 757, 522, 0], warp_denoising_step: "
                 "false) + causvid/models/wan/causal_inference.py (the trailing 0 is dropped)"),
            Fact("transition", "re-noise x0 with fresh noise between steps",
                 f"{CV} causvid/models/wan/causal_inference.py (scheduler.add_noise(denoised_pred, randn_like))"),
            Fact("timesteps", "integer timesteps", f"{CV} causvid/models/wan/causal_inference.py (a torch.long "
                 "denoising_step_list times an int64 tensor)"),
            Fact("cache", _FULL_CACHE_FACT, f"{CV} causvid/models/wan/causal_inference.py (KV cache of 32760 "
                 "tokens; rerun with timestep zero to update the cache)"),
            Fact("guidance", "none at sampling (real_guidance_scale 3.5 is the DMD teacher's)",
                 f"{CV} causvid/models/wan/causal_inference.py (one conditional forward per step)"),
            Fact("text", "umT5-XXL, 512 tokens", f"{CV} causvid/models/wan/wan_base/configs/shared_config.py "
                 "(text_len = 512)"),
            Fact("resolution", "832x480, 81 frames", f"{CV} minimal_inference/autoregressive_inference.py "
                 "(noise [1, 21, 16, 60, 104])"),
        ),
    ),
    Family(
        "wan2.1-t2v-1.3b", "Wan 2.1 T2V 1.3B (bidirectional teacher, 50 steps with CFG)",
        SamplingDefaults(causal=False, shift=8.0, timesteps=_wan_grid(), transition="ode", integer_timesteps=True,
                         resolution=(480, 832)),
        guidance_scale=6.0, container="plain", name_hints=(("t2v", "13b"), ("wan21", "13b"), ("wan2113b",)),
        release=("huggingface Wan-AI/Wan2.1-T2V-1.3B: diffusion_pytorch_model.safetensors",
                 "huggingface Comfy-Org/Wan_2.1_ComfyUI_repackaged: split_files/diffusion_models/"
                 "wan2.1_t2v_1.3B_fp16.safetensors"),
        facts=_wan_facts(
            "1.3B", "wan/configs/wan_t2v_1_3B.py (dim 1536, 30 layers)",
            Fact("steps", "50 steps, shift 8 (the 1.3B recommendation; generate.py's default is 5)",
                 f"{WAN} README.md (T2V-1.3B: --sample_shift 8 .. 12, --sample_guide_scale 6) + generate.py "
                 "(sample_steps 50)"),
            Fact("guidance", "CFG 6 with Wan's negative prompt", f"{WAN} README.md (--sample_guide_scale 6 for "
                 "1.3B) + wan/configs/shared_config.py (sample_neg_prompt)"),
            Fact("resolution", "832x480", f"{WAN} wan/configs/__init__.py (SUPPORTED_SIZES t2v-1.3B: 480*832)")),
        caveats=("Wan samples with multistep UniPC; this sampler takes Euler steps on the same 50-step grid",),
    ),
    Family(
        "wan2.1-t2v-14b", "Wan 2.1 T2V 14B (bidirectional teacher, 50 steps with CFG)",
        SamplingDefaults(causal=False, shift=5.0, timesteps=_wan_grid(), transition="ode", integer_timesteps=True,
                         resolution=(720, 1280)),
        guidance_scale=5.0, presets=("wan2.1-t2v-14b",), container="plain",
        name_hints=(("t2v", "14b"), ("wan21", "14b")),
        release=("huggingface Wan-AI/Wan2.1-T2V-14B: diffusion_pytorch_model-0000N-of-00006.safetensors + index",
                 "huggingface Comfy-Org/Wan_2.1_ComfyUI_repackaged: split_files/diffusion_models/"
                 "wan2.1_t2v_14B_fp16.safetensors (and fp8 copies)"),
        facts=_wan_facts(
            "14B", "wan/configs/wan_t2v_14B.py (dim 5120, 40 layers)",
            Fact("steps", "50 steps, shift 5", f"{WAN} generate.py (sample_steps 50, sample_shift 5.0 for t2v)"),
            Fact("guidance", "CFG 5 with Wan's negative prompt", f"{WAN} generate.py (--sample_guide_scale "
                 "default 5.0) + wan/configs/shared_config.py (sample_neg_prompt)"),
            Fact("resolution", "1280x720 (480p also supported)", f"{WAN} generate.py (--size default 1280*720) + "
                 "wan/configs/__init__.py (SUPPORTED_SIZES t2v-14B)")),
        caveats=("Wan samples with multistep UniPC; this sampler takes Euler steps on the same 50-step grid",),
    ),
    Family(
        "salt-export", "an export of this project's trainer, settings in its header", None,
        presets=(), container="salt",
        release=("python -m training export (training/export.py)",),
        facts=tuple(Fact(t, "as recorded in the header", "salt_core/checkpoints/save.py (dit_config, sampling "
                         "header fields) + training/export.py") for t in TOPICS),
    ),
)}


def family_names() -> list[str]:
    return list(FAMILIES)


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {family_names()} (or 'auto')") from None
