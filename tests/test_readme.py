"""The README is tested: every ```python block runs, and its command-line section matches `--help`."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import click
import pytest
from _forkrun import run_script
from lateint_plugins.core.cli import main

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)
HUB_ID = '"answerdotai/answerai-colbert-small-v1"'
LOCAL_PATH = '"../shared/models/answerai-colbert-small-v1"'


def runnable(block: str, model: Path) -> str:
    """The block as a script: the model (Hub id or ../shared path) made local, top-level `await` wrapped."""
    code = block.replace(HUB_ID, repr(str(model))).replace(LOCAL_PATH, repr(str(model)))
    try:
        compile(code, "README.md", "exec")  # ast.parse alone accepts a top-level await
    except SyntaxError:  # top-level await: run the block as the body of a coroutine
        code = "import asyncio\n\nasync def _readme_block():\n" + textwrap.indent(code, "    ")
        code += "\n\nasyncio.run(_readme_block())\n"
    return code


def block_id(index: int) -> str:
    first = next(line for line in PYTHON_BLOCKS[index].splitlines() if line.startswith(("from", "import")))
    return f"{index}-{first.split()[1]}"


def test_readme_has_the_python_blocks_we_expect_and_all_parse(tmp_path: Path) -> None:
    # Quickstart, Qdrant, LangChain, LlamaIndex: a regex that stopped matching must not pass vacuously.
    assert len(PYTHON_BLOCKS) >= 4
    for block in PYTHON_BLOCKS:
        compile(runnable(block, tmp_path), "README.md", "exec")


def shown_output(block: str) -> list[str] | None:
    """The output block the README shows right after ``block`` (the quickstart's), if any."""
    match = re.match(r"```\n\s*```\n(.*?)```", README.split(block, 1)[1], flags=re.S)
    return match.group(1).strip().splitlines() if match else None


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)), ids=block_id)
def test_readme_python_block_runs(index: int, answerai_path: Path, tmp_path: Path) -> None:
    """Each block runs as a script in a process of its own, in an empty folder, offline, with the local checkpoint.

    A block followed by an output block (the quickstart) must print it: the same lines in the same
    order, scores within 0.05.
    """
    block = PYTHON_BLOCKS[index]
    script = tmp_path / "block.py"
    script.write_text(runnable(block, answerai_path), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("LATEINT_MODEL", None)
    proc = run_script(script, [], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = proc.stdout.strip().splitlines()
    assert printed, "every README block prints what it does"
    shown = shown_output(block)
    if shown is not None:
        assert len(printed) == len(shown), (printed, shown)
        for got, want in zip(printed, shown, strict=True):
            assert got.split(None, 1)[1] == want.split(None, 1)[1]
            assert float(got.split()[0]) == pytest.approx(float(want.split()[0]), abs=0.05)


def test_the_quickstart_output_block_is_found() -> None:
    assert [shown_output(b) is not None for b in PYTHON_BLOCKS].count(True) == 1


# ----------------------------------------------------------------------------- the CLI section
def cli_section() -> str:
    start = README.index("## Command line")
    return README[start : README.index("\n## ", start + 1)]


def test_readme_cli_section_matches_help() -> None:
    """Every command and option in `lateint --help` is in the README's CLI section, and nothing else."""
    section = cli_section()
    usage = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert usage is not None
    documented: dict[str, set[str]] = {}
    current = None
    for line in usage.group(1).splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "lateint":
            current = None if words[1].startswith("-") else words[1]
        elif not line.startswith(" "):  # an indented line continues the command above it
            current = None
        if current is not None:
            options = {w.strip("[]").split("=")[0] for w in words if w.strip("[").startswith("-")}
            documented.setdefault(current, set()).update(options)
    assert set(documented) == set(main.commands), "README lists exactly the commands lateint has"
    ctx = click.Context(main)
    for name, command in main.commands.items():
        options = {opt for p in command.get_params(ctx) if isinstance(p, click.Option) for opt in p.opts}
        options -= {"--help", "-h"}
        unknown = documented[name] - options
        assert not unknown, f"README documents options `lateint {name}` does not have: {sorted(unknown)}"
        missing = {o for o in options if o not in documented[name] and f"`{o}" not in section}
        missing -= {o for o in missing if any(p in documented[name] for p in _aliases(command, ctx, o))}
        assert not missing, f"README's CLI section does not mention `lateint {name}` option(s) {sorted(missing)}"
    top = {opt for p in main.get_params(ctx) if isinstance(p, click.Option) for opt in p.opts} - {"--help", "-h"}
    assert all(o in section for o in top), "the group's options (--version, -v) are documented"


def _aliases(command: click.Command, ctx: click.Context, option: str) -> list[str]:
    """The other spellings of ``option`` (``-k`` for ``--k``, ``-V`` for ``--version``)."""
    for p in command.get_params(ctx):
        if isinstance(p, click.Option) and option in p.opts:
            return [o for o in p.opts if o != option]
    return []
