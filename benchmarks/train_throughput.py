"""Training throughput (samples/s, CPU): snnc vs snnTorch vs lava-dl slayer on the same conv SNN.

The net of DESIGN.md: conv 16 (3x3) -> pool 2 -> conv 32 (3x3) -> pool 2 -> dense 10, on 1x28x28 input,
T=16, batch 64, forward + backward + Adam step. Each framework runs its own idiomatic version:
- snnc: our blocks (CUBA-LIF with Loihi dynamics; the pools are spiking layers of their own, as in slayer).
- snnc-fused: the pools act on the current (``Conv(pool=2)``, one strided conv on Loihi): the same
  neuron count as the snnTorch net, so this is the like-for-like comparison with snnTorch.
- snnTorch: ``snn.Synaptic`` (current-based LIF) in a plain time loop; pooling before the neuron.
- lava-dl slayer: ``slayer.block.cuba`` Conv/Pool/Flatten/Dense (pools are spiking layers, as ours).
Prints samples/s for each and the ratios from one run.
Usage: python benchmarks/train_throughput.py [--iters N]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

N, T = 64, 16


def snnc_net():
    from snnc.nn import Conv, Dense, Flatten, NeuronParams, Pool
    from snnc.nn.zoo import SpikingNet

    p = NeuronParams()
    blocks = [
        Conv(1, 16, 3, padding=1, neuron=p),
        Pool(2),
        Conv(16, 32, 3, padding=1, neuron=p),
        Pool(2),
        Flatten(),
        Dense(32 * 7 * 7, 10, p),
    ]
    net = SpikingNet(blocks, (1, 28, 28), {"name": "bench", "config": {}})
    return net, lambda x: net(x).sum(-1)


def snnc_fused_net():
    """Pooling on the current (conv + sum-pool synapse): the neuron count of the snnTorch net."""
    from snnc.nn import Conv, Dense, Flatten, NeuronParams
    from snnc.nn.zoo import SpikingNet

    p = NeuronParams()
    blocks = [
        Conv(1, 16, 3, padding=1, neuron=p, pool=2),
        Conv(16, 32, 3, padding=1, neuron=p, pool=2),
        Flatten(),
        Dense(32 * 7 * 7, 10, p),
    ]
    net = SpikingNet(blocks, (1, 28, 28), {"name": "bench", "config": {}})
    return net, lambda x: net(x).sum(-1)


def snntorch_net():
    import snntorch as snn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
            self.fc = nn.Linear(32 * 7 * 7, 10)
            self.l1, self.l2, self.l3 = (snn.Synaptic(alpha=0.5, beta=0.75) for _ in range(3))

        def forward(self, x):  # x: (N, 1, 28, 28, T)
            s1, m1 = self.l1.init_synaptic()
            s2, m2 = self.l2.init_synaptic()
            s3, m3 = self.l3.init_synaptic()
            counts = 0
            for t in range(x.shape[-1]):
                z, s1, m1 = self.l1(F.max_pool2d(self.c1(x[..., t]), 2), s1, m1)
                z, s2, m2 = self.l2(F.max_pool2d(self.c2(z), 2), s2, m2)
                z, s3, m3 = self.l3(self.fc(z.flatten(1)), s3, m3)
                counts = counts + z
            return counts

    net = Net()
    return net, net


def slayer_net():
    import lava.lib.dl.slayer as slayer

    p = {
        "threshold": 1.25,
        "current_decay": 0.25,
        "voltage_decay": 0.03,
        "tau_grad": 0.03,
        "scale_grad": 3,
        "requires_grad": False,
    }
    blocks = nn.ModuleList(
        [
            slayer.block.cuba.Conv(p, 1, 16, 3, padding=1, weight_norm=False),
            slayer.block.cuba.Pool(p, 2),
            slayer.block.cuba.Conv(p, 16, 32, 3, padding=1, weight_norm=False),
            slayer.block.cuba.Pool(p, 2),
            slayer.block.cuba.Flatten(),
            slayer.block.cuba.Dense(p, 32 * 7 * 7, 10, weight_norm=False),
        ]
    )

    def fwd(x):
        for b in blocks:
            x = b(x)
        return x.sum(-1)

    return blocks, fwd


def measure(build, iters: int) -> float:
    torch.manual_seed(0)
    module, fwd = build()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    x = (torch.rand(N, 1, 28, 28, T) < 0.2).float()
    y = torch.randint(0, 10, (N,))

    def step():
        loss = F.cross_entropy(fwd(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    return N * iters / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"net: conv16-pool-conv32-pool-dense10, input 1x28x28, T={T}, batch {N}, "
        f"{args.threads} threads, {args.iters} timed steps"
    )
    results = {}
    builds = (
        ("snnc", snnc_net),
        ("snnc-fused", snnc_fused_net),
        ("snntorch", snntorch_net),
        ("slayer", slayer_net),
    )
    for name, build in builds:
        try:
            results[name] = measure(build, args.iters)
            print(f"{name:9s} {results[name]:8.1f} samples/s")
        except ImportError as e:
            print(f"{name:9s} not installed ({e.name})")
    for ours in ("snnc", "snnc-fused"):
        for other in ("snntorch", "slayer"):
            if ours in results and other in results:
                print(f"{ours} / {other}: {results[ours] / results[other]:.2f}x")


if __name__ == "__main__":
    main()
