"""Rebuild this folder from a lava-dl checkout (the files README.md lists; not run by the tests).

Usage: python tests/lavadl/data/make_data.py LAVA_DL_GIT_DIR [COMMIT]

Reads every file with ``git show COMMIT:path`` (default ``HEAD``), so a bare clone works. Networks are
repacked losslessly (every dataset and attribute copied; arrays of more than 16 numbers gzip-compressed,
which h5py and netx read transparently); ground-truth arrays are cut to the steps the tests compare
and saved as compressed ``.npz`` in the layouts README.md describes.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
NETX = "tests/lava/lib/dl/netx"
TUT = "tutorials/lava/lib/dl"
NETS = {  # carried name -> lava-dl path
    "tiny.net": f"{NETX}/tiny.net",
    "pilotnet_lif/network.net": f"{NETX}/gts/pilotnet_lif/network.net",
    "nets/bootstrap_mnist.net": f"{TUT}/bootstrap/mnist/Trained/network.net",
    "nets/netx_mnist.net": f"{TUT}/netx/mnist/trained_mnist_network.net",
    "nets/oxford.net": f"{TUT}/netx/oxford/Trained/network.net",
    "nets/netx_pilotnet_sdnn.net": f"{TUT}/netx/pilotnet_sdnn/network.net",
    "nets/slayer_pilotnet.net": f"{TUT}/slayer/pilotnet/Trained/network.net",
}
PILOTNET_STEPS = 16  # one sample of lava-dl's PilotNet LIF test (steps_per_sample = 16)
DENSE_STEPS = 500


def show(repo: str, commit: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", repo, "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def load(repo: str, commit: str, path: str) -> np.ndarray:
    return np.load(io.BytesIO(show(repo, commit, path)), allow_pickle=False)


def _copy(src: h5py.Group, dst: h5py.Group) -> None:
    for k, v in src.attrs.items():
        dst.attrs[k] = v
    for k in src.keys():
        o = src[k]
        if isinstance(o, h5py.Group):
            _copy(o, dst.create_group(k))
            continue
        data = o[()]
        if o.shape and o.size > 16 and o.dtype.kind in "fiu":
            d = dst.create_dataset(k, data=data, compression="gzip", compression_opts=9, shuffle=True)
        else:
            d = dst.create_dataset(k, data=data, dtype=o.dtype)
        for a, b in o.attrs.items():
            d.attrs[a] = b


def repack(raw: bytes, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".net") as tmp:
        tmp.write(raw)
        tmp.flush()
        with h5py.File(tmp.name, "r") as f, h5py.File(out, "w") as g:
            _copy(f, g)


def small(a: np.ndarray, what: str) -> np.ndarray:
    """int16 when every value fits (they do for these traces), checked."""
    b = a.astype(np.int16)
    if not np.array_equal(b, a):
        raise SystemExit(f"{what}: values do not fit int16")
    return b


def pilotnet(repo: str, commit: str) -> None:
    gts = f"{NETX}/gts/pilotnet_lif"
    t = PILOTNET_STEPS
    out = {"image": load(repo, commit, f"{gts}/image.npy").astype(np.int16)}  # Lava (W, H, C)
    out["input_s"] = np.packbits(load(repo, commit, f"{gts}/input.npy")[..., :t].astype(bool), axis=-1)
    names = [f"conv-{i}" for i in range(5)] + [f"fc-{i}" for i in range(3)]
    for name in names:
        key = name.replace("-", "")
        out[f"{key}_s"] = np.packbits(load(repo, commit, f"{gts}/{name}.npy")[..., :t].astype(bool), axis=-1)
        if name == "conv-0":
            continue  # conv-0-u.npy / conv-0-v.npy: not in the snapshot (README.md)
        u = load(repo, commit, f"{gts}/{name}-u.npy")[..., :t]
        if np.any(u % 64):
            raise SystemExit(f"{name}-u: not a multiple of 64")
        out[f"{key}_u64"] = small(u // 64, name)
        out[f"{key}_v"] = small(load(repo, commit, f"{gts}/{name}-v.npy")[..., :t], name)
    for kind in ("s", "u", "v"):  # the readout: (1, 25) float64 in the file
        out[f"fc3_{kind}"] = small(load(repo, commit, f"{gts}/fc-3-{kind}.npy")[..., :t], "fc-3")
    np.savez_compressed(HERE / "pilotnet_lif" / "gt.npz", **out)


def tinynet(repo: str, commit: str) -> None:
    gts = f"{NETX}/gts/tinynet"
    out = {
        k: load(repo, commit, f"{gts}/{k}.npy")
        for k in ("input_bias", "input", "layer1", "current", "output")
    }
    out = {k: small(v, k) for k, v in out.items()}
    (HERE / "tinynet").mkdir(exist_ok=True)
    np.savez_compressed(HERE / "tinynet" / "gt.npz", **out)


def dense(repo: str, commit: str) -> None:
    gts = f"{NETX}/gts/dense"
    t = DENSE_STEPS
    out = {
        "weight": small(load(repo, commit, f"{gts}/weight.npy"), "weight"),
        "in_s": load(repo, commit, f"{gts}/in.npy")[:, :t].astype(bool),
        "out_s": load(repo, commit, f"{gts}/out.npy")[:, :t].astype(bool),
    }
    (HERE / "dense").mkdir(exist_ok=True)
    np.savez_compressed(HERE / "dense" / "gt.npz", **out)


def main() -> None:
    repo = sys.argv[1]
    commit = sys.argv[2] if len(sys.argv) > 2 else "HEAD"
    for name, path in NETS.items():
        repack(show(repo, commit, path), HERE / name)
    (HERE / "LICENSE-lava-dl.txt").write_bytes(show(repo, commit, "LICENSE"))
    pilotnet(repo, commit)
    tinynet(repo, commit)
    dense(repo, commit)


if __name__ == "__main__":
    main()
