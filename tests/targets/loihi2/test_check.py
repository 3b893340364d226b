"""Loihi 2 hardware rules (``snnc check``, the ``loihi2`` emitter's refusal): each rule on a
hand-made violating net, against Lava's own functions, lava-dl's exported nets and the zoo's builds."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from compile_helpers import ARCHS, masked_model
from graph_helpers import fixed_graph, random_convnet, random_mlp
from helpers import run_snnc

from snnc import checkpoint
from snnc.errors import SnncError
from snnc.ir import Conv, CubaLIF, Dense, Input
from snnc.ir.serialize import save_graph
from snnc.targets.loihi2 import TARGET, CoreLimits
from snnc.targets.loihi2.check import RULES, check_graph, check_path, lava_keeps
from snnc.targets.loihi2.map_cores import map_cores

OK = CubaLIF(threshold=100, current_decay=2048, voltage_decay=1024)


def rules_of(found, layer=None) -> set[str]:
    return {v.rule for v in found if layer is None or v.layer == layer}


# -- the weight rule against Lava's own clip/truncate -----------------------------------------------
@pytest.mark.parametrize("nwb", [8, 7, 5])
def test_weight_rule_is_lavas_clip_and_truncate(nwb):
    from lava.utils.weightutils import SignMode, clip_weights, determine_sign_mode, truncate_weights

    rng = np.random.default_rng(nwb)
    modes = {SignMode.MIXED: "mixed", SignMode.EXCITATORY: "excitatory", SignMode.INHIBITORY: "inhibitory"}
    for lo, hi in ((-300, 300), (0, 300), (-300, 0), (-3, 3)):
        w = rng.integers(lo, hi + 1, 400)
        mode = determine_sign_mode(w)
        lava = truncate_weights(clip_weights(w, mode, 8), mode, nwb)
        np.testing.assert_array_equal(lava_keeps(w, modes[mode], nwb), lava == w)
    # the grids the rule names, at 8 bits
    assert lava_keeps(np.array([-256, 254, -2, 0, 2]), "mixed").all()
    assert not lava_keeps(np.array([255, -3, 1]), "mixed").any()
    assert lava_keeps(np.arange(0, 256), "excitatory").all() and not lava_keeps(np.array([256]), "excitatory")
    assert lava_keeps(np.arange(-255, 1), "inhibitory").all() and not lava_keeps(
        np.array([-256]), "inhibitory"
    )


def test_clean_graphs_pass(rng):
    for g in (random_mlp(rng), random_convnet(rng)):
        assert check_graph(g) == []


# -- one rule at a time on hand-made graphs ---------------------------------------------------------
def test_each_layer_rule_names_layer_and_rule():
    bad = CubaLIF(threshold=200000, current_decay=2048, voltage_decay=1024, bias=[5000, 0])
    g = fixed_graph(
        [
            Input("in", shape=(3,)),
            Dense("fc1", weight=[[301, -3, 2], [2, 4, 6]], neuron=OK),  # 9-bit and odd mixed-sign
            Dense("fc2", weight=[[2, 4], [-2, 8]], weight_exp=9, neuron=bad),
            Dense("fc3", weight=[[-128, 0], [0, -2]], neuron=OK),  # netx turns -128 into -127 (§1.5)
        ]
    )
    found = check_graph(g)
    assert rules_of(found, "fc1") == {"weight-bits", "netx-dense-scaling"}
    # 2 * 2**9 is beyond netx's range too
    fc2 = {"weight-exp", "netx-dense-scaling", "threshold-mantissa", "bias-mantissa"}
    assert rules_of(found, "fc2") == fc2
    assert rules_of(found, "fc3") == {"netx-dense-scaling"}
    line = next(v.line() for v in found if v.rule == "weight-bits")
    assert line.startswith("fc1: weight-bits: 2 of 6 weights are off the mixed-sign 8-bit grid")
    assert "even integers in [-256, 254]" in line and "301" in line and "-3" in line and "§1.5" in line
    assert [v.layer for v in found] == sorted((v.layer for v in found), key=["fc1", "fc2", "fc3"].index)


def _lava_u_wraps(drive: int, decay: int, steps: int) -> bool:
    """Lava's CUBA current (docs/loihi2.md §2.1) under a constant drive: does ``u`` wrap?"""
    u = 0
    for _ in range(steps):
        d = u * (4096 - decay)
        u = int(np.sign(d)) * (abs(d) >> 12) + (drive << 6)
        if u > 2**23 or u <= -(2**23):
            return True
    return False


@pytest.mark.parametrize("decay", [1, 7, 600])
def test_state_rule_flags_first_layer_wrap_exactly_when_lava_wraps(decay):
    """A first-layer row sum of positive weights just over / at the wrap bound (steady state 2**23
    at a drive of 32 * decay), against Lava's update run to convergence; a deeper layer's drive is
    only a bound, so it is not flagged."""
    for drive, wraps in ((32 * decay + 2, True), (32 * decay, False)):
        taps = -(-drive // 254)
        w = np.array([[min(254, drive - 254 * i) for i in range(taps)]], dtype=float)
        n = CubaLIF(threshold=100, current_decay=decay, voltage_decay=1024)
        g = fixed_graph(
            [
                Input("in", shape=(taps,)),
                Dense("first", weight=w, neuron=n),
                Dense("second", weight=[[254]], neuron=n),
            ]
        )
        assert int(w.sum()) == drive and _lava_u_wraps(drive, decay, 200000) == wraps
        found = check_graph(g)
        assert ("state-24bit" in rules_of(found, "first")) == wraps
        assert "state-24bit" not in rules_of(found, "second")


def test_state_rule_without_current_decay_and_conv_sum():
    g = fixed_graph([Input("in", shape=(2,)), Dense("fc", weight=[[2, -4]], neuron=CubaLIF(10, 0, 100))])
    v = [v for v in check_graph(g) if v.rule == "state-24bit"]
    assert len(v) == 1 and "after 65537 steps" in v[0].message
    assert not _lava_u_wraps(2, 0, 65536) and _lava_u_wraps(2, 0, 65537)
    w = np.full((1, 512, 9, 9), 254.0)  # 512*81*254 > 2**23 at the centre output
    conv = Conv("conv", weight=w, padding=4, neuron=OK)
    found = check_graph(fixed_graph([Input("in", shape=(512, 9, 9)), conv]))
    assert any(v.rule == "state-24bit" and "conv sum" in v.message for v in found)


def test_core_rules_read_the_mapping():
    big = fixed_graph([Input("in", shape=(4,)), Dense("wide", weight=np.full((10000, 4), 2.0), neuron=OK)])
    # mapped for a chip with 16384 neurons per core: one core holds all 10000 neurons
    roomy = CoreLimits(neurons_per_core=16384, sram_bytes_per_core=1 << 20)
    mapped = map_cores(big, roomy)
    assert mapped.nodes["wide"].meta["mapping"]["neurons_per_core"] == 10000
    assert check_graph(mapped, roomy) == []
    found = check_graph(mapped)  # one Loihi 2 chip
    assert [(v.layer, v.rule) for v in found] == [("wide", "neurons-per-core")]
    assert "10000 neurons on one core, over the limit of 4095" in found[0].message
    # an unmapped graph is mapped afresh: 3 cores of at most 3334, within the limits
    assert check_graph(big) == []
    assert rules_of(check_graph(big, CoreLimits(cores=1))) == {"cores-per-chip"}
    fan = fixed_graph([Input("in", shape=(20000,)), Dense("fan", weight=np.full((3, 20000), 2.0), neuron=OK)])
    found = check_graph(fan)
    assert [(v.layer, v.rule) for v in found] == [("fan", "input-axons-per-core")]


# -- files and the CLI -------------------------------------------------------------------------------
def _violating_graph_file(path):
    """graph.safetensors with a 9-bit and an odd mixed-sign weight (fc1), a layer mapped with
    20000 neurons on one core (wide), and a current_decay of 5000 and 20000 inputs (fc2)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    g = fixed_graph(
        [
            Input("in", shape=(4,)),
            Dense("fc1", weight=[[300, -3, 2, 2], [2, 4, 6, 8]], neuron=OK),
            Dense("wide", weight=np.full((20000, 2), 2.0), neuron=OK),
            Dense("fc2", weight=np.pad(np.full((3, 1), 2.0), ((0, 0), (0, 19999))), neuron=OK),
        ]
    )
    g = map_cores(
        g, CoreLimits(neurons_per_core=1 << 15, sram_bytes_per_core=1 << 20, in_axons_per_core=1 << 15)
    )
    save_graph(g, path)
    with safe_open(str(path), framework="numpy") as f:
        header = json.loads(f.metadata()["snnc"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    next(d for d in header["nodes"] if d["name"] == "fc2")["neuron"]["current_decay"] = 5000  # 13 bits
    save_file(tensors, str(path), metadata={"snnc": json.dumps(header)})


def test_cli_reports_each_violation_on_a_hand_made_graph_file(tmp_path):
    path = tmp_path / "graph.safetensors"
    _violating_graph_file(path)
    proc = run_snnc("check", path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    by_rule = {ln.split(": ")[1]: ln for ln in lines[:-1]}
    assert set(by_rule) == {
        "weight-bits",
        "netx-dense-scaling",
        "neurons-per-core",
        "decay",
        "input-axons-per-core",
    }
    assert by_rule["weight-bits"].startswith("fc1: weight-bits: ") and "300" in by_rule["weight-bits"]
    assert by_rule["neurons-per-core"].startswith("wide: neurons-per-core: 20000 neurons on one core")
    assert by_rule["decay"].startswith("fc2: decay: current_decay is outside [0, 4096], e.g. 5000")
    assert lines[-1] == "3 layers, 12 rules checked, 5 violations"
    assert proc.stderr.strip() == f"snnc: error: 5 Loihi 2 rule violation(s) in {path}; see docs/loihi2.md §8"
    proc = run_snnc("check", path, "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert len(doc["violations"]) == 5 and doc["layers"] == 3 and doc["rules"] == len(RULES) == 12
    assert {"layer", "rule", "message", "source"} == set(doc["violations"][0])


def _netx_layer(f, i, kind, **data):
    g = f.create_group(f"layer/{i}")
    g.create_dataset("type", (1,), "S10", [kind.encode()])
    for k, v in data.items():
        g.create_dataset(k, data=v)


def test_hand_written_netx_file(tmp_path):
    path = tmp_path / "bad.net"
    with h5py.File(path, "w") as f:
        _netx_layer(f, 0, "input", shape=[3])
        w = np.array([[511.0, -3, 2], [2, 4, 6]], dtype=np.float32)  # 9-bit, odd mixed-sign
        _netx_layer(f, 1, "dense", shape=[2], weight=w, **{"neuron/type": "CUBA", "neuron/iDecay": 8000})
        f["layer/1/neuron/vDecay"], f["layer/1/neuron/vThMant"] = 100, 80
        _netx_layer(f, 2, "dense", shape=[2], weight=np.full((2, 2), 4.0), weight_exp=9)
    report = check_path(path)
    got = {(v.layer, v.rule) for v in report.violations}
    assert got == {
        ("dense1", "weight-bits"),
        ("dense1", "netx-dense-scaling"),  # netx clips 511 to 254
        ("dense1", "decay"),
        ("dense2", "weight-exp"),
    }
    # no neuron: netx's own integrator (vThMant 1 << 17, as lava-dl's shipped nets have) is noted
    assert report.layers == 2 and len(report.notes) == 1 and "dense2: no neuron stored" in report.notes[0]


def test_netx_file_that_snnc_cannot_read_still_gets_its_layer_rules(tmp_path):
    path = tmp_path / "zero.net"
    with h5py.File(path, "w") as f:
        _netx_layer(f, 0, "input", shape=[2])
        _netx_layer(f, 1, "dense", shape=[2], weight=np.zeros((2, 2)))  # netx crashes on it (§1.5)
    report = check_path(path)
    assert [(v.layer, v.rule) for v in report.violations] == [("dense1", "netx-dense-scaling")]
    assert len(report.notes) == 2 and report.notes[1].startswith("state and core rules not checked: ")


def test_netx_file_with_input_neuron_is_checked_in_full(tmp_path):
    """An input layer with a neuron (lava-dl's PilotNet, tiny.net, docs/loihi2.md §1.7): snnc reads
    it, so every rule is checked and the layers pass."""
    path = tmp_path / "inneuron.net"
    with h5py.File(path, "w") as f:
        _netx_layer(f, 0, "input", shape=[2], **{"neuron/type": "CUBA", "neuron/vThMant": 10})
        f["layer/0/neuron/iDecay"], f["layer/0/neuron/vDecay"] = 0, 4096
        _netx_layer(f, 1, "dense", shape=[2], weight=np.array([[2.0, -4], [6, 8]]))
        f["layer/1/neuron/type"], f["layer/1/neuron/vThMant"] = "CUBA", 40
        f["layer/1/neuron/iDecay"], f["layer/1/neuron/vDecay"] = 100, 100
    report = check_path(path)
    assert report.violations == [], [v.line() for v in report.violations]
    assert not any(n.startswith("state and core rules not checked: ") for n in report.notes), report.notes


def test_clean_build_and_netx_file_exit_0(tmp_path, rng):
    g = random_convnet(rng)
    TARGET.emit(g, tmp_path)
    proc = run_snnc("check", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "4 layers, 12 rules checked, 0 violations"
    assert run_snnc("check", tmp_path / "network.net", "--quiet").stdout == ""
    proc = run_snnc("check", tmp_path / "nothing")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    (tmp_path / "x.txt").write_text("not a network")
    proc = run_snnc("check", tmp_path / "x.txt")
    assert proc.returncode == 2 and "neither a netx HDF5 file nor a graph.safetensors" in proc.stderr


# -- the compile hook --------------------------------------------------------------------------------
def test_emitter_refuses_a_violating_graph_before_writing(tmp_path):
    g = fixed_graph(
        [
            Input("in", shape=(3,)),
            Dense("fc1", weight=[[2, 4, 6]], neuron=OK),
            Dense(
                "fc2", weight=[[3], [-5]], neuron=CubaLIF(threshold=1 << 17, current_decay=1, voltage_decay=1)
            ),
        ]
    )
    with pytest.raises(SnncError) as e:
        TARGET.emit(g, tmp_path)
    msg = str(e.value)
    assert (
        msg.startswith("fc2 breaks the Loihi 2 rule weight-bits: ") and "(and 1 more; run snnc check" in msg
    )
    assert list(tmp_path.iterdir()) == []


def test_snnc_compile_refuses_a_violating_netx_file(tmp_path):
    net = tmp_path / "in.net"
    with h5py.File(net, "w") as f:
        _netx_layer(f, 0, "input", shape=[3])
        _netx_layer(f, 1, "dense", shape=[2], weight=np.array([[2.0, 4, 6], [8, -2, 2]]), bias=[9000.0, 0.0])
        for k, v in {"type": "CUBA", "iDecay": 2048, "vDecay": 1024, "vThMant": 100}.items():
            f[f"layer/1/neuron/{k}"] = v
    proc = run_snnc("compile", net, "--target", "loihi2", "-o", tmp_path / "build", "--quiet")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("snnc: error: dense1 breaks the Loihi 2 rule bias-mantissa: ")
    assert not (tmp_path / "build").exists()


# -- acceptance: lava-dl's exported nets, the zoo's builds --------------------------------------------
def test_lava_dl_exported_net_passes(tmp_path):
    slayer = pytest.importorskip("lava.lib.dl.slayer")
    params = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03, "requires_grad": False}
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(
        [
            slayer.block.cuba.Conv(params, 2, 4, 3, padding=1, weight_scale=2),
            slayer.block.cuba.Pool(params, 2, stride=2),
            slayer.block.cuba.Conv(params, 4, 6, 3, weight_scale=2),
            slayer.block.cuba.Flatten(),
            slayer.block.cuba.Dense(params, 6 * 2 * 2, 10, weight_scale=2),
            slayer.block.cuba.Dense(params, 10, 5, weight_scale=2),
        ]
    )
    x = (torch.rand(1, 2, 8, 8, 4) < 0.3).float()
    for b in blocks:  # the first forward pass sets the shapes export_hdf5 writes
        x = b(x)
    path = tmp_path / "slayer.net"
    with h5py.File(path, "w") as h:
        layer = h.create_group("layer")
        _netx_layer(h, 0, "input", shape=[2, 8, 8])
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(f"{i + 1}"))
    with h5py.File(path, "r") as h:  # slayer's 8-bit weights (docs/loihi2.md §1.6)
        w = h["layer/5/weight"][()]
        assert np.all(w % 2 == 0) and w.min() >= -256 and w.max() <= 254 and w.any()
    proc = run_snnc("check", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "5 layers, 12 rules checked, 0 violations"
    # and what snnc compile makes of it passes too
    build_dir = tmp_path / "build"
    proc = run_snnc("compile", path, "--target", "loihi2", "-o", build_dir, "--quiet")
    assert proc.returncode == 0, proc.stderr
    proc = run_snnc("check", build_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 violations" in proc.stdout


@pytest.mark.parametrize("arch", ARCHS)
def test_every_zoo_build_passes_check(tmp_path, arch):
    from snnc.commands.compile import CompileOptions, run_compile
    from snnc.nn.zoo import build

    cfg = {"input_shape": [1, 8, 8], "num_classes": 10}
    for variant, src in (("unpruned", build(arch, cfg)), ("pruned", masked_model(arch, seed=3))):
        model = build(arch, cfg)
        model.load_state_dict({k: v.float() for k, v in src.state_dict().items()})
        path = tmp_path / f"{variant}.pt"
        checkpoint.save_model(path, model, {"dataset": "digits", "steps": 8, "encoding": "rate"}, {"seed": 0})
        out = tmp_path / variant
        run_compile(CompileOptions(model=str(path), target="loihi2", output=str(out)))
        report = check_path(out)
        assert report.violations == [], [v.line() for v in report.violations]
