"""The model a training command starts from: an snnc model file, or a network file made trainable.

``snnc prune MODEL`` (and :func:`snnc.api.prune`) accept as ``MODEL`` an snnc model file, a lava-dl
netx HDF5 file (``.net``) or a NIR graph (``.nir``). A network file is read into the IR by its
target's reader and turned into a :class:`~snnc.nn.zoo.SpikingNet` by
:func:`snnc.nn.from_graph.graph_to_model`; its header is made here: the network records no data
settings, so they come from ``--dataset`` (a spike dataset's own ``T`` and the ``given`` encoding,
else ``--steps`` or 16 and rate encoding).
"""

from __future__ import annotations

from pathlib import Path

from snnc.errors import UsageError

GRAPH_KINDS = {"hdf5": "netx", "nir": "nir"}  # checkpoint.sniff kinds that are network files


def network_kind(path: str | Path) -> str | None:
    """``"netx"`` or ``"nir"`` for a network file, None for anything else (a model file)."""
    from snnc.checkpoint import sniff

    p = Path(path)
    return GRAPH_KINDS.get(sniff(p)) if p.is_file() else None


def read_graph(path: str | Path, kind: str):
    """The IR graph of a netx or NIR file."""
    if kind == "netx":
        from snnc.targets.loihi2.netx import read_netx

        return read_netx(path)
    from snnc.targets.nir import read_nir

    return read_nir(path)


def imported_header(model, path: str | Path, kind: str, dataset: str | None, steps: int | None) -> dict:
    """A model header for a network read from ``path``: its data settings from ``dataset``."""
    from snnc.checkpoint import FORMAT, VERSION

    data = {}
    if dataset is not None:
        from snnc import data as D

        ds = D.load(dataset)
        if ds.time_steps is not None:
            data = {"dataset": dataset, "steps": ds.time_steps, "encoding": "given"}
        else:
            data = {"dataset": dataset, "steps": steps or 16, "encoding": "rate"}
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch,
        "neuron": {},
        "data": data,
        "meta": {"source": {"kind": kind, "path": str(path)}},
    }


def load_trainable(
    path: str | Path,
    trust_pickle: bool = False,
    arch: str | None = None,
    dataset: str | None = None,
    steps: int | None = None,
):
    """``(model, header)`` for training: a model file as :func:`snnc.checkpoint.load_model` reads
    it (``arch``: the user's ``--arch``), or a netx / NIR network as a trainable model."""
    kind = network_kind(path)
    if kind is None:
        from snnc import checkpoint

        return checkpoint.load_model(path, trust_pickle=trust_pickle, arch=arch)
    if arch is not None:
        raise UsageError(f"{path} is a {kind} network: its layers are the architecture; drop --arch")
    from snnc.nn.from_graph import graph_to_model

    model = graph_to_model(read_graph(path, kind))
    return model, imported_header(model, path, kind, dataset, steps)


def input_digest(path: str | Path, model) -> str:
    """What identifies the input of a resumable run: a model file's tensor digest, or for a network
    file the digest of the model made from it (the conversion is deterministic)."""
    from snnc import checkpoint

    if network_kind(path) is None:
        tensors, _ = checkpoint.read_tensors(path)
        return checkpoint.tensor_digest(tensors)
    return checkpoint.tensor_digest(model.state_dict())
