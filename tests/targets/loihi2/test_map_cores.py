"""map_cores: neurocore partition under the Loihi 2 resource model (docs/loihi2.md §4.1), hand-computed
cases, PilotNet against Intel's compiler, overridable limits, and a clear error when a net cannot fit
(for the loihi2 target only)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from compile_helpers import masked_model

from snnc import ir
from snnc.compile.pipeline import compile_graph
from snnc.compile.trace import trace
from snnc.errors import SnncError
from snnc.targets import TARGETS
from snnc.targets.loihi2 import TARGET
from snnc.targets.loihi2.map_cores import conv_words, map_cores
from snnc.targets.loihi2.spec import LIMITS, CoreLimits

LIF = ir.CubaLIF(1.0, 2048, 1024)


def _dense(n_in: int, n_out: int, precision: str = "float"):
    nodes = [
        ir.Input("in", shape=(n_in,)),
        ir.Dense("fc", weight=np.ones((n_out, n_in)), neuron=LIF),
        ir.Output("o"),
    ]
    return ir.Graph.from_list(nodes, {"precision": precision})


def test_default_limits_are_intels_registers():
    assert (LIMITS.cores, LIMITS.neurons_per_core) == (128, 4095)
    assert (LIMITS.sram_bytes_per_core, LIMITS.in_axons_per_core) == (12000 * 8, 16000)


def test_hand_computed_dense_mapping():
    # 2000 neurons x 100 inputs, float graph (8-bit synapses): 8 + 13 = 21 bits a synapse; a core of
    # n neurons stores 100 rows of ceil(21 n / 64) words; 12000 words allow ceil(21 n / 64) <= 120,
    # n <= 365: 6 cores of 334 (110 words a row; 5 cores of 400 would need 132)
    g = map_cores(_dense(100, 2000))
    m = g.nodes["fc"].meta["mapping"]
    assert m["cores"] == 6 and m["neurons_per_core"] == 334
    assert m["synapse_words_per_core"] == 100 * 110 and m["sram_bytes_per_core"] == 100 * 110 * 8
    assert m["neurons"] == 2000 and m["synapses"] == 200_000 and m["in_axons_per_core"] == 100
    assert g.meta["cores_used"] == 6 and m["fits"]


def test_neuron_limit_splits_layer():
    m = map_cores(_dense(1, 20_000)).nodes["fc"].meta["mapping"]
    assert m["cores"] == 5 and m["neurons_per_core"] == 4000  # 4095 neurons per core
    assert m["synapse_words_per_core"] == -(-4000 * 21 // 64)


def test_hand_computed_conv_mapping():
    """512 -> 64 channels, 3x3, on 8x8 (4096 neurons): 2 cores by neurons, but a core stores a row
    of its output channels' 8-bit weights per input channel and tap (512 x 9 = 4608 rows). 2 cores
    of 32 channels: 4 words a row, 18432 words; 3 cores straddle 22 channels: 3 words, 13824; 4
    cores of 16 channels: 2 words, 9216 <= 12000."""
    conv = ir.Conv("c", weight=np.ones((64, 512, 3, 3)), padding=1, neuron=LIF)
    g = ir.Graph.from_list([ir.Input("in", shape=(512, 8, 8)), conv, ir.Output("o")], {"precision": "float"})
    m = map_cores(g).nodes["c"].meta["mapping"]
    assert m["cores"] == 4 and m["neurons_per_core"] == 1024
    assert m["synapse_words_per_core"] == 4608 * 2 and m["in_axons_per_core"] == 1
    assert m["synapse_encoding"] == "conv" and m["synapses"] == 4096 * 512 * 9
    # a stride-2 conv takes 2 x 2 population axons per core; a 2x2 pool on 8 channels is the
    # grouped conv netx writes: per channel 4 taps of one weight, one word each
    nodes = [
        ir.Input("in", shape=(3, 16, 16)),
        ir.Conv("s2", weight=np.ones((8, 3, 3, 3)), stride=2, neuron=LIF),
        ir.Pool("p", kernel=2, stride=2, neuron=LIF),
        ir.Output("o"),
    ]
    g2 = map_cores(ir.Graph.from_list(nodes, {"precision": "float"}))
    s2, p = g2.nodes["s2"].meta["mapping"], g2.nodes["p"].meta["mapping"]
    assert s2["in_axons_per_core"] == 4 and s2["synapse_words_per_core"] == 3 * 9 * 1
    assert p["cores"] == 1 and p["synapse_words_per_core"] == 8 * 4 and p["in_axons_per_core"] == 4


def test_input_population_takes_cores():
    nodes = [ir.Input("in", shape=(3, 40, 40), neuron=LIF), ir.Flatten("f"), ir.Output("o")]
    g = map_cores(ir.Graph.from_list(nodes, {"precision": "float"}))
    m = g.nodes["in"].meta["mapping"]
    assert m["cores"] == 2 and m["neurons_per_core"] == 2400 and m["synapse_words_per_core"] == 0
    assert g.meta["cores_used"] == 2


def test_layer_that_cannot_fit_names_layer_and_limit():
    with pytest.raises(
        SnncError, match=r"layer fc needs 20000 input axons per core, over the limit of 16000"
    ):
        map_cores(_dense(20_000, 4))
    # 13000 inputs: one neuron still needs a word per input row, 104000 bytes
    with pytest.raises(SnncError, match=r"layer fc: one neuron needs 104000 bytes .* 96000-byte"):
        map_cores(_dense(13_000, 4))


def test_core_budget_error_names_layer():
    graph = compile_graph(trace(masked_model("convnet", seed=2, keep=1.0)), TARGET).pruned
    ok = map_cores(graph)
    used = ok.meta["cores_used"]
    assert used >= 4
    with pytest.raises(SnncError, match=r"layer blocks\.\d+ needs \d+ neurocores.*limit of 3 cores"):
        map_cores(graph, CoreLimits(cores=3))


def test_every_population_gets_cores():
    g = compile_graph(trace(masked_model("resnet", seed=4)), TARGET).final
    for node in g.nodes.values():
        if isinstance(node, ir.Add | ir.Pool) or getattr(node, "neuron", None) is not None:
            m = node.meta["mapping"]
            assert m["cores"] >= 1 and 0 < m["utilization_sram"] <= 1
            assert 0 < m["utilization_neurons"] <= 1


def test_mnist_sized_zoo_nets_fit_one_chip():
    from snnc.nn.zoo import build

    for arch in ("mlp", "lenet", "convnet", "resnet"):
        model = build(arch, {"input_shape": [1, 28, 28], "num_classes": 10})
        g = map_cores(compile_graph(trace(model), TARGET).pruned)
        assert 1 <= g.meta["cores_used"] <= 128, arch


# -- PilotNet against Intel's compiler (lava-dl tutorials/lava/lib/dl/netx/pilotnet_{snn,sdnn}/
# benchmark.ipynb, its "Per core distribution" tables; docs/loihi2.md §4.1) --------------------------
INTEL_SNN = {
    "input": 13, "conv1": 25, "conv2": 13, "conv3": 3, "conv4": 3, "conv5": 2,
    "fc1": 12, "fc2": 1, "fc3": 1, "fc4": 1,
}  # fmt: skip
INTEL_SDNN_TOTAL = 61  # the same layers without the input layer (netx skip_layers=1)


def pilotnet(seed: int = 0, input_neuron: bool = True) -> ir.Graph:
    """PilotNet's geometry (lava-dl's pilotnet_snn/network.net: 3x66x200 input, 5 convs, 4 dense)
    with random full-range 8-bit weights (mixed sign, even in [-256, 254]: the worst case for the
    synapse memory), fixed point."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return 2 * rng.integers(-128, 128, shape)

    convs = [  # (C_out, C_in, stride, padding), PyTorch order
        (24, 3, (2, 2), (0, 0)),
        (36, 24, (2, 2), (0, 0)),
        (48, 36, (2, 2), (0, 0)),
        (64, 48, (2, 1), (1, 0)),
        (64, 64, (1, 1), (0, 0)),
    ]
    nodes = [ir.Input("input", shape=(3, 66, 200), neuron=LIF if input_neuron else None)]
    for i, (co, ci, s, p) in enumerate(convs, 1):
        nodes.append(ir.Conv(f"conv{i}", weight=w(co, ci, 3, 3), stride=s, padding=p, neuron=LIF))
    nodes.append(ir.Flatten("flat"))
    for i, (o, n) in enumerate([(100, 2560), (50, 100), (10, 50), (1, 10)], 1):
        nodes.append(ir.Dense(f"fc{i}", weight=w(o, n), neuron=LIF))
    nodes.append(ir.Output("out"))
    g = ir.Graph.from_list(nodes, {"precision": "fixed"})
    assert g.shapes()["conv5"] == (64, 2, 20)  # netx prints 20 x 2 x 64 (W, H, C)
    return g


def test_pilotnet_snn_per_layer_cores_at_most_intels():
    g = map_cores(pilotnet())
    ours = {n: g.nodes[n].meta["cores"] for n in INTEL_SNN}
    assert all(ours[n] <= INTEL_SNN[n] for n in INTEL_SNN), ours
    assert g.meta["cores_used"] == sum(ours.values()) <= 74
    # every chunk within the documented limits
    for n in INTEL_SNN:
        m = g.nodes[n].meta["mapping"]
        assert m["fits"] and m["neurons_per_core"] <= 4095 and m["in_axons_per_core"] <= 16000
        assert m["synapse_words_per_core"] <= 12000
    # Intel's own tiles are legal in the model: conv1 4 x 32 x 24 = 3072 neurons, all 24 channels:
    # 3 x 9 rows of ceil(24 * 8 / 64) = 3 words (Intel's compiler printed 81 too)
    assert conv_words(3 * 9, 24) == 81 <= 12000
    # hand-computed: neurons alone set the conv and input counts (ceil(N / 4095)); fc1 holds
    # 2560 rows of ceil(21 n / 64) words, n <= 12 neurons a core: 9 cores
    for n, want in {
        "input": 10,
        "conv1": 19,
        "conv2": 7,
        "conv3": 2,
        "conv4": 2,
        "conv5": 1,
        "fc1": 9,
    }.items():
        assert ours[n] == want, (n, ours[n])
    # the sigma-delta net has the same geometry; Intel maps it without the input layer
    sd = map_cores(pilotnet(seed=1, input_neuron=False))
    assert sd.meta["cores_used"] <= INTEL_SDNN_TOTAL


LAVADL = Path(__file__).resolve().parents[2] / "lavadl" / "data"


def test_lava_dl_pilotnet_files_per_layer_cores_at_most_intels():
    """The same on lava-dl's own files (when tests/lavadl/data carries them): the SNN's fc1 holds
    3-bit weights, 27% nonzero (sparse: 3 cores; kept dense as Intel deploys it: 7)."""
    from snnc.targets.loihi2.netx import read_netx

    snn, sdnn = LAVADL / "pilotnet_lif" / "network.net", LAVADL / "nets" / "netx_pilotnet_sdnn.net"
    if not (snn.is_file() and sdnn.is_file()):
        pytest.skip("lava-dl's PilotNet files are not carried in tests/lavadl/data")
    for sparse in (True, False):
        g = map_cores(read_netx(snn), sparse=sparse)
        cores = [g.nodes[n].meta["cores"] for n in g.nodes if "mapping" in g.nodes[n].meta]
        assert len(cores) == len(INTEL_SNN)
        assert all(c <= i for c, i in zip(cores, INTEL_SNN.values(), strict=True)), cores
        assert sum(cores) == (47 if sparse else 51)
        try:
            sd_graph = read_netx(sdnn)
        except SnncError as e:  # a reader without sigma-delta neurons
            pytest.skip(f"the netx reader refuses lava-dl's PilotNet SDNN: {e}")
        sd = map_cores(sd_graph, sparse=sparse)
        pops = [n for n in sd.nodes if "mapping" in sd.nodes[n].meta]
        assert isinstance(sd.nodes[pops[0]], ir.Input)  # Intel's run skips it (skip_layers=1)
        assert sd.meta["cores_used"] - sd.nodes[pops[0]].meta["cores"] == (38 if sparse else 41) <= 61


def test_pilotnet_passes_the_core_rules_of_snnc_check():
    from snnc.targets.loihi2.check import check_graph

    g = map_cores(pilotnet())
    core_rules = {"neurons-per-core", "synapse-memory-per-core", "input-axons-per-core", "cores-per-chip"}
    assert not [v for v in check_graph(g) if v.rule in core_rules]
    assert not [v for v in check_graph(pilotnet()) if v.rule in core_rules]  # mapped afresh


# -- limits: the loihi2 target's, overridable; other targets are never gated -------------------------
def _too_wide() -> ir.Graph:
    return _dense(20_000, 4)  # 20000 input axons: over one core's 16000


def test_non_loihi_targets_are_not_gated_by_core_limits():
    g = _too_wide()
    with pytest.raises(SnncError, match="20000 input axons"):
        TARGETS.get("loihi2").lower(g)
    for name in ("sim", "onnx", "nir"):
        t = TARGETS.get(name)
        assert t.limits is None
        out = t.lower(g)
        m = out.nodes["fc"].meta["mapping"]
        assert m["fits"] is False and m["cores"] >= 1
        assert any("20000 input axons" in n for n in out.meta["notes"]), name
    # nor by the chip's core budget: over it, a sizing records the cores and notes it
    two = _dense(100, 2000)  # 6 cores (test_hand_computed_dense_mapping)
    over = map_cores(two, CoreLimits(cores=5), enforce=False)
    assert over.meta["cores_used"] == 6 and over.nodes["fc"].meta["mapping"]["fits"] is False
    assert any("over the limit of 5 cores" in n for n in over.meta["notes"])
    with pytest.raises(SnncError, match="over the limit of 5 cores"):
        map_cores(two, CoreLimits(cores=5))


def test_limits_are_overridable():
    from snnc.commands.compile import target_limits

    t = TARGETS.get("loihi2")
    lim = target_limits(t, None, ("neurons=1000", "sram=8000", "axons=64", "cores=40"))
    assert lim == CoreLimits(cores=40, neurons_per_core=1000, sram_bytes_per_core=8000, in_axons_per_core=64)
    assert target_limits(t, 7, ("neurons=1000",)).cores == 7
    assert target_limits(t, None, ()) is None
    g = map_cores(_dense(100, 2000), dataclasses.replace(LIMITS, neurons_per_core=100))
    assert g.nodes["fc"].meta["cores"] == 20


@pytest.fixture(scope="module")
def netx_file(tmp_path_factory):
    """A small fixed-point netx file: 64 inputs -> 300 -> 10."""
    from snnc.targets.loihi2.netx import write_netx

    rng = np.random.default_rng(5)
    nodes = [
        ir.Input("in", shape=(64,)),
        ir.Dense("fc1", weight=2 * rng.integers(-60, 60, (300, 64)), neuron=ir.CubaLIF(100, 1024, 512)),
        ir.Dense("fc2", weight=2 * rng.integers(-60, 60, (10, 300)), neuron=ir.CubaLIF(100, 1024, 512)),
        ir.Output("o"),
    ]
    path = tmp_path_factory.mktemp("mc") / "net.net"
    write_netx(ir.Graph.from_list(nodes, {"precision": "fixed"}), path)
    return path


def _compile(*args):
    from snnc.cli import cli

    return CliRunner().invoke(cli, ["compile", *map(str, args)])


def test_cli_core_limit_changes_the_mapping(netx_file, tmp_path):
    res = _compile(netx_file, "-o", tmp_path / "a", "--json")
    assert res.exit_code == 0, res.output
    first, second = json.loads(res.stdout)["layers"]
    assert first["neurons"] == 300 and first["cores"] == 1 and second["in_axons_per_core"] == 300
    res = _compile(
        netx_file, "-o", tmp_path / "b", "--json", "--core-limit", "neurons=100", "--core-limit", "axons=300"
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["limits"]["neurons_per_core"] == 100 and doc["limits"]["in_axons_per_core"] == 300
    first = doc["layers"][0]
    assert first["cores"] == 3 and first["neurons_per_core"] == 100
    res = _compile(netx_file, "-o", tmp_path / "c", "--core-limit", "axons=200")  # fc2 reads 300
    assert res.exit_code == 1 and "needs 300 input axons per core, over the limit of 200" in res.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--core-limit", "neurons=0"], "--core-limit neurons must be a positive integer, got '0'"),
        (["--core-limit", "neurons=many"], "--core-limit neurons must be a positive integer"),
        (
            ["--core-limit", "synapses=5"],
            "--core-limit takes KEY=N with KEY one of cores, neurons, sram, axons",
        ),
        (["--core-limit", "neurons"], "--core-limit takes KEY=N"),
        (["--cores", "3", "--core-limit", "cores=4"], "disagree"),
        (["--target", "sim", "--core-limit", "neurons=10"], "--core-limit does not apply to target 'sim'"),
        (["--target", "onnx", "--cores", "10"], "--cores does not apply to target 'onnx'"),
    ],
)
def test_cli_bad_core_limits_are_one_line_usage_errors(netx_file, tmp_path, args, needle):
    out = tmp_path / "build"
    res = _compile(netx_file, "-o", out, *args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert not out.exists()


def test_cli_compiles_a_net_over_loihi_limits_for_sim_only(tmp_path):
    from snnc.targets.loihi2.netx import write_netx

    rng = np.random.default_rng(6)
    w = 2 * rng.integers(1, 60, (4, 20_000))
    nodes = [ir.Input("in", shape=(20_000,)), ir.Dense("fc", weight=w, neuron=LIF), ir.Output("o")]
    path = tmp_path / "wide.net"
    write_netx(ir.Graph.from_list(nodes, {"precision": "fixed"}), path)
    res = _compile(path, "-o", tmp_path / "l", "--target", "loihi2")
    assert res.exit_code == 1 and "20000 input axons per core, over the limit of 16000" in res.stderr
    for target in ("sim", "onnx"):
        res = _compile(path, "-o", tmp_path / target, "--target", target, "--json")
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert any("20000 input axons" in n and "would refuse" in n for n in doc["notes"])
        assert (tmp_path / target / "graph.safetensors").exists()
