"""The switcher network: a small network that reads a task network's FC weights and outputs
connection switches (after the switcher-network pruning of arXiv:2103.15590; see docs/methods.md for
what we follow and where we had to choose).

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
from torch import nn

from snnc.nn.blocks import Dense


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


def switcher_masks(switcher: Switcher, blocks: dict[str, Dense], n_pruned: int) -> dict[str, torch.Tensor]:
    """Masks keeping the connections with the highest switch probability so that ``n_pruned`` FC
    weights are pruned in total; every neuron keeps its most-switched-on input."""
    with torch.no_grad():
        probs = {k: switcher(b.weight).double() for k, b in blocks.items()}
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
