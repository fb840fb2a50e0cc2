"""The trainer's configuration schema: nested frozen dataclasses, one section per concern.

Every field carries its documentation (`doc`) so `python -m training config-doc` and docs/training.md
list every YAML option. Loading, `--set` overrides, type checks and the resume hash live in
`training/config_load.py`. Defaults follow the Self Forcing recipe (AdamW lr 2e-6 / 4e-7, betas (0, 0.999), EMA 0.99 from step 200, clip 10);
the example configs in `training/configs/` shrink them for CPU runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from salt_core.kv_cache import CachePolicy
from salt_core.schedules import TimestepConvention

COMMANDS = ("teacher", "ode-pairs", "ode-init", "dmd", "sc-dmd", "salt-ar", "export", "build-latents", "vae",
            "text-encoder", "text-cache")


# Documentation of fields of salt_core dataclasses used as config sections.
EXTERNAL_DOCS: dict[type, dict[str, str]] = {
    CachePolicy: {
        "kind": "'full' (every past chunk), 'window' (last window_frames) or 'sink_window' (sink + window).",
        "window_frames": "window / sink_window: past latent frames kept.",
        "sink_frames": "sink_window: first frames kept forever.",
        "max_frames": "full: hard ceiling on cached frames.",
        "positions": "'absolute' (RoPE index = frame index) or 'cache_relative' (re-indexed cache, no ceiling).",
        "context_t": "Timestep of the context pass that writes a finished chunk's K/V (default 0).",
        "recache_on_switch": "Prompt switch: recompute retained frames' K/V under the new prompt (inference).",
        "recache_keeps_sink": "sink_window re-cache: keep the sink's K/V from the earlier prompt (LongLive's "
                              "global_sink; inference).",
    },
}


@dataclass(frozen=True)
class Bounds:
    """The allowed values of a numeric option (of each element of a list option), checked once at config load."""
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False   # True: `low` itself is not allowed
    high_open: bool = False  # True: `high` itself is not allowed

    def allows(self, v: float) -> bool:
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        return self.high is None or (v < self.high if self.high_open else v <= self.high)

    def __str__(self) -> str:
        def num(x: float) -> str:
            return f"{x:g}"
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{num(self.low)}, "
                    f"{num(self.high)}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {num(self.low)}"
        return f"{'<' if self.high_open else '<='} {num(self.high)}"


POSITIVE = Bounds(0, low_open=True)
NON_NEGATIVE = Bounds(0)
AT_LEAST_1 = Bounds(1)
FRACTION = Bounds(0, 1)
FRACTION_BELOW_1 = Bounds(0, 1, high_open=True)
TIMESTEP = Bounds(0, 1000)
TIMESTEP_ABOVE_0 = Bounds(0, 1000, low_open=True)


def opt(default, doc: str, bounds: Optional[Bounds] = None):
    """A config field with its documentation and, for numbers, its allowed range."""
    return field(default=default, metadata={"doc": doc, "bounds": bounds})


@dataclass(frozen=True)
class RunConfig:
    output_dir: str = opt("runs/default",
                          "Folder for checkpoints/, metrics.jsonl, config.yaml and the exported model.")
    seed: int = opt(0, "Seed of every random draw; each step reseeds from (seed, step, rank), so resume is exact.")
    steps: int = opt(1000, "Total optimisation steps (a resumed run continues up to this number).", AT_LEAST_1)
    log_every: int = opt(10, "Write a metrics.jsonl line every N steps (the values of that step).", AT_LEAST_1)
    save_every: int = opt(500, "Save a trainer checkpoint every N steps (and always at the end).", AT_LEAST_1)
    keep_last: int = opt(2, "Trainer checkpoints to keep; older ones are deleted after a successful save.", AT_LEAST_1)
    resume: str = opt("auto", "'auto' = latest checkpoint in output_dir/checkpoints if any; 'never'; or a path.")
    probe_every: int = opt(
        0, "Log the semigroup defect of the student on a fixed probe batch every N steps (0 = off).", NON_NEGATIVE)
    probe_batch: int = opt(2, "Samples in the fixed probe batch.", AT_LEAST_1)
    device: str = opt("auto", "'auto' (cuda:LOCAL_RANK when available, else cpu), 'cpu' or 'cuda'.")
    threads: int = opt(
        0, "CPU threads of torch in this process (0 = torch's default; tiny models run best on 1).", NON_NEGATIVE)
    precision: Literal["auto", "bf16", "fp32"] = opt(
        "auto", "'auto' = bf16 autocast on CUDA, fp32 on CPU; 'bf16' (CUDA only) or 'fp32'.")
    progress: bool = opt(True, "Show a tqdm progress bar (rank 0).")
    tensorboard: bool = opt(False, "Also log to output_dir/tensorboard when TensorBoard is installed.")
    export_on_finish: bool = opt(True, "After the last step, export the (EMA) network to output_dir/model.safetensors.")
    max_consecutive_skips: int = opt(
        20, "Abort when this many updates in a row were skipped by the NaN/inf guard.", AT_LEAST_1)


@dataclass(frozen=True)
class ModelConfig:
    preset: str = opt("", "DiT preset for a fresh model (salt_core DIT_PRESETS, e.g. 'tiny'); '' = take it from init.")
    init: str = opt("", "Weights to start from: a checkpoint path, 'teacher' (a copy of the teacher), or '' (random).")
    causal: bool = opt(False, "Train/run the network block-causally over chunks of ar.chunk_frames "
                       "(AR student/teacher); in dmd / sc-dmd / salt-ar, teacher and critic: score each chunk "
                       "given its clean past (an AR teacher, its checkpoint's chunks and cache policy).")
    gradient_checkpointing: bool = opt(False, "Recompute block activations in backward to save memory.")
    attention_backend: str = opt("sdpa", "Attention backend passed to WanDiT ('sdpa', 'sage', 'flash').")


@dataclass(frozen=True)
class AdamWConfig:
    lr: float = opt(2e-6, "Learning rate (after warmup).", POSITIVE)
    betas: tuple[float, float] = opt((0.0, 0.999), "AdamW betas (Self Forcing uses beta1 = 0).", FRACTION_BELOW_1)
    weight_decay: float = opt(0.01, "AdamW decoupled weight decay.", NON_NEGATIVE)
    eps: float = opt(1e-8, "AdamW epsilon.", POSITIVE)
    grad_clip: float = opt(
        10.0, "Clip the global gradient norm to this value (0 = no clipping; norm still logged).", NON_NEGATIVE)
    warmup_steps: int = opt(0, "Linear learning-rate warmup over this many updates of this network.", NON_NEGATIVE)
    cosine_updates: int = opt(
        0, "After the warmup, a cosine decay of the learning rate from lr to lr·final_lr_ratio over this many "
           "updates of this network, then held there (0 = constant lr).", NON_NEGATIVE)
    final_lr_ratio: float = opt(0.1, "The cosine decay's end, as a fraction of lr.", FRACTION)


@dataclass(frozen=True)
class OptimConfig:
    student: AdamWConfig = opt(AdamWConfig(lr=2e-6), "Optimiser of the student (Self Forcing: 2e-6).")
    critic: AdamWConfig = opt(AdamWConfig(lr=4e-7), "Optimiser of the critic / fake score (Self Forcing: 4e-7).")
    teacher: AdamWConfig = opt(
        AdamWConfig(lr=1e-4, betas=(0.9, 0.999), grad_clip=1.0), "Optimiser of the `teacher` pre-training command.")
    vae: AdamWConfig = opt(
        AdamWConfig(lr=1e-3, betas=(0.9, 0.999), grad_clip=1.0), "Optimiser of the `vae` command.")
    text: AdamWConfig = opt(
        AdamWConfig(lr=1e-3, betas=(0.9, 0.999), grad_clip=1.0), "Optimiser of the `text-encoder` command.")
    accumulation: int = opt(
        1, "Gradient accumulation: split each rank's batch (data.batch_size / ranks) into this many equal "
           "micro-batches, one forward + backward each (activations of one micro-batch at a time), the loss "
           "averaged over them, then one optimiser step. Equals one step on the whole batch when the loss is "
           "a per-sample mean and random draws are per sample. Must divide data.batch_size / ranks.", AT_LEAST_1)


@dataclass(frozen=True)
class EMAConfig:
    enabled: bool = opt(True, "Keep an exponential moving average of the trained network (exported by default).")
    decay: float = opt(0.99, "EMA decay per update.", FRACTION)
    start_step: int = opt(200, "Before this step the EMA copies the weights; from it on it averages.", NON_NEGATIVE)


@dataclass(frozen=True)
class DataConfig:
    kind: Literal["latents", "prompts", "ode_pairs"] = opt(
        "latents", "'latents' (build-latents output), 'prompts' (text/JSONL file, data-free DMD) or "
        "'ode_pairs' (ode-pairs output).")
    path: str = opt("", "Dataset folder (latents, ode_pairs) or prompt file (.txt one per line, or .jsonl "
                    "with 'prompt').")
    batch_size: int = opt(1, "Global batch size per step, split evenly over the ranks.", AT_LEAST_1)
    shuffle: bool = opt(True, "Reshuffle every epoch (deterministic from run.seed and the epoch).")
    latent_shape: tuple[int, ...] = opt(
        (), "[T, H, W] latent frames/height/width of generated clips for 'prompts' data; latent datasets give "
        "their own (a value here must then match).", AT_LEAST_1)


@dataclass(frozen=True)
class TextConfig:
    encoder: Literal["hash", "salt", "file", "umt5", "cache", "callable"] = opt(
        "hash", "Text embeddings for prompt datasets and the negative prompt: 'hash' (deterministic per-word "
        "vectors, a stand-in without a text model), 'salt' (salt_core's tiny text encoder checkpoint), 'file' "
        "(embeddings .safetensors from build-latents), 'umt5' (umT5-XXL, resident; `text-cache` uses it to build "
        "a cache), 'cache' (a prompt cache from `text-cache`: the encoder never resident) or 'callable' (path "
        "'module:factory' returning an encoder).")
    path: str = opt("", "'salt': the text encoder .safetensors; 'file': the embeddings file; 'umt5': the umT5 file "
                    "(Wan's models_t5_umt5-xxl-enc-bf16.pth, ComfyUI's umt5_xxl_*.safetensors); 'cache': the "
                    "prompt cache; 'callable': 'package.module:factory'.")
    tokenizer: str = opt("", "'umt5': the tokenizer (tokenizer.json / spiece.model / their folder); '' = the one "
                         "inside a ComfyUI umT5 file.")
    cache_output: str = opt("", "`text-cache`: the prompt cache file it writes.")
    cache_encoder: str = opt("", "'cache': the encoder the cache must have been made with (e.g. 'umt5-xxl'); "
                             "'' = any.")
    max_tokens: int = opt(16, "'hash': tokens per prompt (longer prompts are cut, shorter zero-padded).", AT_LEAST_1)
    negative_prompt: str = opt("", "Negative prompt of the teacher's CFG (DMD) and the unconditional input of "
                               "teacher pre-training.")


@dataclass(frozen=True)
class GridConfig:
    shift: float = opt(5.0, "Flow shift s of the noise grid (Self Forcing: 5).", POSITIVE)
    timesteps: tuple[float, ...] = opt(
        (1000.0, 750.0, 500.0, 250.0), "The student's few-step grid, un-shifted 0..1000 (exported as its default).",
        TIMESTEP_ABOVE_0)
    step_counts: tuple[int, ...] = opt(
        (8, 4, 2), "Step counts K sampled for SC-DMD and mixed-step caches; grids are uniform(K) warped by shift.",
        AT_LEAST_1)
    step_probs: tuple[float, ...] = opt(
        (), "Probability of each entry of grid.step_counts (Salt's release: [0.4, 0.4, 0.2] for 8/4/2, one draw "
            "and one exit index per iteration); empty = uniform.", NON_NEGATIVE)
    transition: Literal["renoise", "ode"] = opt("renoise", "How the student moves between grid levels: renoise (fresh noise on x0) or ode.")
    integer_timesteps: bool = opt(False, "Truncate model timesteps to integers (official Wan convention).")

    @property
    def timestep_convention(self) -> TimestepConvention:
        return TimestepConvention(integer=bool(self.integer_timesteps))


@dataclass(frozen=True)
class FlowConfig:
    t_sampling: Literal["uniform", "logit_normal"] = opt(
        "logit_normal", "How `teacher` pre-training draws sigma before the shift.")
    shift: float = opt(3.0, "Shift applied to the drawn sigma during pre-training.", POSITIVE)
    ar_mode: Literal["teacher_forcing", "diffusion_forcing"] = opt(
        "teacher_forcing", "Causal teacher: clean context (teacher forcing) or noisy per-chunk context "
        "(diffusion forcing), one pass with a block-causal frame mask of ar.cache.")
    cond_dropout: float = opt(
        0.1, "Probability of replacing a prompt by the negative prompt (trains CFG).", FRACTION_BELOW_1)
    sample_steps: int = opt(50, "Default sampling steps written into the exported teacher.", AT_LEAST_1)


@dataclass(frozen=True)
class DMDConfig:
    guidance_scale: float = opt(
        3.0, "Teacher CFG x_c + s*(x_c - x_neg) (Self Forcing: 3.0, i.e. w = 4; 0 = none).", NON_NEGATIVE)
    t_min: float = opt(20.0, "Smallest DMD / critic timestep (on the shifted 0..1000 scale).", TIMESTEP)
    t_max: float = opt(980.0, "Largest DMD / critic timestep.", TIMESTEP)
    student_every: int = opt(5, "Update the student every N steps; the critic is updated every step.", AT_LEAST_1)
    exit_step: Union[Literal["random"], int] = opt(
        "random", "Grid step whose forward carries gradient: 'random' (Self Forcing) or a step index.", NON_NEGATIVE)


@dataclass(frozen=True)
class SecondScoreConfig:
    weight: float = opt(
        0.0, "λ of a second L_DMD against a second frozen teacher, added to the first (0 = off): the student "
             "then descends KL(p ‖ p_teacher) + λ·KL(p ‖ p_second), each with its own critic, e.g. a "
             "bidirectional teacher for what whole clips show beside an AR teacher for what each chunk's "
             "clean past decides.", NON_NEGATIVE)
    teacher: ModelConfig = opt(ModelConfig(), "The second real score: init = its checkpoint; causal: true for an "
                               "AR teacher (each chunk scored given its clean past, its checkpoint's chunks and "
                               "cache policy).")
    critic: ModelConfig = opt(ModelConfig(init="teacher"), "Its own fake score, trained (phase `critic2`, "
                              "optim.critic) on the student's samples in the second teacher's form; "
                              "init 'teacher' = a copy of the second teacher; causal as the second teacher's.")


@dataclass(frozen=True)
class SCConfig:
    weight: float = opt(1.0, "lambda_SC, weight of the self-consistency loss (sc-dmd, salt-ar).", NON_NEGATIVE)
    stop_grad: Literal["composed", "direct"] = opt(
        "composed", "Which path is the (stop-gradient) target: the composed two-step path or the direct step.")
    normalise: Literal["displacement", "none"] = opt(
        "displacement", "Divide by sg(|x_e^2 - x_ts|^2 + eps) ('displacement') or not.")
    transition: Literal["student", "renoise", "ode"] = opt(
        "student", "Transition inside Psi: 'student' = grid.transition.")
    eps: float = opt(1e-6, "Epsilon of the displacement normalisation.", POSITIVE)
    form: Literal["semigroup", "endpoint", "average_velocity"] = opt(
        "semigroup", "'semigroup': our form (stop_grad / normalise / transition above); 'endpoint': Salt's released "
        "form, Euler endpoints x_s − Δt·v₁ vs sg(x_m − Δt₂·v₂), weight 1 − t_s/1000, on every gradient chunk's exit "
        "forward; 'average_velocity': its streaming form, v₁ vs sg(average velocity), weight (1 − t_s/1000)² "
        "(losses.shortcut).")
    time_rule: Literal["segments", "half"] = opt(
        "segments", "Released forms: how (t_m, t_e) are drawn from the step list: 'segments' (t_e one of the two "
        "largest segment boundaries below the next step, t_m a list point between) or 'half' (streaming rule).")
    num_segments: int = opt(4, "Released 'segments' rule: segments of the step list (release: 4).", AT_LEAST_1)
    step_counts: tuple[int, ...] = opt(
        (), "SC only when the drawn K is one of these (release: [8]); empty = every K.",
        AT_LEAST_1)


@dataclass(frozen=True)
class ARConfig:
    chunk_frames: int = opt(
        3, "Latent frames per chunk of causal networks (Self Forcing: 3; frame-wise: 1).", AT_LEAST_1)
    cache: CachePolicy = opt(CachePolicy(), "KV-cache memory policy used in training: kind (full, window, "
                             "sink_window), window_frames, sink_frames, max_frames, positions, context_t.")
    cache_step_counts: tuple[int, ...] = opt(
        (8, 4, 2), "K drawn per previous chunk when rolling out the cache (mixed-quality caches; step_lists "
                   "'per_chunk').", AT_LEAST_1)
    rollout_frames: int = opt(
        0, "salt-ar: latent frames the student's training rollout streams (0 = data.latent_shape's T). Longer "
           "(a multiple of chunk_frames) streams past the training length under ar.cache, and only its last T "
           "frames are scored and train the critics (the teachers' length; streaming long tuning); the chunks "
           "before them run without gradient.", NON_NEGATIVE)
    step_lists: Literal["per_chunk", "per_rollout"] = opt(
        "per_chunk", "'per_chunk' (ours): every previous chunk draws its K from ar.cache_step_counts, the current "
        "chunk's K from grid.step_counts, exits per chunk; 'per_rollout' (Salt's release): ONE K from "
        "grid.step_counts (with grid.step_probs) and ONE exit index for every chunk of the rollout.")
    fa_weight: float = opt(1.0, "lambda_FA, weight of the cache-conditioned feature alignment (0 = off).", NON_NEGATIVE)
    fa_layers: tuple[int, ...] = opt((), "Block indices whose outputs are aligned (empty = none).", NON_NEGATIVE)
    fa_x0: bool = opt(True, "Also align the predicted x0 of the current chunk.")
    fa_low_steps: int = opt(2, "K of the rollout that builds the low-quality cache C_low.", AT_LEAST_1)
    fa_high_steps: int = opt(8, "K of the rollout that builds the high-quality reference cache C_high.", AT_LEAST_1)


@dataclass(frozen=True)
class TRDConfig:
    weight: float = opt(0.0, "λ of Salt's released token-relation (Gram) alignment, TRD (release: 0.1; 0 = off; "
                             "salt-ar with ar.step_lists 'per_rollout'): the student's clip vs a no-grad reference "
                             "rollout at more steps, compared through the frozen teacher (losses.gram_alignment).",
                        NON_NEGATIVE)
    block: int = opt(20, "Teacher block whose output tokens are compared (0-based; release: 20 of the 14B's 40).",
                     NON_NEGATIVE)
    margin: float = opt(0.1, "ReLU(|ΔG| − margin): Gram differences below it cost nothing.", NON_NEGATIVE)
    t_low: int = opt(0, "Feature pass level: integers drawn from [t_low, t_high) on the un-shifted 0..1000 scale, "
                        "then warped by grid.shift and clamped to dmd.t_min..t_max.", TIMESTEP)
    t_high: int = opt(200, "Upper end (exclusive) of the feature-pass level draw.", TIMESTEP)
    start_step: int = opt(0, "First trainer step with TRD (release: 1000 SF, 700 CF, 1200 LL).", NON_NEGATIVE)
    reference_pairs: tuple[tuple[int, int], ...] = opt(
        ((2, 4),), "(student K, reference K): draws of K get a no-grad reference rollout with more steps, its own "
                   "cache, same initial noise (release: [[2, 4]], and never for exit index 0).", AT_LEAST_1)
    noise_mode: Literal["independent", "noise_aligned_a", "noise_aligned_b"] = opt(
        "independent", "Reference moves: 'independent' (fresh noise), 'noise_aligned_a' (the student's draw of the "
        "segment), 'noise_aligned_b' (the student's draw at its levels, ODE steps between); losses.reference_path.")
    first_frames: int = opt(0, "Compare only the first N latent frames (0 = all; release: all).", NON_NEGATIVE)


@dataclass(frozen=True)
class ODEConfig:
    output: str = opt("", "ode-pairs output folder ('' = <run.output_dir>/ode_pairs); ode-init reads data.path.")
    teacher_steps: int = opt(
        48, "Teacher ODE steps for ode-pairs (the student grid is inserted into this grid).", AT_LEAST_1)
    guidance_scale: float = opt(
        3.0, "Teacher CFG while generating pairs, x_c + s*(x_c - x_neg) (0 = none).", NON_NEGATIVE)
    num_samples: int = opt(64, "Trajectories to generate (prompts cycle through the dataset).", AT_LEAST_1)
    samples_per_shard: int = opt(64, "Samples per safetensors shard on disk.", AT_LEAST_1)


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: str = opt("", "Trainer checkpoint file, or a run folder (its latest checkpoint).")
    weights: Literal["ema", "trained"] = opt("ema", "Export the EMA weights or the raw trained weights.")
    output: str = opt("", "Output .safetensors path ('' = <run folder>/model.safetensors).")
    dtype: Literal["float32", "bfloat16", "float16"] = opt("float32", "Tensor dtype of the exported file.")
    vae: str = opt("", "The VAE the run was trained with, recorded by content hash in the export ('' = the one "
                   "the run's latents dataset or init checkpoint records).")
    text_encoder: str = opt("", "The text encoder the run was trained with, recorded likewise ('' = text.path "
                            "for the 'salt' encoder, or the init checkpoint's record).")
    bundle: bool = opt(False, "Copy the recorded VAE and text encoder next to the exported file, so the folder "
                       "samples on its own (the export's header finds them there by name and content).")


@dataclass(frozen=True)
class BuildConfig:
    source: Literal["videos", "callable", "random"] = opt(
        "videos", "'videos': a folder of .mp4 (+ same-named .txt prompts) or a .jsonl manifest "
        "{video, prompt}; 'callable': 'module:function' yielding (frames [T,H,W,3] uint8, prompt); "
        "'random': random latents of build.latent_shape with random prompts (a stand-in, no VAE).")
    path: str = opt("", "The folder / manifest / callable path of the source.")
    output: str = opt("", "Output dataset folder.")
    vae: str = opt("", "VAE checkpoint (salt_core.checkpoints.load_vae) encoding the clips.")
    frames: int = opt(0, "Pixel frames per clip, 4k+1 (0 = the longest 4k+1 prefix of each clip); a 'callable' "
                      "source that takes a `frames` argument is asked for clips this long.", NON_NEGATIVE)
    limit: int = opt(0, "Stop after this many clips (0 = all; 'random': the sample count, default 16).", NON_NEGATIVE)
    latent_shape: tuple[int, ...] = opt((16, 3, 4, 4), "'random': per-sample latent shape [C, T, H, W].", AT_LEAST_1)
    samples_per_shard: int = opt(64, "Samples per safetensors shard on disk.", AT_LEAST_1)


@dataclass(frozen=True)
class WorldClipsConfig:
    frames: int = opt(17, "Pixel frames per world clip, 4k+1 (16 fps).", AT_LEAST_1)
    height: int = opt(64, "Clip height in pixels (a multiple of 8).", AT_LEAST_1)
    width: int = opt(64, "Clip width in pixels (a multiple of 8).", AT_LEAST_1)
    seed: int = opt(0, "Seed of the world's scene stream (training.world.WorldDataset).")


@dataclass(frozen=True)
class VAETrainConfig:
    preset: str = opt("tiny", "VAE preset of a fresh model (salt_core VAE_PRESETS); ignored when init is set.")
    init: str = opt("", "A VAE checkpoint to start from ('' = fresh preset).")
    init_scheme: str = opt(
        "lsuv", "Initialisation of a fresh preset: 'lsuv' rescales each conv to unit output std on a batch of "
                "training clips (training/vae_init.py; the default init starts with a latent that ignores the "
                "image), 'default' keeps PyTorch's. Ignored when init is set.")
    dim: int = opt(0, "Base width of a fresh preset (VAEConfig.dim; 0 = the preset's).", NON_NEGATIVE)
    dim_mult: tuple[int, ...] = opt((), "Width multipliers per level of a fresh preset (() = the preset's; keep "
                                        "4 entries for 8x space).", AT_LEAST_1)
    num_res_blocks: int = opt(0, "Residual blocks per level of a fresh preset (0 = the preset's).", NON_NEGATIVE)
    temporally_local: bool = opt(
        False, "Train a temporally local VAE (VAEConfig.temporally_local: each latent frame's group of 4 pixel "
               "frames encoded and decoded from its own frames only; also applied to an init checkpoint).")
    decoder_context: int = opt(
        0, "Latent frames before each one that a temporally local decoder's trunk also sees (VAEConfig."
           "decoder_context; 1 lets it spread the motion between two latent frames over a group's 4 pixel frames; "
           "also applied to an init checkpoint). Train it on clips of >= 9 frames so that a group's context is a "
           "group, not only the first frame.", NON_NEGATIVE)
    clips: WorldClipsConfig = opt(WorldClipsConfig(), "Training clips from the synthetic world.")
    max_start_frame: int = opt(
        0, "Each training clip starts at a world frame drawn per clip from 0..max_start_frame (0 = every clip "
           "starts at frame 0): short clips of a temporally local VAE then also show the later positions and "
           "sizes a long clip reaches.", NON_NEGATIVE)
    train_encoder: bool = opt(
        True, "Train the encoder too (false: only the decoder learns; needs vae.init, whose encoder and latent "
              "statistics are kept bit for bit, so latents built with the init stay valid for models trained on "
              "them).")
    l1_weight: float = opt(1.0, "Weight of the L1 reconstruction loss (pixels in -1..1).", NON_NEGATIVE)
    mse_weight: float = opt(
        0.0, "Weight of the squared error (pixels in -1..1), object-weighted like the L1: PSNR is a squared-error "
             "measure, the L1 a median-like one.", NON_NEGATIVE)
    ssim_weight: float = opt(0.2, "Weight of 1 - SSIM (kornia, 7x7 window, per frame).", NON_NEGATIVE)
    object_weight: float = opt(
        0.0, "Extra L1 weight on object pixels (those differing from the clip's background): each pixel weighs "
             "1 + object_weight·mask, normalised by the mean weight. Objects cover ~1-5% of a frame; without it the "
             "tiny VAE learns the background first and loses the objects in short runs.", NON_NEGATIVE)
    temporal_weight: float = opt(
        0.0, "Weight of the L1 between the reconstruction's and the clip's frame-to-frame differences "
             "(|Δx̂ − Δx| over consecutive frames, object-weighted like the L1): penalises colour flicker, across "
             "group boundaries too when the clips hold two groups (9 frames).", NON_NEGATIVE)
    kl_weight: float = opt(1e-6, "Weight of the KL divergence of the posterior to N(0, I).", NON_NEGATIVE)
    latent_noise: float = opt(
        0.0, "Decoder robustness: Gaussian noise of a standard deviation drawn per clip from U(0, latent_noise) is "
             "added to the latent in the DiTs' normalised space (per-channel mean/std of vae.init) before it is "
             "decoded, and the loss still asks for the clean clip, so the decoder learns to map a DiT's slightly "
             "off latents back onto clean frames (0 = off; needs vae.train_encoder=false).", NON_NEGATIVE)
    sample_posterior: bool = opt(False, "Decode a posterior sample mu + sigma·eps (true) or the mean mu (false: "
                                 "converges much faster in short runs; the KL term still bounds mu).")
    stats_clips: int = opt(64, "Training clips whose posterior means give the per-channel latent mean/std.", AT_LEAST_1)
    eval_clips: int = opt(
        16, "Held-out clips (split 'heldout') on which the reconstruction PSNR is reported.", NON_NEGATIVE)
    output: str = opt("", "The trained VAE .safetensors ('' = <run.output_dir>/vae.safetensors).")


@dataclass(frozen=True)
class TextTrainConfig:
    dim: int = opt(64, "Encoder width (salt_core.text.TextEncoderConfig.dim).", AT_LEAST_1)
    num_layers: int = opt(2, "Transformer layers.", AT_LEAST_1)
    num_heads: int = opt(4, "Attention heads.", AT_LEAST_1)
    ffn_dim: int = opt(128, "Feed-forward width.", AT_LEAST_1)
    text_dim: int = opt(32, "Output width = the DiT's text_dim.", AT_LEAST_1)
    max_len: int = opt(32, "Longest prompt in words (0 = the grammar's longest prompt).", NON_NEGATIVE)
    seed: int = opt(0, "Seed of the world's scene stream for training prompts.")
    paraphrase_weight: float = opt(
        0.1, "Weight of the paraphrase loss: two prompts of one scene pulled to the same pooled embedding.",
        NON_NEGATIVE)
    eval_prompts: int = opt(
        512, "Held-out prompts (unseen scene seeds and split 'heldout') for the accuracy report.", AT_LEAST_1)
    output: str = opt("", "The trained encoder .safetensors ('' = <run.output_dir>/text_encoder.safetensors).")


@dataclass(frozen=True)
class DistributedConfig:
    strategy: Literal["ddp", "fsdp"] = opt(
        "ddp", "'ddp': replicated networks, gradients all-reduced; 'fsdp': parameters sharded (FSDP2) for big models.")
    backend: Literal["auto", "gloo", "nccl"] = opt("auto", "Process-group backend ('auto': nccl on CUDA, gloo on CPU).")
    offload_teacher: bool = opt(False, "fsdp: keep the frozen teacher's (sharded) weights in CPU memory, gathered to "
                                "the GPU block by block for each forward (FSDP2 CPUOffloadPolicy): frees the 14B "
                                "teacher's GPU share at the cost of PCIe traffic per teacher forward.")


@dataclass(frozen=True)
class TrainConfig:
    run: RunConfig = opt(RunConfig(), "Run folder, steps, logging, checkpoints, device.")
    data: DataConfig = opt(DataConfig(), "Training data.")
    text: TextConfig = opt(TextConfig(), "Text embeddings of prompts and the negative prompt.")
    teacher: ModelConfig = opt(ModelConfig(), "The teacher (real score): frozen in distillation, trained by `teacher`.")
    student: ModelConfig = opt(ModelConfig(init="teacher"), "The few-step student (generator).")
    critic: ModelConfig = opt(ModelConfig(init="teacher"), "The critic (fake score), trained on student samples.")
    optim: OptimConfig = opt(OptimConfig(), "AdamW per network.")
    ema: EMAConfig = opt(EMAConfig(), "EMA of the trained network.")
    grid: GridConfig = opt(GridConfig(), "The student's noise grid and transition.")
    flow: FlowConfig = opt(FlowConfig(), "Flow-matching pre-training (`teacher`).")
    dmd: DMDConfig = opt(DMDConfig(), "Distribution matching (dmd, sc-dmd, salt-ar).")
    second_score: SecondScoreConfig = opt(SecondScoreConfig(), "A second real score and its critic beside the "
                                          "teacher's (dmd, sc-dmd, salt-ar).")
    sc: SCConfig = opt(SCConfig(), "Self-consistency loss (sc-dmd, salt-ar).")
    ar: ARConfig = opt(ARConfig(), "Chunked causal training (salt-ar, causal teacher / ode-init).")
    trd: TRDConfig = opt(TRDConfig(), "Salt's released TRD alignment through the frozen teacher.")
    ode: ODEConfig = opt(ODEConfig(), "Teacher ODE pairs (ode-pairs).")
    export: ExportConfig = opt(ExportConfig(), "The `export` command.")
    build: BuildConfig = opt(BuildConfig(), "The `build-latents` command.")
    vae: VAETrainConfig = opt(VAETrainConfig(), "The `vae` command: the tiny video VAE on world clips.")
    textenc: TextTrainConfig = opt(TextTrainConfig(), "The `text-encoder` command: the tiny text encoder on "
                                   "world prompts.")
    distributed: DistributedConfig = opt(DistributedConfig(), "Multi-process training under torchrun.")

    def __post_init__(self) -> None:
        counts, probs = self.grid.step_counts, self.grid.step_probs
        if probs and (len(probs) != len(counts) or min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6):
            raise ValueError(f"grid.step_probs {list(probs)} must give one non-negative probability per entry of "
                             f"grid.step_counts {list(counts)}, summing to 1")
        a, b = self.optim.accumulation, self.data.batch_size
        if a < 1:
            raise ValueError(f"optim.accumulation must be >= 1, got {a}")
        if b % a:
            raise ValueError(f"optim.accumulation={a} does not divide data.batch_size={b}: micro-batches must "
                             "have equal sizes; make data.batch_size a multiple of optim.accumulation")
