"""Rebuild this folder from a lava-dl checkout (not run by the tests).

Usage: python tests/lavadl/data/pilotnet_sdnn/make_data.py LAVA_DL_GIT_DIR [COMMIT]

Carries lava-dl's PilotNet SDNN ground truth (``tests/lava/lib/dl/netx/gts/pilotnet_sdnn``, BSD-3, see
``../LICENSE-lava-dl.txt``): ``network.net`` and ``square_network.net`` repacked losslessly (every dataset
copied, arrays of more than 16 numbers gzip-compressed, which h5py and netx read transparently), and
``gt.npz`` with, in lava-dl's layouts (Lava's (W, H, C) order, time last):

- ``input``: ``input.npy`` (100, 33, 3, 1) int32, the ``a_in`` of the input layer (its ``Delta``);
  lava-dl's test repeats it every step (a one-step ``RingBuffer``);
- ``output``: ``output.npy`` (1, 9), ``net.out`` over ``len(net.layers) = 9`` steps of ``network.net``;
- ``act0``: the input layer's payloads, ``sigma1``, ``sigma2``: the first two conv layers' ``sigma``
  of ``network.net``; ``sigma1_square`` ... ``sigma4_square``: the four conv layers' of
  ``square_network.net`` fed ``input[:33, :33]`` (``act0[:33, :33]`` one layer on); each cut to its
  first ``STEPS`` steps (every later step equals the last of these), as int32.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
GTS = "tests/lava/lib/dl/netx/gts/pilotnet_sdnn"
STEPS = 6
STATES = ["act0", "sigma1", "sigma2", "sigma1_square", "sigma2_square", "sigma3_square", "sigma4_square"]


def show(repo: str, commit: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", repo, "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def _copy(src: h5py.Group, dst: h5py.Group) -> None:
    for k in src.keys():
        o = src[k]
        if isinstance(o, h5py.Group):
            _copy(o, dst.create_group(k))
            continue
        data = o[()]
        if o.shape and o.size > 16 and o.dtype.kind in "fiu":
            dst.create_dataset(k, data=data, compression="gzip", compression_opts=9, shuffle=True)
        else:
            dst.create_dataset(k, data=data, dtype=o.dtype)


def main(repo: str, commit: str = "HEAD") -> None:
    for name in ("network.net", "square_network.net"):
        raw = show(repo, commit, f"{GTS}/{name}")
        if raw.startswith(b"version https://git-lfs"):
            sys.exit(f"{name} is a Git LFS pointer; fetch the LFS objects first")
        with h5py.File(io.BytesIO(raw), "r") as src, h5py.File(HERE / name, "w") as dst:
            _copy(src, dst)

    def load(name: str) -> np.ndarray:
        return np.load(io.BytesIO(show(repo, commit, f"{GTS}/{name}.npy")), allow_pickle=False)

    arrays = {"input": load("input").astype(np.int32), "output": load("output").astype(np.int32)}
    for name in STATES:
        a = load(name)
        assert np.array_equal(a[..., STEPS:], np.repeat(a[..., STEPS - 1 : STEPS], a.shape[-1] - STEPS, -1))
        arrays[name] = a[..., :STEPS].astype(np.int32)
    np.savez_compressed(HERE / "gt.npz", **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
