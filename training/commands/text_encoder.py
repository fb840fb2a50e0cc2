"""`text-encoder`: train salt_core's tiny text encoder on synthetic-world prompts.

Each sample is a training scene with two paraphrased prompts. Loss: cross-entropy of attribute heads
(training/text_heads.py: per object slot colour/shape/motion/size, and the background, "not said" included)
on both prompts, + textenc.paraphrase_weight · (1 − cos) between the two prompts' mean-pooled embeddings.
The heads are discarded; the encoder (vocabulary = the grammar's words) is saved with
`salt_core.text.save_text_encoder`, and its attribute accuracy on held-out paraphrases (scenes of the held-out
split, prompt seeds never used in training) is printed and stored in `<run.output_dir>/text_eval.json`.
"""
from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from salt_core.text import TextEncoder, TextEncoderConfig, save_text_encoder

from ..checkpoint import latest_checkpoint, load_checkpoint
from ..config import TextTrainConfig, TrainConfig
from ..config_load import ConfigError
from ..task import NetSpec, Task
from ..text_heads import FIELDS, AttributeHeads, accuracy, pooled, prompt_targets
from .common import Data, run_training

PARAPHRASE_SEED = 1_000_000_007    # second prompt of a training scene: prompt seed + this
EVAL_PROMPT_SEED = 7_000_000_000   # held-out paraphrases: prompt seeds from here on


def encoder_config(t: TextTrainConfig) -> TextEncoderConfig:
    from training.world import max_prompt_words

    max_len = t.max_len or max_prompt_words(2)
    try:  # fixed-length output (pad_to = max_len): batches and single prompts give the DiT the same context
        return TextEncoderConfig(dim=t.dim, num_layers=t.num_layers, num_heads=t.num_heads, ffn_dim=t.ffn_dim,
                                 text_dim=t.text_dim, max_len=max_len, pad_to=max_len)
    except ValueError as e:
        raise ConfigError(f"textenc: {e}") from None


class EncoderWithHeads(nn.Module):
    """The encoder and its training heads as one trainer network (`config` = the encoder's)."""

    def __init__(self, config: TextEncoderConfig):
        from training.world import vocabulary

        super().__init__()
        self.encoder = TextEncoder(config, vocabulary())
        self.heads = AttributeHeads(config.text_dim)

    @property
    def config(self) -> TextEncoderConfig:
        return self.encoder.config

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """-> (emb [B, L, D], mask [B, L], logits per field)."""
        tok = self.encoder.tokenizer(prompts, self.config.max_len)
        device = self.heads.queries.device
        ids, mask = tok.ids.to(device), tok.mask.to(device)
        emb = self.encoder(ids, mask)
        return emb, mask, self.heads(emb, mask)


class WorldPrompts(torch.utils.data.Dataset):
    """Training scenes with two paraphrases: {"prompt", "prompt2", "targets", "targets2"}."""

    def __init__(self, seed: int, length: int = 10_000_000):
        self.seed, self.length = seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        from training.world import prompt_for, sample_scene

        s = self.seed * 1_000_003 + index
        scene = sample_scene(s, split="train")
        p1, p2 = prompt_for(scene, seed=s), prompt_for(scene, seed=s + PARAPHRASE_SEED)
        return {"prompt": p1, "prompt2": p2, "targets": prompt_targets(p1), "targets2": prompt_targets(p2)}


def heads_loss(logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    return sum(F.cross_entropy(lg, targets[:, i]) for i, lg in enumerate(logits)) / len(logits)


class TextEncoderTask(Task):
    primary = "text_encoder"

    def __init__(self, cfg: TrainConfig, device):
        self.cfg = cfg
        if cfg.textenc.paraphrase_weight < 0:
            raise ConfigError(f"textenc.paraphrase_weight must be >= 0, got {cfg.textenc.paraphrase_weight}")
        self.model = EncoderWithHeads(encoder_config(cfg.textenc)).to(device).train()
        self.data = WorldPrompts(cfg.textenc.seed)

    def networks(self) -> dict[str, NetSpec]:
        return {"text_encoder": NetSpec(self.model, self.cfg.optim.text, ema=True)}

    def phases(self, step: int) -> list[str]:
        return ["text_encoder"]

    def loss(self, phase: str, batch: dict, step: int):
        emb1, mask1, logits1 = self.model(batch["prompt"])
        emb2, mask2, logits2 = self.model(batch["prompt2"])
        ce = (heads_loss(logits1, batch["targets"]) + heads_loss(logits2, batch["targets2"])) / 2
        para = (1 - F.cosine_similarity(pooled(emb1, mask1), pooled(emb2, mask2), dim=-1)).mean()
        loss = ce + self.cfg.textenc.paraphrase_weight * para
        with torch.no_grad():
            acc = accuracy(logits1, batch["targets"].cpu())["all"]
        return loss, {"heads_ce": ce.detach().item(), "paraphrase": para.detach().item(), "accuracy_all": acc}


def trained_model(output_dir: str, config: TextEncoderConfig) -> tuple[EncoderWithHeads, str]:
    path = latest_checkpoint(output_dir)
    if path is None:
        raise ConfigError(f"{output_dir}: no trainer checkpoint to export")
    net = load_checkpoint(path)["nets"]["text_encoder"]
    model = EncoderWithHeads(TextEncoderConfig.from_dict(json.loads(net["dit_config"])))
    tensors, used = dict(net["model"]), "trained"
    if net.get("ema"):
        tensors.update(net["ema"])
        used = "ema"
    model.load_state_dict({k: t.float() for k, t in tensors.items()})
    return model.eval(), used


@torch.no_grad()
def heldout_report(model: EncoderWithHeads, count: int) -> dict:
    """Attribute accuracy on held-out paraphrases, and the mean cosine of pooled embeddings for two
    paraphrases of one scene vs two different scenes."""
    from training.world import heldout_scenes, prompt_for

    scenes = heldout_scenes(count, seed=1)
    p1 = [prompt_for(s, seed=EVAL_PROMPT_SEED + 2 * i) for i, s in enumerate(scenes)]
    p2 = [prompt_for(s, seed=EVAL_PROMPT_SEED + 2 * i + 1) for i, s in enumerate(scenes)]
    targets = torch.stack([prompt_targets(p) for p in p1])
    emb1, mask1, logits = model(p1)
    emb2, mask2, _ = model(p2)
    a, b = F.normalize(pooled(emb1, mask1), dim=-1), F.normalize(pooled(emb2, mask2), dim=-1)
    return {"prompts": count, "accuracy": accuracy(logits, targets),
            "cosine_same_scene": float((a * b).sum(-1).mean()),
            "cosine_other_scene": float((a * b.roll(1, 0)).sum(-1).mean()),
            "fields": [name for name, _ in FIELDS]}


def finish(cfg: TrainConfig) -> dict:
    t = cfg.textenc
    model, used = trained_model(cfg.run.output_dir, encoder_config(t))
    report = heldout_report(model, max(1, t.eval_prompts))
    output = t.output or os.path.join(cfg.run.output_dir, "text_encoder.safetensors")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    report.update(output=save_text_encoder(output, model.encoder), weights=used)
    with open(os.path.join(cfg.run.output_dir, "text_eval.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    acc = report["accuracy"]
    print(f"saved text encoder ({used} weights) to {report['output']}; held-out paraphrases: all-fields accuracy "
          f"{acc['all']:.3f}, " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items() if k != "all")
          + f"; cosine same scene {report['cosine_same_scene']:.3f} vs other {report['cosine_other_scene']:.3f}")
    return report


def run(cfg: TrainConfig, command: str = "text-encoder") -> dict:
    def build_task(cfg, ctx):
        task = TextEncoderTask(cfg, ctx.device)
        return task, Data(task.data, (0, 0, 0, 0), 0)

    result = run_training(cfg, "text-encoder", build_task)
    if int(os.environ.get("RANK", "0")) == 0:
        result["text_encoder"] = finish(cfg)
    return result
