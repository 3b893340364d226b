"""The work behind each ``snnc`` command, one module per command, none of it click.

Each module has a frozen options dataclass (what the user asked for) and one plain function
``run_<command>(options, ...)`` that does the work and returns an :class:`Outcome`: the JSON result
(``--json``) and its human rendering. ``snnc/cli.py`` parses the command line into the options,
calls that function and prints the outcome; nothing here imports click or ``snnc.cli``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """A table to print (rendered by :func:`snnc.ui.table`): a title, column names, rows."""

    title: str
    columns: list[str]
    rows: list[list]


@dataclass(frozen=True)
class Outcome:
    """What a command returns.

    ``result``: the document ``--json`` prints. Without ``--json`` (and without ``--quiet``) the CLI
    prints ``heading`` (rich markup), then ``table``, then ``lines`` (plain text), each when present.
    """

    result: dict
    heading: str | None = None
    table: Table | None = None
    lines: tuple[str, ...] = ()
