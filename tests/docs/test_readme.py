"""The README speaks only of what is in the repository (issue 10, item 23)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from typer.main import get_command

from lemgrid.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _paths_named_in_readme() -> set[str]:
    links = re.findall(r"\]\(([^)#\s]+)", README)
    code = re.findall(r"`((?:\.\./|[\w.-]+/)[\w./-]*)`", README)
    return {p for p in links + code if "://" not in p}


def test_every_path_the_readme_names_exists_in_the_repository():
    paths = _paths_named_in_readme()
    assert "docs/scenario.md" in paths  # the pattern finds the links it must check
    for path in sorted(paths):
        assert not path.startswith(".."), f"README points outside the repository: {path}"
        if path.startswith(("src/", "docs/", "examples/", "benchmarks/", "tests/", "scripts/")) \
                or path.endswith(".md"):
            assert (ROOT / path).exists(), f"README names {path}, which does not exist"
    for package in re.findall(r"`(\w+)/`", README):
        assert (ROOT / "src" / "lemgrid" / package).is_dir() or (ROOT / package).is_dir(), \
            f"README names a package {package}/ that does not exist"


def test_every_command_in_the_readme_exists():
    commands = set(get_command(app).commands)
    named = set(re.findall(r"^\|\s*`lemgrid ([\w-]+)", README, flags=re.M))
    named |= set(re.findall(r"^lemgrid ([\w-]+)", README, flags=re.M))
    assert named, "the README's command table was not found"
    assert named <= commands, f"README names commands that do not exist: {named - commands}"


def test_every_declared_extra_is_installed_by_make_test():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = re.search(r'install -e "\.\[([\w,-]+)\]"', (ROOT / "Makefile").read_text())
    assert installed, "make test installs no extras"
    for extra in project.get("optional-dependencies", {}):
        assert extra in installed.group(1).split(","), \
            f"extra {extra!r} is declared but make test does not install it"
