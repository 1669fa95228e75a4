"""The quick start of docs/ledger.md, run as it stands in the document (read from it here, so that
the document and the test cannot drift apart)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lemgrid.ledger.store import Ledger
from lemgrid.ledger.verify import verify_ledger

DOC = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"


def quick_start_block() -> str:
    """The first ```bash block under the document's "## Quick start" heading."""
    text = DOC.read_text()
    section = text[text.index("\n## Quick start\n"):]
    section = section[:section.find("\n## ", 1)]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "docs/ledger.md: no ```bash block in the quick start"
    return match.group(1)


@pytest.mark.slow
def test_the_quick_start_runs_verbatim(tmp_path):
    for module in ("web3", "vyper", "eth_tester"):  # the last step anchors on an in-process EVM
        pytest.importorskip(module)
    script = tmp_path / "quickstart.sh"
    script.write_text("set -euo pipefail\n" + quick_start_block())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: 4 entries, 1 checkpoints" in done.stdout
    assert "VALID: entry 2 (order) is included" in done.stdout
    assert "anchors in contract" in done.stdout
    with Ledger.open(tmp_path / "market.db") as ledger:
        kinds = [e["payload"]["kind"] for e in ledger.entries()]
    assert kinds == ["log-init", "key-registration", "order", "checkpoint"]
    assert verify_ledger(tmp_path / "market.db").ok
