"""Training: accuracy on digits and byte-identical determinism."""

from __future__ import annotations

from snnc import checkpoint
from snnc.train import TrainConfig, train


def test_mlp_digits_beats_90_percent(digits_mlp):
    _, result = digits_mlp
    assert result["test_accuracy"] > 0.90, result["test_accuracy"]


def test_same_seed_byte_identical_state_dict(tmp_path):
    cfg = TrainConfig(dataset="digits", arch="lenet", epochs=1, seed=7, train_limit=300)
    a, _ = train(cfg)
    b, _ = train(cfg)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].numpy().tobytes() == sb[k].numpy().tobytes(), k
    c, _ = train(TrainConfig(dataset="digits", arch="lenet", epochs=1, seed=8, train_limit=300))
    assert any(not (sa[k] == c.state_dict()[k]).all() for k in sa if sa[k].is_floating_point())
    # And the files written for them are byte-identical too.
    for name, m in (("a", a), ("b", b)):
        checkpoint.save_model(tmp_path / f"{name}.pt", m, {"dataset": "digits"}, {"seed": 7})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_val_limit_validates_on_the_first_samples_only(monkeypatch):
    import snnc.train as T

    seen = []
    real = T.evaluate

    def spy(model, x, y, *args, **kw):
        seen.append(len(x))
        return real(model, x, y, *args, **kw)

    monkeypatch.setattr(T, "evaluate", spy)
    _, result = train(TrainConfig(dataset="digits", arch="mlp", epochs=2, train_limit=100, val_limit=37))
    assert seen[:2] == [37, 37]  # per-epoch validation
    assert seen[2] > 37  # the test split stays whole
    assert all(round(h["val_acc"] * 37, 6).is_integer() for h in result["history"])
