"""CUBA-LIF neuron with Loihi 2's dynamics, in float, for training.

The dynamics are written once here. Per neuron and time step ``t`` (Loihi 2 ``PyLifModelBitAcc``,
docs/loihi2.md §2.1), with the synaptic input ``a[t]`` already delayed by one step (§2.5)::

    u[t] = u[t-1] * (4096 - current_decay) / 4096 + a[t]
    v[t] = v[t-1] * (4096 - voltage_decay) / 4096 + u[t] + bias
    s[t] = v[t] > threshold                      (strict)
    v[t] = 0 where s[t]                          (reset v only; u keeps its value; no refractory period)

``current_decay`` and ``voltage_decay`` are integers on Loihi's 12-bit grid (0 = no decay,
4096 = forget everything each step). The fixed-point version multiplies ``u``, ``v``, ``bias`` and
``threshold`` by ``64 * scale`` and rounds the decays toward zero; that rounding and the rounding of
weights/threshold/bias to integers are the only differences between this model and the deployed one.

The spike's gradient is a surrogate: a fast-sigmoid derivative of ``(v - threshold) / threshold``
(SuperSpike, Zenke & Ganguli 2018, arXiv:1705.11146, eq. 11), scaled by ``1 / threshold``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

DECAY_UNITY = 4096  # Loihi decays are 12-bit: 4096 means "decay completely each step"


@dataclass(frozen=True)
class NeuronParams:
    """Parameters of one CUBA-LIF population (shared by all its neurons).

    ``current_decay``/``voltage_decay``: integers in [0, 4096]. ``threshold``: float, in the units of
    the synaptic weights. ``surrogate_slope``: sharpness of the surrogate gradient.
    """

    threshold: float = 1.0
    current_decay: int = 2048
    voltage_decay: int = 1024
    surrogate_slope: float = 1.0

    def __post_init__(self) -> None:
        for name in ("current_decay", "voltage_decay"):
            value = getattr(self, name)
            if int(value) != value or not 0 <= value <= DECAY_UNITY:
                raise ValueError(f"{name} must be an integer in [0, {DECAY_UNITY}], got {value}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NeuronParams:
        return cls(
            **{k: d[k] for k in ("threshold", "current_decay", "voltage_decay") if k in d},
            **({"surrogate_slope": d["surrogate_slope"]} if "surrogate_slope" in d else {}),
        )


class _SpikeFn(torch.autograd.Function):
    """Heaviside ``x > 0`` forward; fast-sigmoid derivative ``1 / (1 + k|x|)^2`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        (x,) = ctx.saved_tensors
        surrogate = 1.0 / (1.0 + ctx.slope * x.abs()) ** 2
        return grad_out * surrogate, None


def spike_fn(x: torch.Tensor, slope: float = 1.0) -> torch.Tensor:
    """Spike where ``x > 0`` (strict, as Loihi's ``v > vth``), with a surrogate gradient."""
    return _SpikeFn.apply(x, slope)


def delay_one_step(a: torch.Tensor) -> torch.Tensor:
    """Shift along the last (time) axis by one step: ``out[..., t] = a[..., t-1]``, ``out[..., 0] = 0``.

    Every Loihi synapse (Dense/Sparse/Conv) sends at step t what it accumulated at t-1
    (docs/loihi2.md §2.2, §2.5), so each synaptic layer adds one step of latency.
    """
    return torch.nn.functional.pad(a, (1, 0))[..., :-1]


class _CubaLIFFn(torch.autograd.Function):
    """CUBA-LIF over all T steps with a hand-written BPTT backward.

    Forward runs without autograd on time-major contiguous buffers; backward runs the adjoint recurrence
    (reset detached, as in the usual surrogate training)::

        gvhat[t] = gs[t] * sg(vhat[t]) + keep_v * (1 - s[t]) * gvhat[t+1]
        gu[t]    = gvhat[t] + keep_u * gu[t+1]          ;  grad a[t] = gu[t],  grad bias = sum_t gvhat[t]

    where ``vhat`` is the voltage before reset and ``sg`` the surrogate derivative. Saves only ``vhat``.
    """

    @staticmethod
    def forward(ctx, a, bias, keep_u: float, keep_v: float, theta: float, slope: float):  # noqa: D102
        a_tm = a.movedim(-1, 0).contiguous()  # (T, N, ...): per-step slices are contiguous
        steps = a_tm.shape[0]
        u = torch.zeros_like(a_tm[0])
        v = torch.zeros_like(u)
        vhat = torch.empty_like(a_tm)
        spikes = torch.empty_like(a_tm)
        for t in range(steps):
            u.mul_(keep_u).add_(a_tm[t])
            v.mul_(keep_v).add_(u)
            if bias is not None:
                v.add_(bias)
            vhat[t] = v
            torch.gt(v, theta, out=spikes[t])
            v.mul_(1.0 - spikes[t])
        ctx.save_for_backward(vhat, bias if bias is not None else torch.empty(0))
        ctx.consts = (keep_u, keep_v, theta, slope, bias is not None)
        return spikes.movedim(0, -1), vhat.movedim(0, -1)

    @staticmethod
    def backward(ctx, grad_spikes, _grad_vhat):  # noqa: D102
        vhat, bias = ctx.saved_tensors
        keep_u, keep_v, theta, slope, has_bias = ctx.consts
        # Whole-tensor precomputation (few large ops), then a two-multiply-add recurrence per step.
        gs = grad_spikes.movedim(-1, 0)
        drive = (vhat - theta).abs_().mul_(slope / theta).add_(1.0).square_().mul_(theta)
        drive = gs / drive  # gs * surrogate derivative
        carry = (vhat <= theta).to(vhat.dtype).mul_(keep_v)  # keep_v * (1 - s)
        grad_a = drive  # reuse the buffer: row t is read before it is overwritten
        steps = vhat.shape[0]
        gvhat = torch.zeros_like(vhat[0])
        gu = torch.zeros_like(vhat[0])
        gbias = torch.zeros_like(vhat[0]) if has_bias else None
        for t in range(steps - 1, -1, -1):
            gvhat.mul_(carry[t]).add_(drive[t])
            gu.mul_(keep_u).add_(gvhat)
            if has_bias:
                gbias.add_(gvhat)
            grad_a[t] = gu
        grad_bias = None
        if has_bias and ctx.needs_input_grad[1]:
            # Reduce the per-neuron sum to the bias's broadcast shape.
            grad_bias = gbias.sum_to_size(bias.shape)
        return grad_a.movedim(0, -1), grad_bias, None, None, None, None


def cuba_lif(
    current: torch.Tensor,
    params: NeuronParams,
    bias: torch.Tensor | None = None,
    record: dict | None = None,
) -> torch.Tensor:
    """Run the CUBA-LIF dynamics over time.

    ``current``: synaptic input ``(N, *shape, T)`` (already delayed). ``bias``: broadcastable to
    ``(N, *shape)`` (per channel: ``(C, 1, 1)`` or ``(F,)``), added to ``v`` every step.
    Returns spikes ``(N, *shape, T)`` in {0, 1}. With ``record`` given, stores the voltage
    before reset as ``record["v"]`` ``(N, *shape, T)`` (detached), used by activity-based pruning.
    The surrogate derivative is ``1 / (theta * (1 + slope * |v - theta| / theta)^2)``.
    """
    keep_u = (DECAY_UNITY - params.current_decay) / DECAY_UNITY
    keep_v = (DECAY_UNITY - params.voltage_decay) / DECAY_UNITY
    spikes, vhat = _CubaLIFFn.apply(
        current, bias, keep_u, keep_v, float(params.threshold), float(params.surrogate_slope)
    )
    if record is not None:
        record["v"] = vhat.detach()
    return spikes


def cuba_lif_reference(
    current: torch.Tensor, params: NeuronParams, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """The same dynamics through plain autograd (slow); the reference the fused version is tested on."""
    keep_u = (DECAY_UNITY - params.current_decay) / DECAY_UNITY
    keep_v = (DECAY_UNITY - params.voltage_decay) / DECAY_UNITY
    theta = float(params.threshold)
    u = torch.zeros_like(current[..., 0])
    v = torch.zeros_like(u)
    spikes = []
    for t in range(current.shape[-1]):
        u = u * keep_u + current[..., t]
        v = v * keep_v + u
        if bias is not None:
            v = v + bias
        s = spike_fn((v - theta) / theta, params.surrogate_slope) / 1.0
        v = v * (1.0 - s.detach())
        spikes.append(s)
    return torch.stack(spikes, dim=-1)
