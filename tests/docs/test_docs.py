"""The documentation builds without a warning and every code block in it runs (issue 11 item 5).

Code blocks in ``docs/`` follow one convention, checked here:

- ```` ```bash ```` and ```` ```python ```` blocks run, in the order of the page, in one fresh
  folder per page (with ``examples/`` of the repository in it); the Python blocks of a page share
  one namespace, like a session typed from the top of the page;
- ```` ```yaml ```` blocks are parsed, and validated as a scenario when they are a whole one
  (they have a ``grid:`` key);
- ```` ```console ```` (what a terminal shows) and ```` ```text ```` (formulas, synopses) are
  not run. A ``console`` block with a command to type (a line starting with ``$ ``) must say why
  it is not run, in a ``<!-- not run: ... -->`` comment right above it;
- a block without a language is an error: every block says what it is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
RUN = ("bash", "python")
NOT_RUN = ("console", "text")
KINDS = (*RUN, "yaml", *NOT_RUN)

_FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
_NOT_RUN_NOTE = re.compile(r"<!--\s*not run:\s*\S.*?-->\s*$", re.S)


def blocks(page: Path) -> list[tuple[str, str, int, str]]:
    """(language, code, line, text before the block) of every fenced block of a page."""
    text = page.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1, text[:m.start()])
            for m in _FENCE.finditer(text)]


def _name(page: Path) -> str:
    return str(page.relative_to(DOCS))


def test_the_docs_build_without_warnings(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                             str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    site = tmp_path / "site"
    for page in PAGES:  # every page is built (strict mode also fails on pages left out of nav)
        built = site / _name(page).removesuffix(".md") / "index.html"
        if page.name == "index.md":
            built = site / _name(page).removesuffix("index.md") / "index.html"
        assert built.is_file(), f"{_name(page)} was not built"
    reference = (site / "reference" / "simulation" / "index.html").read_text(encoding="utf-8")
    assert "lemgrid.sim.runner.simulate" in reference  # the API reference is from the docstrings
    assert "Interval length" in (site / "reference" / "grid" / "index.html").read_text()


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_block_says_what_it_is(page):
    for language, code, line, before in blocks(page):
        where = f"{_name(page)} line {line}"
        assert language in KINDS, f"{where}: a code block must be one of {KINDS}, " \
                                  f"got {language or 'no language'!r}"
        if language == "console" and re.search(r"^\$ ", code, re.M):
            assert _NOT_RUN_NOTE.search(before), \
                f"{where}: a command that is not run needs <!-- not run: why --> above it"
        if language == "yaml":
            data = yaml.safe_load(code)
            if isinstance(data, dict) and "grid" in data:
                from lemgrid.scenario import parse_scenario

                parse_scenario(code, where)


_DRIVER = textwrap.dedent('''
    import json, subprocess, sys, traceback
    blocks = json.load(open(sys.argv[1]))
    namespace = {"__name__": "__main__"}
    for language, code, where in blocks:
        if language == "python":
            try:
                exec(compile(code, where, "exec"), namespace)
            except BaseException:
                traceback.print_exc()
                sys.exit(f"{where}: the python block failed")
        else:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", code])
            if done.returncode:
                sys.exit(f"{where}: the bash block exited with {done.returncode}")
''')

RUNNABLE = [p for p in PAGES if any(lang in RUN for lang, *_ in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=_name)
def test_every_code_block_runs(page, tmp_path):
    import json

    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    todo = [(lang, code, f"{_name(page)} line {line}")
            for lang, code, line, _ in blocks(page) if lang in RUN]
    (tmp_path / "blocks.json").write_text(json.dumps(todo))
    (tmp_path / "driver.py").write_text(_DRIVER)
    bin_dir = str(Path(sys.executable).parent)  # lemgrid's console script, next to python
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(tmp_path / "driver.py"),
                             str(tmp_path / "blocks.json")], cwd=work, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_the_runnable_pages_are_found():
    names = {_name(p) for p in RUNNABLE}
    assert {"quickstart-cli.md", "quickstart-python.md", "report.md"} <= names
