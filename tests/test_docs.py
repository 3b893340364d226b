"""Every command the docs show is run, and docs/cli.md is what the click commands print.

The shell blocks of README.md and docs/*.md (```console: the lines after ``$ ``; ```sh: every line
that is not a comment) run in order, per file, in a fresh temporary directory, with ``snnc`` and
``python`` from this environment. A block is skipped, as illustrative only, when the line before
its fence is ``<!-- docs-test: skip -->``; a ```python block after ``<!-- docs-test: file NAME -->``
is written to NAME first (the docs say "save this as NAME"); ``<!-- docs-test: creates A B -->``
names the files a block must leave behind. Each command must exit 0, and the files it promises
(``-o``/``--output``/``--report``, a loihi2 build's ``network.net`` and ``report.json``, a
``--plot`` directory's PNGs) must exist.

Sizes are cut so that the whole run stays small: ``--epochs``, ``--train-limit``, ``--limit``,
``--val-limit`` and ``--test-limit`` are capped (:data:`SMALL`) unless ``SNNC_DOCS_FULL=1``, which
runs the docs exactly as written.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FULL = os.environ.get("SNNC_DOCS_FULL") == "1"
# option -> the largest value the test runs with (the docs' own value when it is smaller)
SMALL = {
    "--epochs": 1,
    "--train-limit": 1000,
    "--test-limit": 200,
    "--limit": 200,
    "--val-limit": 200,
    "--calib": 200,
}
MARK = re.compile(r"^<!--\s*docs-test:\s*(\w+)\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: list[str]
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def commands(self) -> list[str]:
        """The shell commands of a console/sh block, backslash continuations joined."""
        out, parts = [], []
        for raw in self.text:
            line = raw.rstrip()
            if not parts:
                if self.lang == "console":
                    if not line.startswith("$ "):
                        continue  # output shown in the docs
                    line = line[2:]
                elif not line.strip() or line.lstrip().startswith("#"):
                    continue
            parts.append(line.removesuffix("\\").strip())
            if not line.endswith("\\"):
                out.append(" ".join(parts))
                parts = []
        return out


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path`` with the docs-test marks of the lines just before it."""
    found, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        marks, k = {}, start - 1
        while k >= 0 and (mk := MARK.match(lines[k].strip())):
            marks[mk.group(1)] = mk.group(2)
            k -= 1
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[start + 1 : j]]
        found.append(Block(path, start + 1, lang, body, marks))
        i = j + 1
    return found


def runnable(path: Path) -> list[Block]:
    return [
        b
        for b in blocks(path)
        if "skip" not in b.marks
        and (b.lang in ("console", "sh") or (b.lang == "python" and "file" in b.marks))
    ]


def shrink(command: str) -> str:
    """``command`` with the sizes of :data:`SMALL` capped (unless ``SNNC_DOCS_FULL=1``)."""
    if FULL:
        return command
    words = shlex.split(command)
    changed = False
    for i, w in enumerate(words[:-1]):
        if w in SMALL and words[i + 1].isdigit() and int(words[i + 1]) > SMALL[w]:
            words[i + 1], changed = str(SMALL[w]), True
    return shlex.join(words) if changed else command


def promised(command: str) -> list[str]:
    """The paths an ``snnc`` command says it writes."""
    words = shlex.split(command)
    if not words or words[0] != "snnc" or len(words) < 2:
        return []
    out = []
    for i, w in enumerate(words[:-1]):
        if w in ("-o", "--output", "--report"):
            out.append(words[i + 1])
    if words[1] == "compile" and out:
        target = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--target", "-t")), "loihi2")
        out += {"loihi2": ["network.net", "report.json"], "nir": ["network.nir"]}.get(target, ["report.json"])
        out = [out[0]] + [f"{out[0]}/{name}" for name in out[1:]]
    return out


def run_file(path: Path, tmp: Path) -> list[str]:
    """Run the runnable blocks of ``path`` in ``tmp``; return the commands that ran."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MPLBACKEND", "Agg")
    env.pop("SNNC_DOCS_FULL", None)
    ran = []
    for block in runnable(path):
        if block.lang == "python":
            (tmp / block.marks["file"]).write_text("\n".join(block.text) + "\n")
            continue
        for command in block.commands():
            cmd = shrink(command)
            proc = subprocess.run(
                cmd, shell=True, executable="/bin/bash", cwd=tmp, env=env, capture_output=True, text=True
            )
            tail = f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            assert proc.returncode == 0, f"{block.where}: `{cmd}` exited {proc.returncode}\n{tail}"
            for p in promised(cmd):
                assert (tmp / p).exists(), f"{block.where}: `{cmd}` did not write {p}"
            words = shlex.split(cmd)
            if words[:1] == ["snnc"] and "--plot" in words[:-1]:
                plots = words[words.index("--plot") + 1]
                assert list((tmp / plots).glob("*.png")), f"{block.where}: no PNG in {plots}"
            ran.append(cmd)
        for name in block.marks.get("creates", "").split():
            assert (tmp / name).exists(), f"{block.where}: the block did not create {name}"
    return ran


DOCS_WITH_COMMANDS = [p for p in DOCS if any(b.lang in ("console", "sh") for b in runnable(p))]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a few minutes on an idle 2-core machine
@pytest.mark.parametrize("path", DOCS_WITH_COMMANDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_commands_run(path: Path, tmp_path: Path):
    ran = run_file(path, tmp_path)
    assert any(c.startswith("snnc ") for c in ran), f"{path.name}: no snnc command ran"


def test_docs_have_commands_and_few_skips():
    """The quickstart and the tutorial are run; illustrative-only blocks stay the exception."""
    names = {p.name for p in DOCS_WITH_COMMANDS}
    assert {"README.md", "tutorial.md"} <= names
    skipped = [b.where for p in DOCS for b in blocks(p) if "skip" in b.marks]
    assert len(skipped) <= 4, f"too many blocks marked docs-test: skip: {skipped}"


def test_readme_opens_with_make_demo_and_make_test():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[:4] == ["```", "make demo", "make test", "```"]


def test_parser_reads_console_sh_and_marks(tmp_path: Path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- docs-test: skip -->\n```sh\nrm -rf /\n```\n\n```console\n$ snnc train \\\n"
        "    --epochs 50 -o m.pt\noutput line\n$ snnc check build\n```\n"
        "<!-- docs-test: file a.py -->\n```python\nprint(1)\n```\n"
    )
    bs = blocks(doc)
    assert [b.lang for b in bs] == ["sh", "console", "python"]
    assert bs[0].marks == {"skip": ""} and bs[2].marks == {"file": "a.py"}
    assert [b.lang for b in runnable(doc)] == ["console", "python"]
    assert bs[1].commands() == ["snnc train --epochs 50 -o m.pt", "snnc check build"]
    assert shrink("snnc train --epochs 50 -o m.pt") == (
        "snnc train --epochs 50 -o m.pt" if FULL else "snnc train --epochs 1 -o m.pt"
    )
    assert promised("snnc compile p.pt -o build") == ["build", "build/network.net", "build/report.json"]


def test_cli_reference_is_generated():
    """docs/cli.md equals what tools/gen_cli_docs.py makes from the click commands (run apart, so no
    plugin registered by another test shows up)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_cli_docs.py"), "--stdout"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == proc.stdout, "docs/cli.md is stale; run: python tools/gen_cli_docs.py"
    for name in ("train", "prune", "compile", "simulate", "evaluate", "inspect", "check"):
        assert f"## snnc {name}\n" in committed and f"Usage: snnc {name} [OPTIONS]" in committed
