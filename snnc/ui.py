"""Terminal output: a rich progress bar (off with --quiet or when stdout is not a terminal) and tables."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console, ConsoleDimensions
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

# Output that is not a terminal (a pipe into grep, a file, a test's capture) is never wrapped: rich would
# otherwise fold lines at 80 columns or at $COLUMNS.
_NO_WRAP_WIDTH = 4096


class _Console(Console):
    """rich's Console, as wide as the terminal on a terminal and unbounded elsewhere (the stream is
    looked up on every print, so a redirected ``sys.stdout`` is honoured)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.is_terminal:
            return size
        return ConsoleDimensions(_NO_WRAP_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


console = _Console(stderr=False)
err_console = _Console(stderr=True)


class Reporter:
    """Progress reporting for long work. ``task(total, desc)`` is a context yielding ``advance(n, **kv)``."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stdout.isatty() if enabled is None else enabled

    @contextmanager
    def task(self, total: int, description: str):
        if not self.enabled:
            yield lambda n=1, **kv: None
            return
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            tid = progress.add_task(description, total=total, info="")

            def advance(n: int = 1, **kv) -> None:
                info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in kv.items())
                progress.update(tid, advance=n, info=info)

            yield advance


def table(title: str, columns: list[str], rows: list[list]) -> Table:
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right" if c not in ("layer", "kind", "name") else "left")
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    return t
