"""`python -m training` with a record of what this process did, for the distributed tests.

Run as `torchrun ... tests/_rank_probe.py OUT_DIR <training command and arguments>`. Each rank writes
OUT_DIR/rank<r>.pt with: the sample ids of every batch it loaded, the loss of every update, its gradients
just before and just after `DistContext.sync_grads` (the parameters that call averages: all of them under
"ddp", the replicated top-level ones under "fsdp"), each parameter's local and full shape, and the full
final weights of every network. The trainer itself is unchanged; its methods are wrapped here.
"""
from __future__ import annotations

import os
import sys

import torch

from training.cli import main
from training.data.loader import BatchLoader
from training.distributed import DistContext, is_dtensor, module_state
from training.trainer import Trainer


def flat_grads(params: list) -> torch.Tensor:
    return torch.cat([p.grad.detach().flatten().cpu().clone() for p in params if p.grad is not None])


def install(out_dir: str) -> None:
    record: dict = {"batches": [], "losses": [], "grads": []}

    load_batch, sync_grads, update, fit = BatchLoader.batch, DistContext.sync_grads, Trainer._update, Trainer.fit

    def batch(self, step):
        out = load_batch(self, step)
        record["batches"].append(out["sample_id"].tolist())
        return out

    def recorded_sync(self, params):
        params = [p for p in params if p.requires_grad and not is_dtensor(p)]
        before = flat_grads(params)
        sync_grads(self, params)
        record["grads"].append((before, flat_grads(params)))

    def recorded_update(self, phase, batch, step):
        out = update(self, phase, batch, step)
        record["losses"].append((step, phase, out[f"{phase}/loss"]))
        return out

    def recorded_fit(self):
        result = fit(self)
        record["rank"], record["world_size"] = self.ctx.rank, self.ctx.world_size
        record["weights"] = {name: module_state(n.module) for name, n in self.nets.items()}  # collective
        record["shapes"] = {name: {k: (tuple(p.to_local().shape if is_dtensor(p) else p.shape), tuple(p.shape),
                                       is_dtensor(p)) for k, p in n.module.named_parameters()}
                            for name, n in self.nets.items()}
        torch.save(record, os.path.join(out_dir, f"rank{self.ctx.rank}.pt"))
        return result

    BatchLoader.batch, DistContext.sync_grads = batch, recorded_sync
    Trainer._update, Trainer.fit = recorded_update, recorded_fit


if __name__ == "__main__":
    out_dir, argv = sys.argv[1], sys.argv[2:]
    os.makedirs(out_dir, exist_ok=True)
    install(out_dir)
    sys.exit(main(argv))
