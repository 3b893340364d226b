"""SIGTERM / SIGINT while a command writes its outputs: exit 143 / 130 with one line, and no
temp file or directory (``.NAME.*.tmp``) left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snnc import checkpoint
from snnc.nn.zoo import build

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.pt"
    m = build("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16]})
    checkpoint.save_model(path, m, {"dataset": "digits", "steps": 4, "encoding": "rate"}, {})
    return path


def hidden(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def signal_when_writing(args: list, out_dir: Path, sig: int, tries: int = 3) -> subprocess.CompletedProcess:
    """Run ``snnc ARGS``; the moment a temp file or directory appears in ``out_dir``, send ``sig``.
    Retries (a fresh run) if the process finished before the signal reached it."""
    for _ in range(tries):
        proc = subprocess.Popen(
            [sys.executable, "-m", "snnc", *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        sent = False
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if not sent and hidden(out_dir):
                proc.send_signal(sig)
                sent = True
            time.sleep(0.0005)
        if proc.poll() is None:
            proc.kill()
        err = proc.stderr.read()
        proc.wait()
        if sent and proc.returncode != 0:
            return subprocess.CompletedProcess(args, proc.returncode, "", err)
    pytest.fail(f"the signal never reached a writing process (last exit {proc.returncode}: {err})")


def assert_signalled(res: subprocess.CompletedProcess, code: int, word: str, out_dir: Path) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [f"snnc: {word}"], res.stderr
    assert not hidden(out_dir), hidden(out_dir)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_signal_during_compile_leaves_no_temp_dir(tmp_path, model, sig, code, word):
    out = tmp_path / "out"
    out.mkdir()
    res = signal_when_writing(
        ["compile", model, "--target", "loihi2", "-o", out / "build", "--quiet"], out, sig
    )
    assert_signalled(res, code, word, out)
    assert not (out / "build").exists()


@pytest.mark.slow
def test_sigterm_during_prune_leaves_no_temp_file(tmp_path, model):
    out = tmp_path / "out"
    out.mkdir()
    args = [
        "prune",
        model,
        "--method",
        "relief",
        "--sparsity",
        "0.5",
        "--epochs",
        "2",
        "-o",
        out / "p.pt",
        "--quiet",
    ]
    res = signal_when_writing(args, out, signal.SIGTERM)
    assert_signalled(res, 143, "terminated", out)
    assert not (out / "p.pt").exists()  # stopped at the first epoch's resume checkpoint, before the outputs


def test_sigterm_inside_an_atomic_write_removes_its_temp(tmp_path):
    """In-process: the handler removes the live temps and raises Terminated; a signal held while a
    temp is registered is raised once it is registered (and the temp removed)."""
    from snnc import fileio

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        fileio.install_signal_handlers()
        with pytest.raises(fileio.Terminated), fileio.atomic_dir(tmp_path / "b") as d:
            with fileio.atomic_path(d / "f.bin") as tmp:
                tmp.write_bytes(b"x")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)  # the handler runs at the next bytecode
        assert not hidden(tmp_path) and not (tmp_path / "b").exists()
        fileio.install_signal_handlers()
        with pytest.raises(KeyboardInterrupt), fileio._deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            (tmp_path / "held").write_bytes(b"")  # still runs: the signal is held
        assert (tmp_path / "held").exists() and fileio._DEFER["pending"] is None
    finally:
        for s, h in old.items():
            signal.signal(s, h)
