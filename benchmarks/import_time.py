"""Goal (issue 11): ``python -X importtime -c "import lemgrid"`` under 0.3 s.

Measures the cumulative import time of ``lemgrid`` reported by ``-X importtime`` (best of five
fresh interpreters), against the peer ``import pandas`` (what a front door that imported its
tables eagerly would cost at least). Last line: one JSON object.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

GOAL_S = 0.3


def cumulative_import_s(module: str) -> float:
    """Cumulative import time of ``module`` in a fresh interpreter [s] (best of five)."""
    best = float("inf")
    for _ in range(5):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                             capture_output=True, text=True, check=True).stderr
        rows = [line for line in err.splitlines() if re.search(rf"\|\s*{re.escape(module)}$",
                                                               line)]
        best = min(best, int(rows[-1].split("|")[1]) / 1e6)
    return best


def main() -> None:
    measured = cumulative_import_s("lemgrid")
    peer = cumulative_import_s("pandas")
    print(json.dumps({"goal": f"import lemgrid < {GOAL_S} s", "measured_s": round(measured, 4),
                      "peer": "import pandas", "peer_s": round(peer, 4),
                      "met": measured < GOAL_S, "load_avg_1min": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
