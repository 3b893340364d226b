"""N-MNIST (.bin), DVS Gesture (.npy) and SHD (HDF5) datasets in tonic's on-disk layout: small
files written in each real format, read and binned as tonic's ``ToFrame(n_time_bins=T)`` does, and
``snnc train --dataset FOLDER`` + ``snnc evaluate`` end to end."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from helpers import assert_one_line_error, run_snnc

from snnc import data as D
from snnc.data import events as E


# -- writers of the real formats -----------------------------------------------------------------
def write_nmnist_bin(path, x, y, p, t) -> None:
    """N-MNIST's 5-byte events (Orchard et al.'s format): x, y, p in bit 7 and a 23-bit timestamp;
    a timestamp past 2**23 gets overflow events (y = 240), each adding 2**13 as tonic reads them."""
    out = bytearray()
    base = 0
    for xi, yi, pi, ti in zip(x, y, p, t, strict=True):
        while ti - base >= 2**23:
            out += bytes([0, 240, 0, 0, 0])
            base += 2**13
        r = int(ti - base)
        out += bytes([int(xi), int(yi), (int(pi) << 7) | (r >> 16), (r >> 8) & 255, r & 255])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))


def class_events(rng, label: int, n: int, width: int, duration: int):
    """Events whose x clusters around a label-dependent column (learnable), times sorted."""
    x = np.clip(rng.normal(4 + 8 * label, 2, n), 0, width - 1).astype(int)
    t = np.sort(rng.integers(0, duration, n))
    return x, t


def make_nmnist(root, n_per_class=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    for split, n in (("Train", n_per_class), ("Test", n_per_class // 2)):
        for c in range(classes):
            for i in range(n):
                x, t = class_events(rng, c, 200, 34, 300_000)
                y = rng.integers(0, 34, len(x))
                p = rng.integers(0, 2, len(x))
                write_nmnist_bin(root / split / str(c) / f"{i:05d}.bin", x, y, p, t)


def make_dvs(root, n_per_class=12, classes=3, seed=1):
    rng = np.random.default_rng(seed)
    for split, n in (("ibmGestureTrain", n_per_class), ("ibmGestureTest", n_per_class // 2)):
        for i in range(n):
            folder = root / split / f"user{i:02d}_fluorescent"
            folder.mkdir(parents=True, exist_ok=True)
            for c in range(classes):
                x, t = class_events(rng, c, 300, 128, 6000)  # t in ms
                arr = np.stack([x, rng.integers(0, 128, len(x)), rng.integers(0, 2, len(x)), t], 1)
                np.save(folder / f"{c}.npy", arr.astype(np.float64))


def write_shd(path, samples, labels) -> None:
    """SHD's HDF5: spikes/times (seconds, float16 per sample), spikes/units (uint16), labels."""
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(samples):
            times[i], units[i] = t.astype(np.float16), u.astype(np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.create_dataset("extra/keys", data=np.array([b"zero", b"one", b"two"]))


def make_shd(root, n_per_class=12, classes=3, seed=2):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("shd_train.h5", n_per_class), ("shd_test.h5", n_per_class // 2)):
        samples, labels = [], []
        for c in range(classes):
            for _ in range(n):
                u, t = class_events(rng, c, 150, 700, 1000)
                samples.append((t / 1000.0, u * 20))  # seconds; units spread over the 700 channels
                labels.append(c)
        write_shd(root / name, samples, labels)


# -- readers and binning -------------------------------------------------------------------------
def test_nmnist_reader_decodes_overflow_and_polarity(tmp_path):
    t = np.array([5, 70_000, 2**23 + 100, 2**23 + 9000])
    write_nmnist_bin(tmp_path / "a.bin", [1, 2, 3, 33], [4, 5, 6, 33], [0, 1, 1, 0], t)
    ev = E.read_nmnist(tmp_path / "a.bin")
    assert ev["x"].tolist() == [1, 2, 3, 33] and ev["y"].tolist() == [4, 5, 6, 33]
    assert ev["p"].tolist() == [0, 1, 1, 0] and ev["t"].tolist() == t.tolist()


def test_to_frames_by_hand():
    ev = np.zeros(6, dtype=E.NMNIST_DTYPE)
    ev["x"], ev["y"], ev["p"] = [0, 1, 1, 2, 0, 3], [0, 0, 0, 1, 2, 3], [0, 1, 1, 0, 1, 0]
    ev["t"] = [100, 105, 109, 121, 135, 140]  # window (140 - 100) // 4 = 10
    frames = E.to_frames(ev, (4, 4, 2), 4)
    assert frames.shape == (4, 2, 4, 4)
    assert frames[0, 1, 0, 1] == 2 and frames[0, 0, 0, 0] == 1  # t 100, 105, 109 in [100, 110)
    assert frames[1].sum() == 0  # nothing in [110, 120)
    assert frames[2, 0, 1, 2] == 1 and frames[3, 1, 2, 0] == 1
    assert frames.sum() == 5  # t = 140 = t_first + 4 windows falls out, as in tonic
    spikes = E.spike_frames(ev, (4, 4, 2), 4, flat=False)
    assert spikes.shape == (2, 4, 4, 4) and spikes.max() == 1 and spikes[1, 0, 1, 0] == 1


def test_binning_equals_tonic_when_installed(tmp_path):
    tonic = pytest.importorskip("tonic")
    rng = np.random.default_rng(5)
    ev = np.zeros(500, dtype=E.NMNIST_DTYPE)
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 34, 500), rng.integers(0, 34, 500), rng.integers(0, 2, 500)
    ev["t"] = np.sort(rng.integers(0, 300_000, 500))
    ours = E.to_frames(ev, E.NMNIST_SENSOR, 7)
    theirs = tonic.transforms.ToFrame(sensor_size=E.NMNIST_SENSOR, n_time_bins=7)(ev)
    assert np.array_equal(ours, theirs)


def test_detect_and_names(tmp_path):
    make_shd(tmp_path / "SHD", n_per_class=2)
    assert E.detect(tmp_path) == ("shd", tmp_path / "SHD")  # tonic's save_to folder
    assert E.detect(tmp_path / "SHD" / "shd_train.h5") == ("shd", tmp_path / "SHD" / "shd_train.h5")
    assert E.split_spec(f"{tmp_path}@24") == (str(tmp_path), 24)
    assert D.with_bins(str(tmp_path), 20) == f"{tmp_path}@20"
    assert D.with_bins("digits", 20) == "digits"


@pytest.mark.parametrize(
    "make, shape",
    [(make_nmnist, (2, 34, 34)), (make_dvs, (2, 128, 128)), (make_shd, (700,))],
    ids=["nmnist", "dvsgesture", "shd"],
)
def test_loaded_shapes_and_splits(tmp_path, make, shape):
    make(tmp_path)
    ds = D.load(f"{tmp_path}@8")
    assert ds.time_steps == 8 and ds.input_shape == shape and ds.num_classes == 3
    assert len(ds.train[1]) + len(ds.val[1]) == 36 and len(ds.test[1]) == 18
    assert ds.train[0].dtype == np.uint8 and set(np.unique(ds.train[0])) <= {0, 1}
    assert ds.train[0].any()


def test_dvs_sample_matches_tonics_conversion(tmp_path):
    """One DVS Gesture file: ms -> µs (x 1000), then ToFrame; by hand for three events."""
    folder = tmp_path / "f"
    folder.mkdir()
    np.save(folder / "4.npy", np.array([[1, 2, 0, 0.0], [3, 4, 1, 1.5], [5, 6, 1, 3.0]]))
    ev = E.read_dvsgesture(folder / "4.npy")
    assert ev["t"].tolist() == [0, 1500, 3000] and ev["p"].tolist() == [False, True, True]
    frames = E.to_frames(ev, E.DVSGESTURE_SENSOR, 2)  # window 1500: [0, 1500), [1500, 3000)
    assert frames[0, 0, 2, 1] == 1 and frames[1, 1, 4, 3] == 1 and frames.sum() == 2


@pytest.mark.slow
@pytest.mark.parametrize("make", [make_nmnist, make_dvs, make_shd], ids=["nmnist", "dvsgesture", "shd"])
def test_train_and_evaluate_end_to_end(tmp_path, make):
    folder = tmp_path / "data"
    make(folder)
    model = tmp_path / "m.pt"
    p = run_snnc(
        "train", "--dataset", folder, "--steps", "8", "--arch", "mlp", "--hidden", "32", "--epochs", "6",
        "--lr", "5e-3", "--batch-size", "8", "-o", model, "--json", "--quiet",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    trained = json.loads(p.stdout)
    assert trained["encoding"] == "given" and trained["steps"] == 8
    assert trained["dataset"] == f"{folder}@8"  # the binning is part of the recorded name
    e = run_snnc("evaluate", model, "--backend", "torch", "--json")
    assert e.returncode == 0, e.stderr
    out = json.loads(e.stdout)
    assert out["accuracy"] == pytest.approx(trained["test_accuracy"])
    assert out["accuracy"] > 0.5  # 3 classes: chance is 1/3
    if make is make_dvs:
        return  # a dense layer on 2 x 128 x 128 inputs exceeds a neurocore's 16000 input axons
    s = run_snnc("evaluate", model, "--dataset", folder, "--json")  # on the deployed net; @8 from the file
    assert s.returncode == 0, s.stderr
    assert json.loads(s.stdout)["samples"] == 18


def test_bad_event_folders_are_one_line(tmp_path):
    (tmp_path / "Train" / "x").mkdir(parents=True)
    (tmp_path / "Test").mkdir()
    (tmp_path / "Train" / "x" / "a.bin").write_bytes(b"\x01\x02\x03\x04\x05")
    p = run_snnc("train", "--dataset", tmp_path, "--epochs", "1", "-o", tmp_path / "m.pt")
    assert_one_line_error(p, "does not end in a digit")
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert_one_line_error(run_snnc("train", "--dataset", empty, "-o", tmp_path / "m.pt"), "unknown dataset")
