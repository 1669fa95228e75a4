"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` in a temporary directory,
``pg_ctl start`` on a loopback port, stopped (and the directory removed) afterwards.

``scripts/ensure-test-services.sh`` installs PostgreSQL (apt) where it is missing. ``initdb``
refuses to run as root, so as root the cluster is created and run as the unprivileged ``nobody``
user (via ``runuser``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def pg_bin() -> Path | None:
    """Directory of PostgreSQL's server binaries (``initdb``, ``pg_ctl``), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Run a PostgreSQL server on loopback; yields the URL of its ``postgres`` database.

    Raises
    ------
    RuntimeError
        If PostgreSQL is not installed (run ``scripts/ensure-test-services.sh``).
    """
    bin_dir = pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed: run scripts/ensure-test-services.sh")
    root = Path(tempfile.mkdtemp(prefix="lemgrid-pg-"))
    data, port = root / "data", _free_port()
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "nobody", "--"] if as_root else []
    if as_root:
        os.chmod(root, 0o755)
        data.mkdir()
        shutil.chown(data, "nobody", "nogroup")
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-sync"], check=True,
                   capture_output=True)
    sockets = data  # the socket lives in the cluster directory, not in /var/run
    subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(data / "server.log"), "-o",
                    f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=on", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """Create an empty database on the server; returns its URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(server_url.replace("postgresql://", "postgresql+psycopg://"),
                              isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
