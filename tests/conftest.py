"""Shared test set-up: firmware/ and the CPython shims on sys.path so firmware modules import under pytest."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "tests" / "shims", ROOT / "firmware", ROOT / "tests" / "mpy_support", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


import os  # noqa: E402

import pytest  # noqa: E402


def pytest_collection_finish(session):
    """Everything imported to collect the tests (every test module and what it loads: esptool, the
    head-end, the agency, cryptography, ...) is moved out of the cyclic collector's reach. The firmware
    calls `gc.collect()` where MicroPython needs its heap tidied (after a module is dropped, before a
    big allocation); under CPython in a worker holding the whole suite each call walked millions of
    objects (about 0.1 s), so a CPython test of the service port spent most of its time there."""
    import gc
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config, items):
    """Tests marked `long` go first (otherwise in collection order): xdist hands tests out in this order,
    and a 60 s test handed out last keeps one worker busy while the other has nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture(scope="session", autouse=True)
def _data_folder_outside_the_checkout(tmp_path_factory):
    """What tools keep by default (TID store, lab register and signing key, certificates, head-end DB)
    goes to $METERKIT_DATA: a temporary folder here, so no test writes into the checkout."""
    if "METERKIT_DATA" not in os.environ:
        os.environ["METERKIT_DATA"] = str(tmp_path_factory.mktemp("meterkit-data"))
    yield


@pytest.fixture(scope="session", autouse=True)
def _cheap_operator_password_hashing():
    """Operator passwords hashed in this process with argon2id at its lowest cost (time 1, 8 KiB): the
    tests prove the sign-in flow, not the hash's cost, and the production parameters take 0.2 s of CPU
    per hash or check (three operators in every agency Stack). Hashes keep their `$argon2id$` form and
    `verify` reads the parameters from the hash, so a database written by a `meterkit` subprocess (the
    production parameters) still checks here."""
    from argon2 import PasswordHasher

    from host_tools.agency import security
    saved = security._hasher
    security._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    yield
    security._hasher = saved


# The vending key of the tests: the published DKGA04 vector's (docs/tokens.md), imported once into a
# SoftHSM2 token made for this test session in a temporary SOFTHSM2_CONF folder, removed afterwards.
TEST_VENDING_KEY_HEX = "abababababababab949494949494949401234567"
HSM_ENV = ("SOFTHSM2_CONF", "METERKIT_HSM_TOKEN", "METERKIT_HSM_KEY", "METERKIT_HSM_PIN", "METERKIT_HSM_SLOT",
           "METERKIT_PKCS11_MODULE", "METERKIT_HSM_SO_PIN")


@pytest.fixture(scope="session", autouse=True)
def softhsm_token(tmp_path_factory):
    """A SoftHSM token holding the test vending key; the environment (inherited by every `meterkit` the
    tests start) points the tools at it. Yields that environment."""
    import shutil

    from host_tools.keys import softhsm
    saved = {k: os.environ.get(k) for k in HSM_ENV}
    d = tmp_path_factory.mktemp("softhsm")
    for k in HSM_ENV:
        os.environ.pop(k, None)
    env = softhsm.make_token(str(d), TEST_VENDING_KEY_HEX, label="meterkit-test")
    os.environ.update(env)
    yield dict(env)
    from host_tools.keys import vendingkey
    vendingkey.close_all()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """One private PostgreSQL server for the session (initdb + pg_ctl in a temporary folder, a free
    loopback port), stopped at the end; tests take fresh databases from it."""
    from host_tools.headend.pgserver import PostgresServer, pg_bin
    if not pg_bin():
        pytest.fail("PostgreSQL is not installed: apt-get install -y postgresql")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path):
    """Where a head-end store lives: a SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "he.db")
    return request.getfixturevalue("postgres_server").database()
