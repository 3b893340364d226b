"""The Loihi 2 target: netx HDF5 read/write (:mod:`.netx`), Lava processes and runner (:mod:`.lava`),
its lowering passes (:mod:`.quantize`, :mod:`.map_cores`) and the standalone runner script
``run_loihi2.py`` shipped as package data."""

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

__all__ = [
    "NETX_FILE",
    "build_processes",
    "check_netx_expressible",
    "compare_with_lava",
    "connect_source",
    "describe_netx",
    "lava_dense_weights",
    "netx_dense_weights",
    "netx_optimize_weight_bits",
    "read_netx",
    "run_lava",
    "write_netx",
]
