"""The float CUBA-LIF against a hand-computed trace and against Lava's fixed-point equations."""

from __future__ import annotations

import numpy as np
import torch

from snnc.nn import Dense, NeuronParams, cuba_lif, delay_one_step, spike_fn


def test_hand_computed_trace():
    # current_decay 1024 -> u keeps 3/4; voltage_decay 2048 -> v keeps 1/2; threshold 1.0 (exact).
    p = NeuronParams(threshold=1.0, current_decay=1024, voltage_decay=2048)
    a = torch.tensor([[[0.5, 0.5, 0.0, 1.0, 0.0, 0.0]]])
    rec: dict = {}
    s = cuba_lif(a, p, record=rec)
    # By hand: u = 0.5, 0.875, 0.65625, 1.4921875, 1.119140625, 0.83935546875
    #          v(before reset) = 0.5, 1.125*, 0.65625, 1.8203125*, 1.119140625*, 0.83935546875
    np.testing.assert_array_equal(s[0, 0].numpy(), [0, 1, 0, 1, 1, 0])
    np.testing.assert_allclose(
        rec["v"][0, 0].numpy(), [0.5, 1.125, 0.65625, 1.8203125, 1.119140625, 0.83935546875]
    )


def test_strict_threshold_and_bias():
    p = NeuronParams(threshold=1.0, current_decay=4096, voltage_decay=4096)
    # v = u = a each step (no memory): exactly at threshold must not spike (Loihi: v > vth).
    s = cuba_lif(torch.tensor([[[1.0, 1.0 + 2**-10, 0.0]]]), p)
    np.testing.assert_array_equal(s[0, 0].numpy(), [0, 1, 0])
    # Bias alone: v = bias each step.
    s = cuba_lif(torch.zeros(1, 2, 3), p, bias=torch.tensor([0.5, 1.5]))
    np.testing.assert_array_equal(s[0].numpy(), [[0, 0, 0], [1, 1, 1]])


def _lava_reference(a_int: np.ndarray, du: int, dv: int, vth: int, bias: int = 0):
    """docs/loihi2.md §2.6 reference for one neuron (integer a_in per step)."""

    def rshift0(x, s):
        return np.sign(x) * (np.abs(x) >> s)

    u = v = np.int64(0)
    out = []
    for a in a_int:
        u = rshift0(u * (4096 - du), 12) + (np.int64(a) << 6)
        u = u - 2**24 if u > 2**23 else u
        u = u + 2**24 if u <= -(2**23) else u
        v = rshift0(v * (4096 - dv), 12) + u + (bias << 6)
        v = np.clip(v, -(2**23) + 1, 2**23 - 1)
        s = v > (vth << 6)
        out.append(int(s))
        if s:
            v = 0
    return np.array(out)


def test_float_matches_fixed_point_on_grid():
    """Weights, threshold and decays on the fixed grid: float spikes equal Lava's integer equations."""
    rng = np.random.default_rng(0)
    scale = 64  # weight units -> integer mantissas
    for trial in range(20):
        du, dv = int(rng.integers(0, 4097)), int(rng.integers(0, 4097))
        vth = int(rng.integers(20, 300))
        a_int = rng.integers(-40, 80, size=60)
        p = NeuronParams(threshold=vth / scale, current_decay=du, voltage_decay=dv)
        s_float = cuba_lif(torch.tensor(a_int / scale, dtype=torch.float64)[None, None], p)[0, 0]
        s_fixed = _lava_reference(a_int, du, dv, vth)
        # The only difference is the fixed-point rounding of the decays: spikes agree on nearly all steps.
        agree = (s_float.numpy() == s_fixed).mean()
        assert agree >= 0.9, (trial, agree)
    # With exact decays (0 or 4096) there is no rounding at all: identical.
    for du, dv in ((0, 4096), (4096, 4096), (4096, 0)):
        a_int = rng.integers(-40, 80, size=60)
        p = NeuronParams(threshold=100 / scale, current_decay=du, voltage_decay=dv)
        s_float = cuba_lif(torch.tensor(a_int / scale, dtype=torch.float64)[None, None], p)[0, 0]
        np.testing.assert_array_equal(s_float.numpy(), _lava_reference(a_int, du, dv, 100))


def test_one_step_latency_per_synapse():
    x = torch.zeros(1, 3, 6)
    x[0, :, 0] = 1
    np.testing.assert_array_equal(delay_one_step(x)[0, 0].numpy(), [0, 1, 0, 0, 0, 0])
    p = NeuronParams(threshold=0.5, current_decay=4096, voltage_decay=4096)
    l1, l2 = Dense(3, 2, p, bias=False), Dense(2, 1, p, bias=False)
    with torch.no_grad():
        l1.weight.fill_(1.0)
        l2.weight.fill_(1.0)
    out = l2(l1(x))
    # Input at t=0 -> layer 1 spikes at t=1 -> layer 2 at t=2: latency = number of synaptic layers.
    np.testing.assert_array_equal(out[0, 0].detach().numpy(), [0, 0, 1, 0, 0, 0])


def test_surrogate_gradient_nonzero_and_finite():
    x = torch.linspace(-3, 3, 101, requires_grad=True)
    spike_fn(x).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad > 0).all()
    assert x.grad[50] == x.grad.max()  # peak at the threshold
    # Through time and a layer.
    p = NeuronParams()
    layer = Dense(20, 5, p)
    inp = (torch.rand(4, 20, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    layer(inp).sum().backward()
    g = layer.weight.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_fused_lif_matches_autograd_reference():
    """The hand-written BPTT equals plain autograd through the same equations."""
    from snnc.nn.neuron import cuba_lif_reference

    g = torch.Generator().manual_seed(0)
    p = NeuronParams(threshold=0.7, current_decay=1500, voltage_decay=300, surrogate_slope=2.0)
    for shape, bias_shape in (((3, 5, 12), (5,)), ((2, 4, 3, 3, 9), (4, 1, 1))):
        a = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.6).requires_grad_()
        b = (torch.randn(bias_shape, generator=g, dtype=torch.float64) * 0.1).requires_grad_()
        w = torch.randn(shape, generator=g, dtype=torch.float64)
        s1 = cuba_lif(a, p, b)
        (s1 * w).sum().backward()
        ga, gb = a.grad.clone(), b.grad.clone()
        a.grad = b.grad = None
        s2 = cuba_lif_reference(a, p, b)
        (s2 * w).sum().backward()
        assert torch.equal(s1, s2)
        torch.testing.assert_close(ga, a.grad)
        torch.testing.assert_close(gb, b.grad)
