"""Offline datasets, fixed splits, encoders, and the numpy-only MNIST unpickler."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch

from snnc import data as D
from snnc.errors import SnncError


def test_digits_splits_fixed_and_disjoint():
    ds = D.load_digits()
    assert ds.input_shape == (1, 8, 8)
    n = sum(len(ds.split(s)[0]) for s in ("train", "val", "test"))
    assert n == 1797
    again = D.load_digits()
    np.testing.assert_array_equal(ds.test[1], again.test[1])
    assert 0.0 <= ds.train[0].min() and ds.train[0].max() <= 1.0
    # stratified: every class in every split
    for s in ("train", "val", "test"):
        assert len(np.unique(ds.split(s)[1])) == 10


def test_mnist_loads_offline():
    ds = D.load("mnist")
    assert ds.input_shape == (1, 28, 28)
    assert (len(ds.train[0]), len(ds.val[0]), len(ds.test[0])) == (50000, 10000, 10000)
    assert ds.train[0].dtype == np.float32 and 0 <= ds.train[0].min() and ds.train[0].max() <= 1


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_mnist_unpickler_refuses_code():
    raw = pickle.dumps((_Evil(),))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        D._NumpyOnlyUnpickler(io.BytesIO(raw)).load()
    ok = pickle.dumps((np.arange(3, dtype=np.float32),))
    np.testing.assert_array_equal(D._NumpyOnlyUnpickler(io.BytesIO(ok)).load()[0], [0, 1, 2])


def test_encoders():
    x = torch.tensor([[0.0, 0.25, 0.5, 1.0]])
    reg = D.encode(x, 8, "regular")
    assert reg.shape == (1, 4, 8)
    np.testing.assert_array_equal(reg.sum(-1).numpy(), [[0, 2, 4, 8]])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    r1 = D.encode(x.expand(1000, 4), 16, "rate", g1)
    r2 = D.encode(x.expand(1000, 4), 16, "rate", g2)
    assert torch.equal(r1, r2)
    rates = r1.mean(dim=(0, 2))
    assert torch.allclose(rates, x[0], atol=0.02)
    d = D.encode(x, 3, "direct")
    np.testing.assert_array_equal(d[0, :, 0].numpy(), [0, 0, 1, 1])
    with pytest.raises(SnncError, match="unknown encoding"):
        D.encode(x, 3, "phase")


def test_unknown_dataset():
    with pytest.raises(SnncError, match="unknown dataset"):
        D.load("cifar")
