"""The ledger on a REAL PostgreSQL server started by the test (initdb + pg_ctl on 127.0.61.1, stopped at the end).

PostgreSQL missing is a failure with the install hint, never a skip.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from tests.pgserver import PostgresServer, PostgresUnavailable
from tests.unit import test_ledger as cases

pytestmark = pytest.mark.integration

_names = itertools.count(1)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer(host="127.0.61.1").start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg: PostgresServer) -> str:
    return pg.create_database(f"ledger_{next(_names)}")


@pytest.mark.parametrize("check", [
    cases.check_append_and_chain,
    cases.check_filters,
    cases.check_tamper_field,
    cases.check_tamper_details,
    cases.check_delete_row,
    cases.check_delete_last_row,
    cases.check_incomplete_runs,
    cases.check_concurrent_first_use,
    cases.check_concurrent_appends,
], ids=lambda f: f.__name__.removeprefix("check_"))
def test_ledger_on_postgres(pg_url: str, check: Callable[[str], None]) -> None:
    check(pg_url)


def test_postgres_uses_its_own_dialect_and_bad_credentials_fail_clearly(pg: PostgresServer) -> None:
    from modelfleet.core.errors import LedgerError
    from modelfleet.core.ledger import Ledger

    with Ledger(pg.create_database("ledger_dialect")) as ledger:
        assert ledger.dialect == "postgresql"
        ledger.append("approval", actor="qa")
        assert ledger.verify().ok
    missing = Ledger(pg.url("no_such_database"))
    with pytest.raises(LedgerError, match="no_such_database"):
        missing.verify()
