"""snnc's simulator against Lava fixed_pt on CPU: time per sample-step, ratio, and mismatched
spikes.

Three measurements, printed together in one run:

1. MLP 784-512-512-10, batch 1, in-process: Lava's time per step after its build and start-up (a
   first ``run`` of ``--warm`` steps is not timed; the next ``--lava-steps`` are) vs ``simulate()``
   on one sample (target >= 100x).
2. The same MLP through the whole ``snnc simulate`` process (interpreter start, file I/O included)
   at N=1024, T=100, per sample-step, vs Lava's per-step time from (1) (target >= 100x).
3. A conv net (1x28x28 -> conv 16 s2 -> conv 32 s2 -> flatten -> dense 10, random weights: both
   convs fire about half the time) at batch 256 vs Lava one sample at a time (target >= 1000x).
4. lava-dl's PilotNet SDNN (``tests/lavadl/data/pilotnet_sdnn/network.net``: sigma-delta neurons,
   graded spikes, 3x33x100 input, 4 conv + 4 dense layers) at batch 1 and batch 64 vs Lava one
   sample at a time (target >= 100x). Input: lava-dl's ground-truth image plus fresh noise in
   [-8, 8] every step and sample, so every layer keeps sending (a video, not a still frame).

Mismatches: Lava's recorded output of every Lava run is compared with the simulator's output for the
same sample (the sink at ``net.out``, docs/loihi2.md §2.5). Usage: ``python benchmarks/sim_vs_lava.py
[--quick] [--only sdnn]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from snnc.ir import Conv, CubaLIF, Dense, Flatten, Graph, Input, Output  # noqa: E402
from snnc.sim import simulate  # noqa: E402
from snnc.targets.loihi2 import write_netx  # noqa: E402


def even(rng, shape, fan_in, gain):
    """Even integer weights in [-256, 254] scaled so that layers keep firing."""
    scale = min(127, max(2, int(gain * 254 / np.sqrt(fan_in))))
    w = 2 * rng.integers(-scale // 2, scale // 2 + 1, shape)
    w.flat[0] = 2
    return np.clip(w, -256, 254)


def neuron(thr, channels, rng):
    return CubaLIF(threshold=thr, current_decay=1024, voltage_decay=256, bias=rng.integers(-2, 3, channels))


def mlp(rng) -> Graph:
    sizes = (784, 512, 512, 10)
    nodes: list = [Input("in", shape=(784,))]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        nodes.append(Dense(f"fc{i}", weight=even(rng, (b, a), a, 3.0), neuron=neuron(60, b, rng)))
    return Graph.from_list([*nodes, Output("out")], meta={"precision": "fixed"}).verify()


def convnet(rng) -> Graph:
    nodes = [
        Input("in", shape=(1, 28, 28)),
        Conv(
            "c1",
            weight=rng.integers(-50, 71, (16, 1, 3, 3)),
            stride=2,
            padding=1,
            neuron=neuron(40, 16, rng),
        ),
        Conv(
            "c2",
            weight=rng.integers(-30, 32, (32, 16, 3, 3)),
            stride=2,
            padding=1,
            neuron=neuron(60, 32, rng),
        ),
        Flatten("flat"),
        Dense("fc", weight=even(rng, (10, 32 * 7 * 7), 32 * 7 * 7, 4.0), neuron=neuron(60, 10, rng)),
        Output("out"),
    ]
    return Graph.from_list(nodes, meta={"precision": "fixed"}).verify()


def lava_timed(net_path: str, sample: np.ndarray, warm: int) -> tuple[np.ndarray, float, int]:
    """One sample ``(*shape, T)`` in Lava -> (output ``(*out, T)``, seconds timed, steps timed). An
    input layer with a neuron (a sigma-delta net's ``Delta``) is driven at its ``a_in``, as lava-dl's
    tests do (docs/loihi2.md §1.7)."""
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    t = sample.shape[-1]
    data = sample.transpose(2, 1, 0, 3) if sample.ndim == 4 else sample
    net = netx.hdf5.Network(net_config=net_path)
    src = io.source.RingBuffer(data=data.astype(np.int32))
    sink = io.sink.RingBuffer(shape=net.out.shape, buffer=t)
    in_port = net.in_layer.neuron.a_in if type(net.in_layer).__name__ == "Input" else net.inp
    src.s_out.connect(in_port)
    net.out.connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    try:
        net.run(condition=RunSteps(num_steps=warm), run_cfg=cfg)  # build + start-up, not timed
        t0 = time.perf_counter()
        net.run(condition=RunSteps(num_steps=t - warm), run_cfg=cfg)
        seconds = time.perf_counter() - t0
        y = np.asarray(sink.data.get())
    finally:
        net.stop()
    return (y.transpose(2, 1, 0, 3) if y.ndim == 4 else y), seconds, t - warm


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


PILOTNET_SDNN = REPO / "tests" / "lavadl" / "data" / "pilotnet_sdnn"


def pilotnet_sdnn(rng, quick: bool) -> list[tuple]:
    """Measurement 4: lava-dl's PilotNet SDNN, sim at batch 1 and 64 vs Lava one sample at a time."""
    from snnc.targets.loihi2 import read_netx

    net = str(PILOTNET_SDNN / "network.net")
    graph = read_netx(net)
    with np.load(PILOTNET_SDNN / "gt.npz") as f:
        image = f["input"][..., 0].transpose(2, 1, 0)  # Lava (W, H, C) -> (C, H, W)
    warm, steps = 2, (4 if quick else 10)
    t = warm + steps

    def frames(n: int) -> np.ndarray:
        return image[None, ..., None] + rng.integers(-8, 9, size=(n, *image.shape, t))

    x64 = frames(64)
    lava_samples = 1 if quick else 2
    lsec, lsteps, mism, nonzero = 0.0, 0, 0, 0
    ref = simulate(graph, x64[:lava_samples]).output
    for i in range(lava_samples):
        y, sec, st = lava_timed(net, x64[i], warm)
        lsec, lsteps = lsec + sec, lsteps + st
        mism += int(np.sum(ref[i] != y))
        nonzero += int(np.count_nonzero(y))
    lava_step = lsec / lsteps
    rows = []
    for n in (1, 64):
        x = x64[:n]
        sim = best_of(lambda x=x: simulate(graph, x), 3) / (n * t)
        label = f"PilotNet SDNN (lava-dl gts), sim batch {n} vs Lava 1 at a time"
        rows.append((label, lava_step, sim, 100, mism, nonzero))
    return rows


def print_rows(rows: list[tuple]) -> None:
    print(
        f"{'measurement':62s} {'Lava s/step':>12s} {'sim s/sample-step':>18s} {'ratio':>9s} "
        f"{'target':>7s} {'mismatches':>10s} {'out spikes':>10s}"
    )
    for name, lava_s, sim_s, target, mism, spk in rows:
        ratio = lava_s / sim_s
        print(f"{name:62s} {lava_s:12.3e} {sim_s:18.3e} {ratio:8.0f}x {target:6d}x " f"{mism:10d} {spk:10d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer Lava steps (a smoke run)")
    ap.add_argument("--only", choices=("all", "sdnn"), default="all", help="sdnn: measurement 4 alone")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    if args.only == "sdnn":
        print_rows(pilotnet_sdnn(rng, args.quick))
        print("(out spikes of a sigma-delta net: the non-zero graded payloads Lava recorded)")
        return
    warm = 5
    lava_steps = 60 if args.quick else 1000
    conv_steps = 8 if args.quick else 20
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. MLP, batch 1, in-process
        g = mlp(rng)
        net = str(tmp / "mlp.net")
        write_netx(g, net)
        t = warm + lava_steps
        x1 = (rng.random((1, 784, t)) < 0.2).astype(np.int8)
        y_lava, sec, steps = lava_timed(net, x1[0], warm)
        lava_step = sec / steps
        ref = simulate(g, x1)
        mism1 = int(np.sum(ref.output[0] != y_lava))
        sim_sec = best_of(lambda: simulate(g, x1), 5)
        sim_step = sim_sec / t
        rows.append(
            (
                "MLP 784-512-512-10, batch 1, in-process",
                lava_step,
                sim_step,
                100,
                mism1,
                int(ref.output.sum()),
            )
        )

        # 2. the same MLP through the whole `snnc simulate` process, N=1024, T=100
        n2, t2 = 1024, 100
        x2 = (rng.random((n2, 784, t2)) < 0.2).astype(np.int8)
        np.save(tmp / "x.npy", x2)

        def simulate_cmd(x: str, y: str) -> list[str]:
            return [sys.executable, "-m", "snnc", "simulate", net, "--input", x, "--output", y, "--quiet"]

        cmd = simulate_cmd(str(tmp / "x.npy"), str(tmp / "y.npy"))
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        proc_sec = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"snnc simulate failed: {proc.stderr.strip()}")
        # the same command on one sample and one step: the process's fixed start-up cost
        np.save(tmp / "x1.npy", x2[:1, :, :1])
        small = simulate_cmd(str(tmp / "x1.npy"), str(tmp / "y1.npy"))
        startup = best_of(lambda: subprocess.run(small, env=env, capture_output=True, check=True), 3)
        y2 = np.load(tmp / "y.npy")
        y_l2, _, _ = lava_timed(net, x2[0], warm)
        mism2 = int(np.sum(y2[0] != y_l2))
        rows.append(
            (
                f"same MLP, whole `snnc simulate` process, N={n2}, T={t2}",
                lava_step,
                proc_sec / (n2 * t2),
                100,
                mism2,
                int(y2[0].sum()),
            )
        )

        # 3. conv net, batch 256 vs Lava one sample at a time
        gc = convnet(rng)
        cnet = str(tmp / "conv.net")
        write_netx(gc, cnet)
        n3 = 256
        x3 = (rng.random((n3, 1, 28, 28, conv_steps)) < 0.2).astype(np.int8)
        res3 = simulate(gc, x3)
        sim3 = best_of(lambda: simulate(gc, x3), 5) / (n3 * conv_steps)
        lava_samples = 2 if args.quick else 8
        lsec, lsteps, mism3, lspikes = 0.0, 0, 0, 0
        for i in range(lava_samples):
            y_l3, sec3, st3 = lava_timed(cnet, x3[i], 2)
            lsec, lsteps = lsec + sec3, lsteps + st3
            mism3 += int(np.sum(res3.output[i] != y_l3))
            lspikes += int(y_l3.sum())
        rows.append(
            (
                f"conv net 1x28x28-16-32-10, sim batch {n3} vs Lava 1 at a time",
                lsec / lsteps,
                sim3,
                1000,
                mism3,
                lspikes,
            )
        )

        rows += pilotnet_sdnn(rng, args.quick)

    print_rows(rows)
    print(
        f"`snnc simulate` start-up (N=1, T=1, best of 3): {startup:.2f} s; the N={n2}, T={t2} run took "
        f"{proc_sec:.2f} s, so {(proc_sec - startup) / (n2 * t2):.2e} s per sample-step after start-up"
    )
    from snnc.sim import kernels

    on = kernels.kernels() is not None
    print(f"compiled kernels: {'on, ' + str(kernels.threads()) + ' threads' if on else 'off (numpy path)'}")
    print(
        f"per-layer spikes (MLP, batch 1): {ref.spikes}; conv net per sample: "
        f"{ {k: v / n3 for k, v in res3.spikes.items()} }"
    )


if __name__ == "__main__":
    main()
