"""What every rank of a ``torchrun`` pruning run must agree on: its rank, mean all-reduces, and
generators seeded from the same keys on every rank (batch order, encoding noise, random scores).

Without ``torch.distributed`` initialised every function is the single-process identity.
"""

from __future__ import annotations

import hashlib

import torch

from snnc import checkpoint


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` outside ``torchrun``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_mean(tensors) -> None:
    """Replace each tensor in place by its mean over the ranks."""
    import torch.distributed as dist

    rank, world = rank_and_world()
    if world == 1:
        return
    for t in tensors:
        dist.all_reduce(t)
        t.div_(world)


def seeded_generator(*keys: int) -> torch.Generator:
    """A generator seeded by a hash of ``keys`` (e.g. ``(seed, 2, epoch, batch)``): the same draws on
    every rank and in a resumed run."""
    g = torch.Generator()
    h = 0
    for k in keys:
        h = (h * 1_000_003 + int(k) + 1) % (2**62)
    g.manual_seed(h)
    return g


def rank_digests(model: torch.nn.Module) -> list[str]:
    """SHA-256 of the model's masks and weights on every rank (gathered), to prove they agree."""
    import torch.distributed as dist

    digest = checkpoint.tensor_digest(model.state_dict())
    rank, world = rank_and_world()
    if world == 1:
        return [digest]
    mine = torch.tensor(list(hashlib.sha256(digest.encode()).digest()), dtype=torch.uint8)
    gathered = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine)
    return [bytes(g.tolist()).hex() for g in gathered]
