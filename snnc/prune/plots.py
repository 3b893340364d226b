"""PNG plots of a pruning report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from snnc.fileio import atomic_path


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path


def save_plots(report: dict, out_dir: str | Path) -> list[Path]:
    """Write ``curves.png`` (accuracy and sparsity per epoch), ``channels.png`` (kept channels per
    layer) and ``activity.png`` (per-channel spike-rate histograms before/after). Returns the
    paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    h = report["history"]
    ep = [r["epoch"] for r in h]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(ep, [100 * r["val_acc"] for r in h], marker="o")
    ax[0].axhline(100 * report["accuracy_before"], ls="--", c="grey", label="before")
    ax[0].set(xlabel="epoch", ylabel="val accuracy (%)", title=f"{report['method']}")
    ax[0].legend()
    ax[1].plot(ep, [r["channel_sparsity"] for r in h], marker="o", label="channels")
    ax[1].plot(ep, [r["connection_sparsity"] for r in h], marker="s", label="connections")
    ax[1].set(xlabel="epoch", ylabel="sparsity", ylim=(0, 1))
    ax[1].legend()
    paths.append(_save(fig, out / "curves.png"))
    plt.close(fig)

    layers = report["layers"]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(layers)), 3.5))
    names = [r["layer"] for r in layers]
    ax.bar(names, [r["channels"] for r in layers], color="lightgrey", label="total")
    bars = ax.bar(names, [r["channels_kept"] for r in layers], label="kept")
    ax.bar_label(bars, labels=[f"{r['channels_kept']}/{r['channels']}" for r in layers])
    title = f"kept per layer ({report.get('allocation') or 'own'} allocation"
    if report.get("neurocores_after") is not None:
        title += f"; neurocores {report['neurocores_before']} -> {report['neurocores_after']}"
    ax.set(ylabel="output channels / neurons", title=title + ")")
    ax.legend()
    paths.append(_save(fig, out / "channels.png"))
    plt.close(fig)

    act = report["activity"]
    names = [n for n, v in act["before"].items() if v]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(3.2 * max(len(names), 1), 3), squeeze=False)
    for a, n in zip(axes[0], names, strict=False):
        a.hist(act["before"][n], bins=20, alpha=0.6, label="before")
        a.hist(act["after"][n] or [], bins=20, alpha=0.6, label="after")
        a.set(title=n, xlabel="spike rate per channel")
    axes[0][0].legend()
    paths.append(_save(fig, out / "activity.png"))
    plt.close(fig)
    return paths
