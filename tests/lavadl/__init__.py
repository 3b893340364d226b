"""lava-dl's own netx ground truth and shipped trained nets as snnc's tests (files in ``data/``,
provenance in ``data/README.md``)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

#: Every non-LFS trained net lava-dl ships, as carried here: name -> file. Identical files in lava-dl
#: (the same git blob) are carried once (``data/README.md``).
NETS = {
    "tiny": DATA / "tiny.net",
    "pilotnet_lif": DATA / "pilotnet_lif" / "network.net",
    "bootstrap_mnist": DATA / "nets" / "bootstrap_mnist.net",
    "netx_mnist": DATA / "nets" / "netx_mnist.net",
    "oxford": DATA / "nets" / "oxford.net",
    "netx_pilotnet_sdnn": DATA / "nets" / "netx_pilotnet_sdnn.net",
    "slayer_pilotnet": DATA / "nets" / "slayer_pilotnet.net",
}
