"""``snnc check BUILD_OR_NET``: check a build directory, a netx file or a ``graph.safetensors``
against Loihi 2's hardware rules (:mod:`snnc.targets.loihi2.check`, docs/loihi2.md §8).

One line per violation, ``layer: rule: what is wrong (source)``, then the summary ``N layers, M
rules checked, K violations``; ``--json`` gives the same as a document. The CLI exits 1 when there
is a violation (:attr:`Outcome.result` ``"violations"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from snnc.commands import Outcome


@dataclass(frozen=True)
class CheckOptions:
    """What ``snnc check`` was asked to check."""

    net: str


def run_check(opts: CheckOptions) -> Outcome:
    """Check ``opts.net`` against every rule; the violations are in ``result["violations"]``."""
    from pathlib import Path

    from snnc.checkpoint import sniff
    from snnc.errors import UsageError
    from snnc.targets.loihi2.check import check_path

    if Path(opts.net).is_file() and sniff(Path(opts.net)) == "nir":
        raise UsageError(
            f"{opts.net}: a NIR graph is float; compile it for loihi2 (snnc compile {opts.net} "
            "--target loihi2 -o BUILD) and check the build"
        )
    report = check_path(opts.net)
    lines = tuple(v.line() for v in report.violations) + tuple(f"note: {n}" for n in report.notes)
    return Outcome(report.to_dict(), lines=(*lines, report.summary()))
