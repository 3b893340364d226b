"""``--arch package.module:factory``: the user's own network through train, evaluate, prune and
compile; the model file names the factory and holds no code, so later commands rebuild it only when
given the same ``--arch``; one-line errors for every way the name can be wrong."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from helpers import REPO, assert_one_line_error, run_snnc

from snnc.errors import UsageError

FACTORIES = textwrap.dedent(
    """
    from snnc.nn import Conv, Dense, Flatten, NeuronParams, Pool, SpikingNet

    CALLS = []

    def small():
        CALLS.append("small")
        n = NeuronParams(threshold=1.0)
        return SpikingNet(
            [Conv(1, 4, 3, padding=1, neuron=n), Pool(2), Flatten(), Dense(64, 10, n)], (1, 8, 8), {}
        )

    def blocks():
        return [Flatten(), Dense(64, 10, NeuronParams())]

    def returns_int():
        return 42

    def raises():
        raise RuntimeError("no GPU here")

    def wrong_input():
        return SpikingNet([Flatten(), Dense(100, 10, NeuronParams())], (1, 10, 10), {})

    def not_a_block():
        import torch
        return [torch.nn.Linear(64, 10)]

    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``user_nets`` importable in this process and in the CLI's (PYTHONPATH)."""
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "user_nets.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("user_nets", None)
    yield {"PYTHONPATH": f"{REPO}:{folder}"}
    sys.modules.pop("user_nets", None)


def test_train_records_the_factory_and_commands_rebuild_only_with_arch(tmp_path, user_module):
    env = user_module
    model = tmp_path / "m.pt"
    p = run_snnc("train", "--arch", "user_nets:small", "--epochs", "3", "-o", model, "--json", env=env)
    assert p.returncode == 0, p.stderr
    acc = json.loads(p.stdout)["test_accuracy"]
    assert acc > 0.2  # it trains (chance is 0.1)
    from snnc.checkpoint import read_tensors

    tensors, header = read_tensors(model)
    assert header["arch"] == {
        "name": "user_nets:small",
        "config": {"input_shape": [1, 8, 8], "num_classes": 10},
    }
    assert "blocks.0.weight" in tensors  # the user's blocks' state, nothing else
    # without --arch: one line saying to pass it; nothing imported
    for cmd in (["evaluate", model], ["compile", model, "-o", tmp_path / "b"], ["inspect", model]):
        assert_one_line_error(run_snnc(*cmd, env=env), "--arch user_nets:small")
    assert not (tmp_path / "b").exists()
    wrong = run_snnc("evaluate", model, "--arch", "user_nets:blocks", env=env)
    assert_one_line_error(wrong, "holds architecture 'user_nets:small'")
    # with it: the same model
    e = run_snnc("evaluate", model, "--backend", "torch", "--arch", "user_nets:small", "--json", env=env)
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["accuracy"] == pytest.approx(acc)
    i = run_snnc("inspect", model, "--arch", "user_nets:small", "--json", env=env)
    assert i.returncode == 0, i.stderr
    assert json.loads(i.stdout)["layers"]
    c = run_snnc("compile", model, "-o", tmp_path / "b", "--arch", "user_nets:small", "--quiet", env=env)
    assert c.returncode == 0, c.stderr
    pr = run_snnc(
        "prune", model, "--method", "l1", "--sparsity", "0.5", "--epochs", "1", "--train-limit", "200",
        "-o", tmp_path / "p.pt", "--arch", "user_nets:small", "--quiet", env=env,
    )  # fmt: skip
    assert pr.returncode == 0, pr.stderr


def test_reading_a_model_file_never_imports_the_named_module(tmp_path, user_module):
    from snnc import checkpoint
    from snnc.commands.train import TrainOptions, run_train

    run_train(TrainOptions(output=str(tmp_path / "m.pt"), arch="user_nets:small", epochs=0))
    import user_nets

    user_nets.CALLS.clear()
    with pytest.raises(UsageError, match="pass --arch user_nets:small"):
        checkpoint.load_model(tmp_path / "m.pt")
    assert user_nets.CALLS == []
    model, _ = checkpoint.load_model(tmp_path / "m.pt", arch="user_nets:small")
    assert user_nets.CALLS == ["small"] and model.arch["name"] == "user_nets:small"


def test_a_list_of_blocks_takes_the_dataset_shape(tmp_path, user_module):
    from snnc.commands.train import TrainOptions, run_train

    out = run_train(TrainOptions(output=str(tmp_path / "m.pt"), arch="user_nets:blocks", epochs=1))
    assert out.result["test_accuracy"] > 0.2  # chance: 0.1
    from snnc import checkpoint

    model, _ = checkpoint.load_model(tmp_path / "m.pt", arch="user_nets:blocks")
    assert model.input_shape == (1, 8, 8)  # from the dataset: the factory gave blocks only


@pytest.mark.parametrize(
    "arch, needle",
    [
        ("nowhere_xyz:f", "cannot import module 'nowhere_xyz'"),
        ("user_nets:missing", "has no attribute 'missing'"),
        ("user_nets:NOT_CALLABLE", "not a function"),
        ("user_nets:returns_int", "returned 'int'"),
        ("user_nets:raises", "the factory raised RuntimeError: no GPU here"),
        ("user_nets:wrong_input", "takes input (1, 10, 10) but the data is (1, 8, 8)"),
        ("user_nets:not_a_block", "holds Linear"),
        ("user_nets:", "neither a zoo architecture"),
        ("alexnet", "unknown --arch 'alexnet'"),
    ],
)
def test_bad_arch_is_one_line(tmp_path, user_module, arch, needle):
    p = run_snnc("train", "--arch", arch, "--epochs", "1", "-o", tmp_path / "m.pt", env=user_module)
    assert_one_line_error(p, needle)
    assert not (tmp_path / "m.pt").exists()
