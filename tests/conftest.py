"""Shared fixtures: real SQLite files and real PostgreSQL databases.

PostgreSQL: one template database is migrated per test process (each pytest-xdist
worker builds its own, named after the worker and its pid) and cloned for its tests
(``CREATE DATABASE ... TEMPLATE``; a clone is emptied and used again, PgPool), so no two
workers ever share a database; they are all dropped together when the process's tests
are done. Without a reachable server the PostgreSQL tests are skipped locally, but
fail under ``CI=true``.

Markers, set here at collection: ``postgres`` on every test that gets a PostgreSQL
database (``-m "not postgres"`` runs without the server), ``slow`` on the tests listed
in SLOW (``-m "not slow"`` for a quick loop; under xdist they are handed out first so
that no long test starts last). The tests of test_bench.py, which share one benchmark
run, stay on one worker (pytest_xdist_make_scheduler).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.clirun import stop_fork_server
from tracker.store import migrate
from tracker.store.store import Store

PG_ADMIN_URL = os.environ.get("TRACKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ENGINES = ("sqlite", "postgresql")
#: "gw0", "gw1", ... in a pytest-xdist worker, "main" in a serial run
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
PG_FIXTURES = frozenset({"pg_template", "pg_url", "empty_pg_url"})

#: Tests (node ids, or their prefixes: a module, a test with all its parameters) that
#: take more than about 5 s in a whole run (scripts/test: 4 workers on this 2-core
#: machine), longest first; marked ``slow``. Handed out first, none of them starts last.
ACC, INT, BRO = "tests/acceptance", "tests/integration", "tests/browser"
SLOW: tuple[str, ...] = (
    f"{ACC}/test_bench_archive.py",
    f"{ACC}/test_bench.py",
    f"{ACC}/test_bench_dashboard.py",
    f"{ACC}/test_faults.py::test_several_daemons_share_the_work_without_overlap",
    f"{ACC}/test_serve.py::test_serve_tracks_and_sigterm_finishes_what_is_in_flight",
    f"{ACC}/test_faults.py::test_a_killed_daemon_restarts_under_its_name_and_takes_its_claims_back",
    f"{ACC}/test_push_end_to_end.py",
    f"{BRO}/test_screenshots.py",
    f"{BRO}/test_pages.py::test_every_page_loads_and_no_hostile_string_runs_even_without_the_csp",
    f"{BRO}/test_pages.py::test_every_page_has_the_csp_and_nothing_of_ours_breaks_it",
    f"{INT}/test_docs_python.py::test_the_examples_print_what_the_page_shows",
    f"{INT}/test_answers_property.py::test_any_answer_is_applied_or_recorded",
    f"{BRO}/test_actions.py::test_click_from_the_overview_to_a_prediction",
    f"{ACC}/test_cli_hardening.py::test_lists_do_not_read_logs_raw_bodies_or_payloads",
    f"{BRO}/test_pages.py::test_the_keyboard_reaches_the_main_links",
    f"{BRO}/test_actions.py::test_a_live_page_follows_a_prediction_to_its_end_without_reloading",
    f"{BRO}/test_pages.py::test_a_phone_width_needs_no_sideways_scrolling",
    f"{INT}/test_prune.py::test_pruning_20k_finished_predictions_leaves_the_active_ones_alone",
    f"{ACC}/test_faults.py::test_sigkill_at_random_moments_loses_and_repeats_nothing",
    f"{ACC}/test_bench_serve.py",
    f"{BRO}/test_actions.py::test_retry_a_dead_delivery",
    f"{ACC}/test_archive.py::test_the_demo_archives_its_outputs",
    f"{ACC}/test_faults.py::test_claims_expiring_during_slow_polls_waste_no_answer",
    f"{ACC}/test_tracking.py::test_a_progress_bar_lets_the_adaptive_scheduler_poll_far_less",
    f"{ACC}/test_archive.py::test_kill_9_mid_download_loses_nothing_and_stores_nothing_twice",
    f"{BRO}/test_pages.py::test_dark_mode_follows_the_system",
    f"{ACC}/test_cancel.py::test_a_deadline_cancels_once_and_fires_its_event_once",
    f"{ACC}/test_faults.py::test_expired_lease_hands_a_frozen_daemons_work_over",
    f"{ACC}/test_faults.py::test_add_never_fails_while_a_daemon_polls_hard",
    f"{ACC}/test_bench_dashboard.py",
    f"{ACC}/test_cancel.py::test_two_daemons_on_postgresql_cancel_each_deadline_once",
    f"{BRO}/test_actions.py::test_cancel_an_active_prediction_upstream",
    f"{ACC}/test_hostile_network.py::test_a_dribbling_receiver_fails_at_the_webhook_timeout",
    f"{ACC}/test_daemon_log.py::test_the_summary_covers_the_interval_since_the_previous_one",
    f"{ACC}/test_tracking.py::test_sigterm_finishes_in_flight_work_and_exits_zero",
    f"{ACC}/test_tracking.py::test_every_lifecycle_is_recorded",
    f"{ACC}/test_callbacks.py::test_secrets_never_reach_rows_logs_or_output",
    f"{ACC}/test_callbacks.py::test_hanging_receiver_does_not_hold_up_others",
    f"{ACC}/test_tracking.py::test_rate_limit_is_honoured_for_the_whole_key",
    f"{ACC}/test_faults.py::test_terminated_database_connections_are_survived",
    f"{ACC}/test_daemon_log.py::test_a_dead_webhook_is_a_few_lines_not_one_per_attempt",
    f"{ACC}/test_callbacks.py::test_gone_and_exhausted_deliveries_end_dead_and_can_be_retried",
    f"{ACC}/test_archive.py::test_a_flaky_file_host_is_retried_and_a_file_too_large_is_refused",
    f"{ACC}/test_callbacks.py::test_callback_added_after_completion_fires_completed_once",
    f"{ACC}/test_hostile_network.py::test_receivers_answering_endlessly_cost_bounded_memory",
)


#: Modules whose tests share an expensive module-scoped fixture (the benchmark run): under
#: xdist all their tests go to one worker, which runs the fixture once.
ONE_WORKER_MODULES = frozenset({"tests/acceptance/test_bench.py"})


def _uses_postgres(item: pytest.Item) -> bool:
    if PG_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(isinstance(value, str) and value == "postgresql" for value in params)


def _slow_rank(item: pytest.Item) -> int | None:
    for rank, prefix in enumerate(SLOW):
        if item.nodeid == prefix or item.nodeid.startswith((f"{prefix}[", f"{prefix}::")):
            return rank
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ranks: dict[str, int] = {}
    for item in items:
        if _uses_postgres(item):
            item.add_marker(pytest.mark.postgres)
        rank = _slow_rank(item)
        if rank is not None or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
            ranks[item.nodeid] = -1 if rank is None else rank
    if WORKER != "main":
        # Every worker collects the same order; the scheduler hands the slow tests out
        # first, so that none of them starts when the rest is nearly done.
        items.sort(key=lambda item: ranks.get(item.nodeid, len(SLOW)))


class OneWorkerModules:
    """With ``--dist load`` (what ``-n`` gives): every test goes to whichever worker is
    free, except that the tests of ONE_WORKER_MODULES stay together on one worker. (Not
    xdist_group marks with ``--dist loadgroup``: pytest-xdist 3.8 cannot rename the node
    ids of pytest 9.2, so those marks are silently ignored there.)"""

    @staticmethod
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        if config.getoption("dist") != "load":
            return None
        from xdist.scheduler import LoadScopeScheduling

        class Scheduler(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                module = nodeid.partition("::")[0]
                return module if module in ONE_WORKER_MODULES else nodeid

        return Scheduler(config, log)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):  # -p no:xdist works too
        config.pluginmanager.register(OneWorkerModules(), "tracker-one-worker-modules")


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_fork_server()


#: what each test's database is given (ALTER DATABASE ... SET): a commit does not wait for
#: its WAL to reach the disk (8.5 ms a commit on this machine, 0.6 ms without), which
#: loses nothing committed unless the server itself crashes, and no test crashes it
TEST_DB_SETTINGS = "SET synchronous_commit = off"


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def _drop_pg(dbname: str) -> None:
    _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


#: this process's databases to drop when its tests are done (pg_template's teardown): a
#: DROP DATABASE waits for a checkpoint, seconds on a busy server, and drops sent at once
#: share one; so none is dropped while the tests run
_DROP_AT_END: list[str] = []


def _drop_all(names: list[str]) -> None:
    """Drop these databases, all at once."""
    if names:
        with ThreadPoolExecutor(max_workers=min(len(names), 8)) as pool:
            list(pool.map(_drop_pg, names))


#: this process's connection to end sessions with (one per test otherwise)
_admin: psycopg.Connection[Any] | None = None


def _end_sessions(dbname: str) -> None:
    """End every session on ``dbname`` (as DROP ... WITH (FORCE) would)."""
    global _admin
    sql = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()"
    )
    if _admin is not None:
        try:
            _admin.execute(sql, (dbname,))
            return
        except psycopg.Error:
            _admin.close()  # a new one below
    _admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    _admin.execute(sql, (dbname,))


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """Name of a migrated template database."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    # One template per process: an xdist worker never clones another worker's template
    # (CREATE DATABASE ... TEMPLATE fails while anyone else is connected to it).
    name = f"tracker_tpl_{WORKER}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    store = Store.from_url(_pg_url(name))
    migrate.upgrade(store)
    store.close()
    yield name
    if _admin is not None:
        _admin.close()
    _drop_all([*_DROP_AT_END, name])
    _DROP_AT_END.clear()


def _check_marked(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("postgres") is None:
        pytest.fail(f"{request.node.nodeid} uses PostgreSQL but is not marked postgres")


#: a table bigger than this (heap and TOAST) is emptied with TRUNCATE, a smaller one with
#: DELETE and VACUUM: TRUNCATE makes new files for the table, its indexes and TOAST and
#: scans shared buffers, 0.1-0.5 s for all 15 tables on this machine (most tests write
#: a few rows); DELETE and VACUUM cost more per row, so only for tables this small
TRUNCATE_OVER_BYTES = 256 * 1024


class PgPool:
    """Migrated databases of one worker, emptied between tests instead of created
    and dropped for each (CREATE DATABASE ... TEMPLATE costs about 0.3 s; emptying
    every table, a few ms). A database whose schema or revision a test changed
    is replaced by a fresh clone of the template (and dropped at the end)."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.free: list[str] = []
        self.made: set[str] = set()
        with psycopg.connect(_pg_url(template), connect_timeout=5) as conn:
            self.tables = _user_tables(conn)
            self.revision = _revision(conn)
            self.delete_order = _referencing_first(conn, self.tables)
            self.superuser = conn.execute("SHOW is_superuser").fetchone() == ("on",)

    def take(self) -> str:
        while self.free:
            name = self.free.pop()
            if self._emptied(name):
                return name
            self._drop(name)
        name = f"tracker_t_{WORKER}_{uuid.uuid4().hex[:12]}"
        _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        _pg_admin(f'ALTER DATABASE "{name}" {TEST_DB_SETTINGS}')
        self.made.add(name)
        return name

    def give_back(self, name: str) -> None:
        """End every session a test left on it (as DROP ... WITH (FORCE) did)."""
        try:
            _end_sessions(name)
        except psycopg.Error:
            self._drop(name)
            return
        self.free.append(name)

    def close(self) -> None:
        for name in list(self.made):
            self._drop(name)

    def _emptied(self, name: str) -> bool:
        """Empty every table (sequences restarted), if the schema is still the template's;
        forget the settings a test gave the database (ALTER DATABASE ... SET) but ours."""
        try:
            with psycopg.connect(_pg_url(name), connect_timeout=5) as conn:
                conn.execute("SET lock_timeout = '2s'")
                if _user_tables(conn) != self.tables or _revision(conn) != self.revision:
                    return False
                conn.execute(f'ALTER DATABASE "{name}" RESET ALL')
                conn.execute(f'ALTER DATABASE "{name}" {TEST_DB_SETTINGS}')
                deleted = self._empty_tables(conn)
                conn.commit()
                if deleted:
                    # Their files back to no pages, as a new table's: rows are stored, and
                    # ties (claim_due's equal next_poll_at) read, in the order they are
                    # inserted, not in whatever room the deleted rows left.
                    conn.autocommit = True
                    conn.execute(f"VACUUM {_listed(deleted)}")
        except psycopg.Error:
            return False
        return True

    def _empty_tables(self, conn: psycopg.Connection[Any]) -> list[str]:
        """As ``TRUNCATE`` every table ``RESTART IDENTITY CASCADE``: the big ones truncated,
        the others deleted from (referencing tables first) with no trigger fired when
        allowed (the rollup's on predictions would write again), what is still not empty
        truncated, the sequences used restarted. The tables deleted from that have pages
        (to vacuum once committed)."""
        sizes = dict(
            conn.execute(
                "SELECT relname, pg_relation_size(oid)"
                " + coalesce(pg_relation_size(NULLIF(reltoastrelid, 0)), 0) FROM pg_class"
                " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
            ).fetchall()
        )
        big = [t for t in self.delete_order if sizes.get(t, 0) > TRUNCATE_OVER_BYTES]
        if big:
            conn.execute(f"TRUNCATE {_listed(big)} RESTART IDENTITY CASCADE")
        deletes = [f'DELETE FROM "{t}"' for t in self.delete_order if t not in big]
        if self.superuser:
            deletes = ["SET LOCAL session_replication_role = replica", *deletes]
            deletes.append("SET LOCAL session_replication_role = DEFAULT")
        conn.execute("; ".join(deletes))  # one round trip
        exists = ", ".join(f'EXISTS (SELECT FROM "{t}")' for t in self.delete_order)
        filled = conn.execute(f"SELECT {exists}").fetchone() or ()
        left = [t for t, any_row in zip(self.delete_order, filled, strict=True) if any_row]
        if left:
            conn.execute(f"TRUNCATE {_listed(left)} RESTART IDENTITY CASCADE")
        used = conn.execute(
            "SELECT format('%I.%I', schemaname, sequencename), start_value FROM pg_sequences"
            " WHERE schemaname = 'public' AND last_value IS NOT NULL"
        ).fetchall()
        for sequence, start in used:
            conn.execute("SELECT setval(%s, %s, false)", (sequence, start))
        return [t for t in self.delete_order if sizes.get(t, 0) and t not in big + left]

    def _drop(self, name: str) -> None:
        _DROP_AT_END.append(name)
        self.made.discard(name)


def _user_tables(conn: psycopg.Connection[Any]) -> frozenset[str]:
    """The tables and views (``view:`` + name) of the public schema but alembic's."""
    rows = conn.execute(
        "SELECT table_name, table_type FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_name <> 'alembic_version'"
    ).fetchall()
    return frozenset(name if kind == "BASE TABLE" else f"view:{name}" for name, kind in rows)


def _listed(tables: list[str]) -> str:
    return ", ".join(f'"{t}"' for t in tables)


def _referencing_first(conn: psycopg.Connection[Any], tables: frozenset[str]) -> list[str]:
    """The tables (not views) in an order that deletes from each before any table its
    foreign keys point to."""
    references: dict[str, set[str]] = {t: set() for t in tables if ":" not in t}
    for table, referenced in conn.execute(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint"
        " WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
    ).fetchall():
        if table in references and referenced in references and referenced != table:
            references[referenced].add(table)
    order: list[str] = []
    while references:
        # a table no remaining table references (a cycle, which has none: the rest)
        ready = sorted(t for t, by in references.items() if not by) or sorted(references)
        for table in ready:
            del references[table]
            order.append(table)
        for by in references.values():
            by.difference_update(ready)
    return order


def _revision(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


@pytest.fixture(scope="session")
def pg_pool(pg_template: str) -> Iterator[PgPool]:
    pool = PgPool(pg_template)
    yield pool
    pool.close()


@pytest.fixture
def pg_url(pg_pool: PgPool, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated PostgreSQL database with empty tables, for one test."""
    _check_marked(request)
    name = pg_pool.take()
    yield _pg_url(name)
    pg_pool.give_back(name)


@pytest.fixture
def empty_pg_url(pg_template: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL database with no tables at all."""
    _check_marked(request)
    name = f"tracker_e_{WORKER}_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    _pg_admin(f'ALTER DATABASE "{name}" {TEST_DB_SETTINGS}')
    _DROP_AT_END.append(name)
    yield _pg_url(name)
    _end_sessions(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    store = Store.from_url(f"sqlite:///{path}")
    migrate.upgrade(store)
    store.close()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "tracker.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database on each engine in turn."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.from_url(db_url)
    yield s
    s.close()
