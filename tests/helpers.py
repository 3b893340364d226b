"""Helpers shared by the tests: run the CLI as a real process and check one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_snnc(*args, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m snnc ARGS`` as a separate process (what a user runs)."""
    return subprocess.run(
        [sys.executable, "-m", "snnc", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit != 0, exactly one line on stderr, no traceback, and the line names the problem."""
    assert proc.returncode != 0, proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]
