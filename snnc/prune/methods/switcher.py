"""The switcher method (``switcher``): a small network that reads a task network's FC weights and
outputs connection switches (after the switcher-network pruning of arXiv:2103.15590; see
docs/methods.md for what we follow and where we had to choose).

For each FC weight ``w_ij`` the switcher sees four features of its layer, normalised by the layer's
weight scale: ``w_ij``, ``|w_ij|``, the mean ``|w|`` of row ``j`` (the neuron) and of column ``i``
(the input), and outputs a switch probability ``p_ij = sigmoid(f(features))`` through one shared
MLP. The task net uses the binarised switch ``1[p > 1/2]`` with a straight-through gradient (Bengio
et al. 2013, arXiv:1308.3432), so the switcher learns from the task loss plus ``lambda * mean(p)``
(sparsity); the two nets are trained alternately with SGD on that loss. At a prune event the mask
keeps the top-``p`` connections needed to meet the schedule's sparsity; the final structure is that
binarised switch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snnc.errors import UsageError
from snnc.nn.blocks import Dense, SpikingBlock
from snnc.nn.zoo import SpikingNet
from snnc.prune import masks as M
from snnc.prune.config import PruneConfig
from snnc.prune.distributed import all_reduce_mean
from snnc.prune.methods.base import Method, PruneEvent, Scores
from snnc.prune.resume import load_optimizer, optimizer_tensors


def features(weight: torch.Tensor) -> torch.Tensor:
    """``(out, in)`` weights -> ``(out, in, 4)`` switcher features."""
    w = weight.detach()
    scale = w.abs().mean().clamp(min=1e-12)
    a = w.abs() / scale
    row = a.mean(1, keepdim=True).expand_as(a)
    col = a.mean(0, keepdim=True).expand_as(a)
    return torch.stack([w / scale, a, row, col], dim=-1)


class Switcher(nn.Module):
    """Shared per-connection MLP ``4 -> hidden -> 1``; starts with every switch on (p ~ 0.88)."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        with torch.no_grad():
            self.net[2].bias.fill_(2.0)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """Switch probabilities ``(out, in)`` for an FC weight ``(out, in)``."""
        return torch.sigmoid(self.net(features(weight)).squeeze(-1))


def straight_through(p: torch.Tensor) -> torch.Tensor:
    """Binary switch ``1[p > 1/2]`` forward, identity gradient to ``p`` backward."""
    hard = (p > 0.5).to(p.dtype)
    return hard + p - p.detach()


def switcher_masks(
    probs: dict[str, torch.Tensor], blocks: dict[str, Dense], n_pruned: int
) -> dict[str, torch.Tensor]:
    """Masks keeping the connections with the highest switch probability ``probs`` (``{layer: (out,
    in)}``) so that ``n_pruned`` FC weights are pruned in total; every neuron keeps its
    most-switched-on input."""
    flat = torch.cat([p.flatten() for p in probs.values()])
    protected = []
    for p in probs.values():
        t = torch.zeros_like(p, dtype=torch.bool)
        t.scatter_(1, p.argmax(1, keepdim=True), True)
        protected.append(t.flatten())
    prot = torch.cat(protected)
    key = torch.where(prot, torch.full_like(flat, 2.0), flat)
    order = torch.sort(key, stable=True).indices
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[order[: min(n_pruned, int((~prot).sum()))]] = False
    out, s = {}, 0
    for k, b in blocks.items():
        n = b.weight.numel()
        out[k] = keep[s : s + n].view_as(b.weight).to(b.weight_mask.dtype)
        s += n
    return out


class SwitcherTraining:
    """The switcher network and its SGD (momentum 0.9) during a run: it trains on the odd batches of
    a prune epoch, the task net on the even ones."""

    def __init__(self, model: SpikingNet, cfg: PruneConfig) -> None:
        self.model, self.cfg = model, cfg
        self.fc = dict(M.connection_targets(model, (Dense,)))
        self.switcher = Switcher()
        self.opt = torch.optim.SGD(self.switcher.parameters(), lr=cfg.switcher_lr, momentum=0.9)

    def step(self, batch_index: int, spikes: torch.Tensor, labels: torch.Tensor) -> bool:
        """One SGD step of the switcher on ``task loss + lambda * mean switch`` on odd batches; the
        task net is fixed."""
        if batch_index % 2 == 0:
            return False
        saved = {k: b.weight_mask for k, b in self.fc.items()}
        probs = []
        try:
            for b in self.fc.values():
                p = self.switcher(b.weight)
                probs.append(p.flatten())
                # The switch replaces the mask for this step (a buffer may hold a non-leaf tensor).
                b.weight_mask = straight_through(p)
            counts = self.model(spikes).sum(-1)
            loss = F.cross_entropy(counts, labels) + self.cfg.switcher_lambda * torch.cat(probs).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        finally:
            for k, b in self.fc.items():
                b.weight_mask = saved[k]
        for p in self.model.parameters():
            p.grad = None
        all_reduce_mean([p.grad for p in self.switcher.parameters() if p.grad is not None])
        self.opt.step()
        return True

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"switcher.{k}": v for k, v in self.switcher.state_dict().items()}
        opt_tensors, info = optimizer_tensors("swopt", self.opt)
        tensors.update(opt_tensors)
        return tensors, {"swopt": info}

    def load_state(self, tensors: dict[str, torch.Tensor], header: dict) -> None:
        self.switcher.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("switcher.")})
        load_optimizer("swopt", self.opt, tensors, header["swopt"])


class SwitcherMethod(Method):
    name = "switcher"
    unit = "dense connections"

    def check(self, model: SpikingNet) -> None:
        if not M.connection_targets(model, (Dense,)):
            raise UsageError("method 'switcher' prunes FC connections but the model has no dense layers")

    def targets(self, model: SpikingNet) -> dict[str, SpikingBlock]:
        return dict(M.connection_targets(model, (Dense,)))

    def start(self, model: SpikingNet, cfg: PruneConfig) -> SwitcherTraining:
        return SwitcherTraining(model, cfg)

    def score(self, event: PruneEvent) -> Scores:
        """Switch probabilities ``(out, in)`` of every FC connection. They rank pruned connections
        too, so a connection switched back on regenerates (no separate ``regrow``)."""
        with torch.no_grad():
            return {k: event.training.switcher(b.weight).double() for k, b in event.blocks.items()}

    def prune(self, event: PruneEvent) -> dict:
        blocks = event.blocks
        total = sum(b.weight.numel() for b in blocks.values())
        new = switcher_masks(self.score(event), blocks, int(round(event.target * total)))
        regenerated = 0
        for k, b in blocks.items():
            before = b.weight_mask.clone()
            b.weight_mask.copy_(new[k])
            regenerated += int(((before == 0) & (new[k] > 0)).sum())
        return {"regenerated": regenerated}


METHOD = SwitcherMethod()
