"""`vae`: train the tiny Wan-architecture video VAE (8x space, 4x time) on synthetic-world clips.

Loss per clip: l1_weight·(object-weighted |x̂ − x|) + ssim_weight·(1 − SSIM(x̂, x)) (kornia, per frame)
+ mse_weight·(object-weighted (x̂ − x)²) + temporal_weight·(object-weighted |Δ_t x̂ − Δ_t x|, frame-to-frame
changes) + kl_weight·KL(q(z|x) ‖ N(0, I)),
with x̂ decoded from the posterior mean, or a posterior sample with `vae.sample_posterior` (noise keyed per
sample, so resume is exact). After the last step the
EMA (or trained) weights get per-channel latent statistics (mean/std of the posterior means over
`vae.stats_clips` training clips) written into their VAEConfig, so `load_vae` normalises with them; the file is
saved with `salt_core.checkpoints.save_vae` and the reconstruction PSNR on `vae.eval_clips` held-out clips is
printed and stored in `<run.output_dir>/vae_eval.json`.
"""
from __future__ import annotations

import dataclasses
import json
import os

import kornia
import torch

from salt_core.checkpoints import load_vae, save_vae
from salt_core.vae import FeatureCache, VAEConfig, WanVAE, vae_preset

from ..checkpoint import latest_checkpoint, load_checkpoint
from ..config import TrainConfig, WorldClipsConfig
from ..config_load import ConfigError
from ..seeding import per_sample, per_sample_randn
from ..task import NetSpec, Task
from ..vae_init import lsuv_init
from .common import Data, run_training

SSIM_WINDOW = 7


INIT_SCHEMES = ("lsuv", "default")
LSUV_CLIPS = 8
OBJECT_THRESHOLD = 0.02  # a pixel belongs to an object when any channel differs from the background by more (0..1)


class WorldVideos(torch.utils.data.Dataset):
    """World clips as trainer samples: {"video": [3, T, H, W] in -1..1, "objects": [1, T, H, W] 0/1 mask}."""

    def __init__(self, clips: WorldClipsConfig, split: str = "train", length: int = 1_000_000,
                 max_start_frame: int = 0):
        from training.world import WorldDataset

        try:
            self.world = WorldDataset(clips.frames, clips.height, clips.width, split=split, length=length,
                                      seed=clips.seed)
        except ValueError as e:
            raise ConfigError(f"vae.clips: {e}") from None
        self.max_start_frame = max_start_frame

    def __len__(self) -> int:
        return len(self.world)

    def __getitem__(self, index: int) -> dict:
        from training.world.render import background_image, render

        w = self.world
        scene = w.scene(index)
        start = start_frame(w.seed, index, self.max_start_frame)
        video = render(scene, w.frames, w.height, w.width, w.fps, start_frame=start)  # [T, H, W, 3] in 0..1
        background = background_image(scene.background, w.height, w.width)                 # [H, W, 3]
        objects = ((video - background).abs().amax(-1) > OBJECT_THRESHOLD).float()          # [T, H, W]
        return {"video": video.permute(3, 0, 1, 2) * 2 - 1, "objects": objects.unsqueeze(0)}


def start_frame(seed: int, index: int, max_start_frame: int) -> int:
    """The first world frame of training clip `index`: fixed by (seed, index), uniform in 0..max_start_frame."""
    if max_start_frame <= 0:
        return 0
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return int(torch.randint(0, max_start_frame + 1, (1,), generator=g))


def object_weighted_mean(error: torch.Tensor, objects: torch.Tensor | None, object_weight: float) -> torch.Tensor:
    """error: [B, C, T, H, W] per pixel; objects: [B, 1, T, H, W] 0/1 -> the mean with each pixel weighing
    1 + object_weight·objects, divided by the mean weight (so the scale stays that of the plain mean)."""
    if objects is None or object_weight <= 0:
        return error.mean()
    weight = 1 + object_weight * objects
    return (error * weight).mean() / weight.mean()


def reconstruction_losses(recon: torch.Tensor, video: torch.Tensor, objects: torch.Tensor | None = None,
                          object_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """recon, video: [B, 3, T, H, W] in -1..1; objects: [B, 1, T, H, W] 0/1 -> (weighted L1, 1 − SSIM), scalars."""
    l1 = object_weighted_mean((recon - video).abs(), objects, object_weight)
    frames = lambda v: ((v + 1) / 2).transpose(1, 2).flatten(0, 1)  # noqa: E731  [B*T, 3, H, W] in 0..1
    ssim = kornia.metrics.ssim(frames(recon), frames(video), SSIM_WINDOW).mean()
    return l1, 1 - ssim


def temporal_difference_loss(recon: torch.Tensor, video: torch.Tensor, objects: torch.Tensor,
                             object_weight: float) -> torch.Tensor:
    """recon, video: [B, 3, T, H, W]; objects: [B, 1, T, H, W] -> mean |Δ_t recon − Δ_t video| over consecutive
    frames (0 for one frame), each pixel weighted 1 + object_weight·(object in either frame), normalised."""
    if recon.shape[2] < 2:
        return recon.new_zeros(())
    error = (recon.diff(dim=2) - video.diff(dim=2)).abs()                      # [B, 3, T-1, H, W]
    return object_weighted_mean(error, torch.maximum(objects[:, :, 1:], objects[:, :, :-1]), object_weight)


def kl_divergence(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^log_var) ‖ N(0, 1)) per latent element, averaged."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).mean()


def psnr(recon: torch.Tensor, video: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean over clips of the PSNR (dB) of [B, 3, T, H, W] videos in -1..1, measured in 0..1; with a
    [B, 1, T, H, W] 0/1 mask, only over the masked pixels (clips without any are left out)."""
    sq = ((recon - video) / 2) ** 2
    if mask is None:
        mse = sq.flatten(1).mean(1)
    else:
        count = mask.flatten(1).sum(1) * sq.shape[1]
        keep = count > 0
        if not keep.any():
            return float("nan")
        mse = ((sq * mask).flatten(1).sum(1)[keep] / count[keep])
    return float((10 * torch.log10(1 / mse.detach().clamp_min(1e-10))).mean())


def initial_vae(v, device) -> WanVAE:
    """The model a run starts from: vae.init's weights, or a fresh vae.preset with the width / depth overrides;
    either way temporally local (and with the decoder context) as vae.temporally_local (vae.decoder_context) says."""
    if v.init:
        if not os.path.isfile(v.init):
            raise ConfigError(f"vae.init {v.init!r}: no such VAE checkpoint")
        model, _ = load_vae(v.init, device=device)
        try:
            config = dataclasses.replace(model.config, temporally_local=v.temporally_local,
                                         decoder_context=v.decoder_context)
        except ValueError as e:
            raise ConfigError(f"vae.init {v.init!r} with vae.temporally_local / vae.decoder_context: {e}") from None
        state = model.state_dict()
    else:
        try:
            preset = vae_preset(v.preset)
            sizes = {"dim": v.dim, "dim_mult": v.dim_mult, "num_res_blocks": v.num_res_blocks}
            config = dataclasses.replace(preset, temporally_local=v.temporally_local,
                                         decoder_context=v.decoder_context,
                                         **{k: value for k, value in sizes.items() if value})
        except ValueError as e:
            raise ConfigError(f"vae.preset {v.preset!r} with dim / dim_mult / num_res_blocks / "
                              f"decoder_context: {e}") from None
        state = None
    model = WanVAE(config)
    if state is not None:
        model.load_state_dict(state)
    return model.to(device)


class VAETask(Task):
    primary = "vae"

    def __init__(self, cfg: TrainConfig, device):
        self.cfg, v = cfg, cfg.vae
        for key in ("l1_weight", "mse_weight", "ssim_weight", "kl_weight", "object_weight", "temporal_weight"):
            if getattr(v, key) < 0:
                raise ConfigError(f"vae.{key} must be >= 0, got {getattr(v, key)}")
        if not v.train_encoder and not v.init:
            raise ConfigError("vae.train_encoder=false trains the decoder of an existing VAE: set vae.init to it")
        if v.latent_noise > 0 and v.train_encoder:
            raise ConfigError("vae.latent_noise > 0 needs vae.train_encoder=false: the noise is scaled by the "
                              "latent statistics of vae.init, which a trained encoder would move away from")
        self.model = initial_vae(v, device)
        if not v.train_encoder:
            for part in encoder_side(self.model):
                part.requires_grad_(False)  # the optimiser and the EMA take trainable parameters only
        if v.init_scheme not in INIT_SCHEMES:
            raise ConfigError(f"vae.init_scheme {v.init_scheme!r} is unknown; allowed: {list(INIT_SCHEMES)}")
        self.model.train()
        c, f = v.clips, self.model.config
        if (c.frames - 1) % f.temporal_factor or c.height % f.spatial_factor or c.width % f.spatial_factor:
            raise ConfigError(f"vae.clips: {c.frames} frames of {c.height}x{c.width} do not fit the VAE "
                              f"({f.temporal_factor}k+1 frames, sizes divisible by {f.spatial_factor})")
        self.data = WorldVideos(c, max_start_frame=v.max_start_frame)
        if not v.init and v.init_scheme == "lsuv":
            self._lsuv(device)

    def _lsuv(self, device) -> None:
        """Data-dependent init on clips past the end of the training stream (fixed by the seed, so a resumed
        run rebuilds the same starting point before its checkpoint overwrites it)."""
        batch = torch.stack([self.data[len(self.data) - 1 - i]["video"] for i in range(LSUV_CLIPS)]).to(device)
        model = self.model
        lsuv_init(model, lambda: decode_unclamped(model, model.encode_moments(batch)[0]))

    def networks(self) -> dict[str, NetSpec]:
        return {"vae": NetSpec(self.model, self.cfg.optim.vae, ema=True)}

    def phases(self, step: int) -> list[str]:
        return ["vae"]

    def loss(self, phase: str, batch: dict, step: int):
        v, video = self.cfg.vae, batch["video"].float()
        with torch.set_grad_enabled(v.train_encoder):
            mu, log_var = self.model.encode_moments(video)
        log_var = log_var.clamp(-30.0, 20.0)
        z, sample_ids = mu, batch["sample_id"].tolist()
        if v.sample_posterior:
            noise = per_sample_randn(self.cfg.run.seed, step, sample_ids, "vae", mu.shape[1:])
            z = mu + noise.to(mu) * (0.5 * log_var).exp()
        if v.latent_noise > 0:
            z = self._noised(z, sample_ids, step)
        recon = decode_unclamped(self.model, z)
        objects = batch["objects"].float()
        l1, dssim = reconstruction_losses(recon, video, objects, v.object_weight)
        kl = kl_divergence(mu, log_var)
        loss = v.l1_weight * l1 + v.ssim_weight * dssim + v.kl_weight * kl
        logs = {"l1": l1.detach().item(), "one_minus_ssim": dssim.detach().item(), "kl": kl.detach().item()}
        if v.mse_weight > 0:
            mse = object_weighted_mean((recon - video).square(), objects, v.object_weight)
            loss = loss + v.mse_weight * mse
            logs["mse"] = mse.detach().item()
        if v.temporal_weight > 0:
            temporal = temporal_difference_loss(recon, video, objects, v.object_weight)
            loss = loss + v.temporal_weight * temporal
            logs["temporal"] = temporal.detach().item()
        return loss, logs

    def _noised(self, z: torch.Tensor, sample_ids: list[int], step: int) -> torch.Tensor:
        """Raw latents [B, z, t, h, w] plus noise of std U(0, vae.latent_noise) per clip in normalised units."""
        seed, top = self.cfg.run.seed, self.cfg.vae.latent_noise
        noise = per_sample_randn(seed, step, sample_ids, "latent_noise", z.shape[1:]).to(z)
        scale = per_sample(seed, step, sample_ids, "latent_noise_scale",
                           lambda g: torch.rand((), generator=g)).to(z) * top              # [B]
        return z + noise * scale.view(-1, 1, 1, 1, 1) * self.model.latent_std.to(z)


def encoder_side(model: WanVAE) -> tuple[torch.nn.Module, ...]:
    """The modules that map pixels to the posterior's moments (frozen by vae.train_encoder=false)."""
    return model.encoder, model.conv1


def decode_unclamped(model: WanVAE, z: torch.Tensor) -> torch.Tensor:
    """`WanVAE.decode` in one decoder pass without its final clamp to [-1, 1], so that saturated pixels
    still get gradients. z: raw latents [B, z, t, h, w] -> [B, 3, 1 + 4(t-1), 8h, 8w]."""
    return model.decoder(model.conv2(z), FeatureCache())


def trained_vae(output_dir: str, device) -> tuple[WanVAE, str]:
    """The run's newest checkpoint -> WanVAE with its EMA weights (trained ones when EMA was off)."""
    path = latest_checkpoint(output_dir)
    if path is None:
        raise ConfigError(f"{output_dir}: no trainer checkpoint to export")
    net = load_checkpoint(path)["nets"]["vae"]
    model = WanVAE(VAEConfig.from_dict(json.loads(net["dit_config"])))
    tensors = dict(net["model"])
    used = "trained"
    if net.get("ema"):
        tensors.update(net["ema"])
        used = "ema"
    model.load_state_dict({k: t.float() for k, t in tensors.items()})
    return model.to(device).eval(), used


def clip_batches(data: WorldVideos, count: int, batch: int = 4):
    """The first `count` samples in batches of stacked fields:
    {"video": [B, 3, T, H, W], "objects": [B, 1, T, H, W]}."""
    for start in range(0, count, batch):
        items = [data[i] for i in range(start, min(count, start + batch))]
        yield {k: torch.stack([item[k] for item in items]) for k in items[0]}


@torch.no_grad()
def latent_statistics(model: WanVAE, data: WorldVideos, count: int, device) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the raw posterior means over `count` clips."""
    mus = [model.encode(b["video"].to(device)).float().transpose(0, 1).flatten(1) for b in clip_batches(data, count)]
    mu = torch.cat(mus, dim=1)  # [z, N]
    return mu.mean(1).tolist(), mu.std(1).clamp_min(1e-4).tolist()


@torch.no_grad()
def heldout_psnr(model: WanVAE, clips: WorldClipsConfig, count: int, device) -> tuple[float, float]:
    """-> (PSNR over whole frames, PSNR over object pixels only), dB, on `count` held-out clips."""
    data = WorldVideos(clips, split="heldout", length=max(1, count))
    whole, objects, n = 0.0, 0.0, 0
    for b in clip_batches(data, count):
        x, mask = b["video"].to(device), b["objects"]
        recon = model.decode(model.encode(x), frames_per_step=x.shape[2])
        whole += psnr(recon, x) * len(x)
        objects += psnr(recon, x, mask.to(device)) * len(x)
        n += len(x)
    return whole / max(1, n), objects / max(1, n)


def finish(cfg: TrainConfig, device) -> dict:
    """Latent statistics into the config, save_vae, held-out PSNR."""
    v = cfg.vae
    model, used = trained_vae(cfg.run.output_dir, device)
    if v.train_encoder:
        mean, std = latent_statistics(model, WorldVideos(v.clips), max(1, v.stats_clips), device)
    else:  # the init's encoder, so its statistics (the run's config carries them): latents built with them stay valid
        mean, std = list(model.config.latent_mean), list(model.config.latent_std)
    config = dataclasses.replace(model.config, latent_mean=tuple(mean), latent_std=tuple(std))
    final = WanVAE(config)
    final.load_state_dict(model.state_dict())  # the statistics are buffers of the config, not weights
    final = final.to(device).eval()
    value, object_value = (heldout_psnr(final, v.clips, v.eval_clips, device) if v.eval_clips > 0
                           else (float("nan"), float("nan")))
    output = v.output or os.path.join(cfg.run.output_dir, "vae.safetensors")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    extra = {"salt_trainer_command": "vae", "salt_trainer_step": str(cfg.run.steps), "salt_trainer_weights": used,
             "salt_vae_heldout_psnr": f"{value:.3f}", "salt_vae_heldout_object_psnr": f"{object_value:.3f}"}
    out = save_vae(output, final, extra_metadata=extra)
    report = {"output": out, "weights": used, "heldout_psnr_db": value, "heldout_object_psnr_db": object_value,
              "eval_clips": v.eval_clips,
              "stats_clips": v.stats_clips, "latent_mean": mean, "latent_std": std}
    with open(os.path.join(cfg.run.output_dir, "vae_eval.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(f"saved VAE ({used} weights) to {out}; held-out reconstruction PSNR {value:.2f} dB "
          f"(object pixels {object_value:.2f} dB) over {v.eval_clips} clips")
    return report


def run(cfg: TrainConfig, command: str = "vae") -> dict:
    holder: dict = {}

    def build_task(cfg, ctx):
        task = VAETask(cfg, ctx.device)
        holder["device"] = ctx.device
        return task, Data(task.data, (0, 0, 0, 0), 0)

    result = run_training(cfg, "vae", build_task)
    if int(os.environ.get("RANK", "0")) == 0:
        result["vae"] = finish(cfg, holder["device"])
    return result
