"""Shared test set-up: firmware/ and the CPython shims on sys.path so firmware modules import under pytest."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "tests" / "shims", ROOT / "firmware", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


import os  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _data_folder_outside_the_checkout(tmp_path_factory):
    """What tools keep by default (TID store, lab register and signing key, certificates, head-end DB)
    goes to $METERKIT_DATA: a temporary folder here, so no test writes into the checkout."""
    if "METERKIT_DATA" not in os.environ:
        os.environ["METERKIT_DATA"] = str(tmp_path_factory.mktemp("meterkit-data"))
    yield


@pytest.fixture(scope="session")
def postgres_server():
    """One private PostgreSQL server for the session (initdb + pg_ctl in a temporary folder, a free
    loopback port), stopped at the end; tests take fresh databases from it."""
    from host_tools.headend.pgserver import PostgresServer, pg_bin
    if not pg_bin():
        pytest.skip("PostgreSQL absent: apt-get install -y postgresql")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path):
    """Where a head-end store lives: a SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "he.db")
    return request.getfixturevalue("postgres_server").database()
