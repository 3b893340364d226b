"""The Loihi 2 target: its numbers (:mod:`.spec`), lowering passes (:mod:`.quantize`,
:mod:`.map_cores`), netx HDF5 weights and read/write/describe (:mod:`.netx`), Lava processes and
runner (:mod:`.lava`), the target object (:mod:`.target`, ``TARGET`` in the registry) and the
standalone runner script ``run_loihi2.py`` shipped as package data.

Importing it imports neither Lava nor h5py (both load when a file is read or a net is run).
"""

from snnc.targets.loihi2.lava import build_processes, compare_with_lava, connect_source, run_lava
from snnc.targets.loihi2.netx import (
    NETX_FILE,
    check_netx_expressible,
    describe_netx,
    lava_dense_weights,
    netx_dense_weights,
    netx_optimize_weight_bits,
    read_netx,
    write_netx,
)
from snnc.targets.loihi2.spec import LIMITS, SPEC, CoreLimits
from snnc.targets.loihi2.target import RUNNER_FILE, TARGET, Loihi2Lowering, compile_netx, lower

__all__ = [
    "LIMITS",
    "NETX_FILE",
    "RUNNER_FILE",
    "SPEC",
    "TARGET",
    "CoreLimits",
    "Loihi2Lowering",
    "build_processes",
    "check_netx_expressible",
    "compare_with_lava",
    "compile_netx",
    "connect_source",
    "describe_netx",
    "lava_dense_weights",
    "lower",
    "netx_dense_weights",
    "netx_optimize_weight_bits",
    "read_netx",
    "run_lava",
    "write_netx",
]
