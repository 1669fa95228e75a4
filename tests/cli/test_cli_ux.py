"""What a user touches in every command: the version, the horizon options, progress bars, and
output that fits a terminal of 80 columns (issue 11 item 7)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from typer.testing import CliRunner

from lemgrid.cli import app


def invoke(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def test_version_is_the_installed_distribution_version():
    result = subprocess.run([sys.executable, "-m", "lemgrid.cli", "--version"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"lemgrid {importlib.metadata.version('lemgrid')}"
