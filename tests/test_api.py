"""The Python API (snnc/api.py, docs/api.md): the commands as functions on models and data in
memory, the same results as the CLI, ``import snnc`` without torch, and the runnable example."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import REPO, run_snnc

import snnc
from snnc.errors import UsageError


def _python(code: str) -> str:
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_import_snnc_is_cheap_and_the_names_are_callable():
    assert _python("import snnc, sys; print('torch' in sys.modules)") == "False"
    # snnc.train / snnc.prune / snnc.compile are also modules: callable once imported, too
    code = (
        "import snnc, snnc.train, snnc.prune.masks, snnc.compile.trace, sys; "
        "print(all(callable(m) for m in (snnc.train, snnc.prune, snnc.compile, snnc.simulate)), "
        "snnc.compile.trace.trace.__name__, snnc.prune.masks.__name__)"
    )
    assert _python(code) == "True trace snnc.prune.masks"


def test_api_train_equals_the_cli(tmp_path):
    from snnc import checkpoint

    # both with one thread: the same summation order
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        api = snnc.train("digits", arch="mlp", epochs=1, train_limit=200, seed=3, out=tmp_path / "a.pt")
    finally:
        torch.set_num_threads(before)
    p = run_snnc(
        "train", "--epochs", "1", "--train-limit", "200", "--seed", "3", "-o", tmp_path / "c.pt", "--quiet",
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    ta, _ = checkpoint.read_tensors(tmp_path / "a.pt")
    tc, _ = checkpoint.read_tensors(tmp_path / "c.pt")
    assert checkpoint.tensor_digest(ta) == checkpoint.tensor_digest(tc)  # byte-identical weights
    assert api.path == str(tmp_path / "a.pt") and not api.model.training


def test_prune_a_hand_assembled_net_on_arrays_then_compile_and_simulate(tmp_path):
    from snnc.nn import Conv, Dense, Flatten, NeuronParams, Pool, SpikingNet
    from snnc.sim import simulate
    from snnc.targets import load_net

    torch.manual_seed(0)
    n = NeuronParams(threshold=0.5)
    net = SpikingNet(
        [Conv(1, 6, 3, padding=1, neuron=n), Pool(2), Flatten(), Dense(96, 10, n)], (1, 8, 8), {}
    )
    from snnc import data as D

    x, y = D.load("digits").train
    pruned = snnc.prune(net, (x[:300], y[:300]), method="l1", sparsity=0.5, epochs=2, seed=0)
    assert pruned.result["channel_sparsity"] == pytest.approx(0.5, abs=0.2)
    assert pruned.model.arch["name"] == "layers" and pruned.path is None
    build = snnc.compile(pruned.model, target="loihi2", out=tmp_path / "build")
    assert (tmp_path / "build" / "network.net").is_file() and build.result["totals"]["cores"] >= 1
    spikes = D.encode(x[:8], 16, "rate", generator=torch.Generator().manual_seed(0)).numpy().astype(np.uint8)
    out = snnc.simulate(tmp_path / "build", spikes)
    assert np.array_equal(out.output, simulate(load_net(tmp_path / "build"), spikes).output)
    ev = snnc.evaluate(tmp_path / "build", "digits", limit=50)
    assert 0 <= ev.result["accuracy"] <= 1 and ev.result["samples"] == 50


def test_bad_arguments_raise_usage_errors():
    with pytest.raises(UsageError, match="SpikingNet"):
        snnc.prune(torch.nn.Linear(2, 2), "digits")
    with pytest.raises(UsageError, match="data must be"):
        snnc.prune("missing.pt", 42)


@pytest.mark.slow
def test_the_example_runs(tmp_path):
    p = subprocess.run(
        [sys.executable, "examples/api_example.py", str(tmp_path), "--quick"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["channel_sparsity"] == pytest.approx(0.5, abs=0.1)
    assert summary["deployed_equals_float_prediction"] >= 0.8
    assert (tmp_path / "pruned.pt").is_file() and (tmp_path / "build" / "network.net").is_file()
