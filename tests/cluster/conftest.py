"""The real services of the cluster tests (``python -m pytest -m cluster``): a one-node SLURM and a PostgreSQL
server, started by ``.ci/cluster-up`` (as root, once the Debian packages are installed) or found running.

Where they cannot start the tests skip with the reason; with ``FBENCH_CLUSTER_REQUIRED=1`` (as ``.ci/run`` sets
it) they fail instead, so that CI cannot pass without having met the real services."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cluster_helpers import CLUSTER_DIR, CLUSTER_UP


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail where the cluster tests are required (FBENCH_CLUSTER_REQUIRED=1)."""
    if os.environ.get("FBENCH_CLUSTER_REQUIRED") == "1":
        pytest.fail(f"cluster tests required (FBENCH_CLUSTER_REQUIRED=1) but {reason}", pytrace=False)
    pytest.skip(reason)


def read_env() -> dict[str, str]:
    path = CLUSTER_DIR / "env"
    if not path.is_file():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def partition_up(partition: str) -> bool:
    if shutil.which("sinfo") is None:
        return False
    completed = subprocess.run(["sinfo", "-h", "-p", partition, "-o", "%T"], capture_output=True, text=True,
                               check=False)
    return completed.returncode == 0 and completed.stdout.split()[:1] in (["idle"], ["mixed"], ["allocated"])


def postgres_up(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error:
        return False
    return True


@pytest.fixture(scope="session")
def cluster_env() -> dict[str, str]:
    """The services' settings (``$FBENCH_CLUSTER_DIR/env``), after starting them with ``.ci/cluster-up`` where
    they are not running (it finds running ones and returns at once)."""
    env = read_env()
    if env and partition_up(env["FBENCH_SLURM_PARTITION"]) and postgres_up(env["FBENCH_PG_URL"]):
        return env
    missing = [tool for tool in ("slurmctld", "slurmd", "munged") if shutil.which(tool) is None]
    if missing or not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        unavailable("SLURM or PostgreSQL is not installed (apt-get install -y --no-install-recommends slurm-wlm "
                    "munge postgresql)")
    if os.geteuid() != 0:
        unavailable("the SLURM and PostgreSQL daemons are not running and only root can start them "
                    "(sudo .ci/cluster-up)")
    completed = subprocess.run([str(CLUSTER_UP)], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        unavailable(f".ci/cluster-up could not start the services: {completed.stderr.strip()[-500:]}")
    return read_env()


@pytest.fixture(scope="session")
def partition(cluster_env: dict[str, str]) -> str:
    """The test cluster's partition, its node up."""
    name = cluster_env["FBENCH_SLURM_PARTITION"]
    if not partition_up(name):
        unavailable(f"SLURM partition {name} is not up (sinfo -p {name})")
    return name


@pytest.fixture(scope="session")
def postgres_url(cluster_env: dict[str, str]) -> str:
    """The URL of the server's ``fbench`` database (a test makes its own with :func:`new_database`)."""
    pytest.importorskip("psycopg", reason="psycopg missing: pip install -e '.[cluster]'")
    url = cluster_env["FBENCH_PG_URL"]
    if not postgres_up(url):
        unavailable(f"PostgreSQL at {url} does not answer")
    return url


