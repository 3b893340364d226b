"""The target registry and protocol: every built-in target is a Target, the registry is the only
list of them, and listing or importing targets loads no heavy dependency."""

from __future__ import annotations

import subprocess
import sys

import pytest

from snnc.errors import UsageError
from snnc.targets import TARGETS, FixedPointSpec, RunnableTarget, Target
from snnc.targets.loihi2 import LIMITS, SPEC


def test_builtin_targets_follow_the_protocol():
    assert TARGETS.names()[:4] == ("loihi2", "sim", "onnx", "nir")
    for name in ("loihi2", "sim", "onnx", "nir"):
        t = TARGETS.get(name)
        assert isinstance(t, Target) and t.name == name
        # all but nir (a float export) hold Loihi 2's numbers; only loihi2 has (and enforces) core limits
        assert t.spec is (None if name == "nir" else SPEC)
        assert t.limits is (LIMITS if name == "loihi2" else None)
    assert isinstance(SPEC, FixedPointSpec) and SPEC.weight_bits == 8 and SPEC.precision == "fixed"
    assert {n for n in ("loihi2", "sim", "onnx", "nir") if isinstance(TARGETS.get(n), RunnableTarget)} == {
        "loihi2",
        "sim",
        "onnx",
    }


def test_unknown_target_lists_the_choices():
    with pytest.raises(UsageError, match="unknown target 'xylo'; choose one of loihi2, sim, onnx, nir"):
        TARGETS.get("xylo")


def test_importing_targets_loads_no_heavy_dependency():
    code = (
        "import sys, snnc.targets, snnc.targets.sim, snnc.targets.loihi2\n"
        "from snnc.targets import TARGETS\n"
        "TARGETS.names(); TARGETS.get('sim'); TARGETS.get('loihi2')\n"
        "heavy = ('torch', 'onnx', 'onnxruntime', 'lava', 'h5py', 'nir')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_compile_does_not_import_targets():
    code = (
        "import sys, snnc.compile.pipeline, snnc.compile.report, snnc.compile.passes\n"
        "print(sorted(m for m in sys.modules if m.startswith('snnc.targets')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
