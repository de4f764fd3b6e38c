"""The deployment ledger: append-only, hash-chained events (SQLAlchemy; SQLite by default, PostgreSQL for teams).

Chain format (``modelfleet-ledger/1``)
--------------------------------------
Every event has a ``seq`` (1, 2, 3, ... with no gaps), a UTC timestamp ``ts`` stored as the fixed-width text
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (so it round-trips byte for byte on every database), the deployment fields
(actor, action, model, version, digest, target, node, run_id, outcome), ``details`` (a JSON object) and
``prev_hash`` (the ``hash`` of event ``seq - 1``; 64 zeros for the first event). ::

    hash = sha256(canonical_json({seq, ts, actor, action, model, version, digest, target,
                                  node, run_id, outcome, details, prev_hash})).hexdigest()

where ``canonical_json`` is ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
encoded as UTF-8. Editing any field of any event, deleting or reordering events breaks the chain at that
event; :meth:`Ledger.verify` recomputes it and names the first bad ``seq``. A one-row head table
(``ledger_head``) repeats the last ``seq`` and ``hash`` so that cutting events off the end is noticed too.

Concurrency: appends are serialized so that two writers (the Ansible callback and the CLI, say) can never fork
the chain: SQLite appends run in ``BEGIN IMMEDIATE`` transactions, PostgreSQL appends take a transaction-level
advisory lock; ``seq`` is the primary key, so a fork could not even be stored.

Runs: a run is the events sharing a ``run_id``. A run whose ``run_start`` has no ``run_end`` (killed mid-way,
or still going) is reported as ``incomplete`` by :meth:`Ledger.runs` and :meth:`Ledger.verify`; the ledger
itself is never rewritten (:meth:`Ledger.mark_incomplete` appends a closing ``run_end`` instead).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from modelfleet.core.errors import ConfigError, LedgerError

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Connection, Engine

FORMAT = "modelfleet-ledger/1"
GENESIS_HASH = "0" * 64
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
EXPORT_FORMATS = ("jsonl", "json", "csv")
OUTCOMES = ("ok", "changed", "failed", "unreachable", "skipped", "rolled_back", "incomplete", "started",
            "approved", "rejected")
# Keys that carry scoring payloads; details must never hold raw request data.
FORBIDDEN_DETAIL_KEYS = frozenset({"dataframe_split", "dataframe_records", "instances", "inputs",
                                   "raw_request", "request_body"})
# Constant key of the PostgreSQL advisory lock that serializes appends ("mfledger" as an int64).
PG_LOCK_KEY = 0x6D666C6564676572 & 0x7FFFFFFFFFFFFFFF

FIELDS = ("seq", "ts", "actor", "action", "model", "version", "digest", "target", "node", "run_id",
          "outcome", "details", "prev_hash", "hash")
_TEXT_FIELDS = ("actor", "action", "model", "version", "digest", "target", "node", "run_id", "outcome")
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def format_ts(ts: datetime) -> str:
    """The stored (and hashed) form of a timestamp: UTC, microseconds, ``Z``."""
    if ts.tzinfo is None:
        raise LedgerError(f"timestamp {ts.isoformat()} has no timezone", hint="pass an aware UTC datetime")
    return ts.astimezone(UTC).strftime(TS_FORMAT)


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, TS_FORMAT).replace(tzinfo=UTC)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_hash(fields: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of every event field except ``hash`` (``prev_hash`` included)."""
    body = {k: fields[k] for k in FIELDS if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Event:
    """One ledger event. ``ts`` is an aware UTC datetime; ``details`` a JSON object."""

    seq: int
    ts: datetime
    actor: str
    action: str
    model: str | None
    version: str | None
    digest: str | None
    target: str | None
    node: str | None
    run_id: str | None
    outcome: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in field order; ``ts`` in its stored text form (so the hash can be recomputed)."""
        return {
            "seq": self.seq, "ts": format_ts(self.ts), "actor": self.actor, "action": self.action,
            "model": self.model, "version": self.version, "digest": self.digest, "target": self.target,
            "node": self.node, "run_id": self.run_id, "outcome": self.outcome, "details": self.details,
            "prev_hash": self.prev_hash, "hash": self.hash,
        }


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`Ledger.verify`. ``first_bad_seq`` names the first event that does not verify;
    ``incomplete_runs`` are runs with a ``run_start`` and no ``run_end``."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None
    head_hash: str | None = None
    incomplete_runs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "count": self.count, "first_bad_seq": self.first_bad_seq, "reason": self.reason,
                "head_hash": self.head_hash, "incomplete_runs": list(self.incomplete_runs)}


@dataclass(frozen=True)
class RunSummary:
    """A run (events sharing a run_id). ``outcome`` is the run_end's outcome, or ``incomplete``."""

    run_id: str
    started: datetime | None
    ended: datetime | None
    outcome: str
    actor: str | None
    action: str | None  # the kind of run, from run_start details["kind"] when given
    model: str | None
    version: str | None
    target: str | None
    events: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "started": self.started and format_ts(self.started),
            "ended": self.ended and format_ts(self.ended), "outcome": self.outcome, "actor": self.actor,
            "kind": self.action, "model": self.model, "version": self.version, "target": self.target,
            "events": self.events,
        }


def verify_chain(rows: Iterable[Mapping[str, Any]]) -> VerifyResult:
    """Recompute a chain from event dicts in seq order (rows from the database or an export)."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    for row in rows:
        seq = row.get("seq")
        if not isinstance(seq, int) or seq != expected_seq:
            bad = expected_seq if isinstance(seq, int) and seq > expected_seq else seq
            reason = (f"event {expected_seq} is missing (seq jumps from {expected_seq - 1} to {seq})"
                      if isinstance(seq, int) and seq > expected_seq
                      else f"seq {seq!r} out of order (expected {expected_seq})")
            return VerifyResult(False, count, bad if isinstance(bad, int) else expected_seq, reason)
        if row.get("prev_hash") != expected_prev:
            return VerifyResult(False, count, seq, f"event {seq}: prev_hash does not match the hash of event "
                                f"{seq - 1} (an earlier event was removed or replaced)")
        try:
            recomputed = compute_hash(row)
        except (KeyError, TypeError, ValueError) as exc:
            return VerifyResult(False, count, seq, f"event {seq}: unreadable ({exc})")
        if recomputed != row.get("hash"):
            return VerifyResult(False, count, seq, f"event {seq}: content does not match its hash "
                                "(a field was edited after it was written)")
        expected_prev = recomputed
        expected_seq += 1
        count += 1
    return VerifyResult(True, count, head_hash=None if count == 0 else expected_prev)


def _clean_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise LedgerError(f"event details must be a JSON object, not {type(details).__name__}")

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, Mapping):
            for key, value in obj.items():
                if str(key) in FORBIDDEN_DETAIL_KEYS:
                    raise LedgerError(
                        f"event details{path}.{key} looks like raw request data",
                        hint="record a summary (row count, digest, latency) instead of the payload",
                    )
                walk(value, f"{path}.{key}")
        elif isinstance(obj, list):
            for i, value in enumerate(obj):
                walk(value, f"{path}[{i}]")

    walk(details, "")
    # Round-trip so that what is hashed is exactly what a reader will parse back.
    try:
        result: dict[str, Any] = json.loads(canonical_json(json.loads(json.dumps(details, default=str))))
    except ValueError as exc:
        raise LedgerError(f"event details are not JSON-serializable: {exc}") from None
    return result


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


class Ledger:
    """The deployment ledger at ``url`` (``settings.ledger.url``). Schema is created on first use.

    ``clock`` returns the current aware UTC datetime (inject one in tests).
    """

    def __init__(self, url: str, *, clock: Callable[[], datetime] | None = None) -> None:
        self.url = url
        self._clock = clock or (lambda: datetime.now(UTC))
        self._engine = self._make_engine(url)
        self._tables = _tables()
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Any) -> Ledger:
        return cls(settings.ledger.url)

    # -- engine and schema -------------------------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        return str(self._engine.dialect.name)

    @staticmethod
    def _make_engine(url: str) -> Engine:
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        hint = "set ledger.url (or MODELFLEET_LEDGER_URL) to sqlite:///path/ledger.db or " \
               "postgresql+psycopg2://user@host/dbname"
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"ledger.url {url!r} is not a database URL", hint=hint) from None
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ConfigError(f"ledger.url uses {backend!r}; the ledger supports sqlite and postgresql",
                              hint=hint)
        try:
            if backend == "sqlite":
                database = parsed.database or ""
                if database and database != ":memory:" and not database.startswith("file:"):
                    try:
                        Path(database).parent.mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise LedgerError(f"cannot create the folder for ledger {database}: {exc.strerror}",
                                          hint=hint) from None
                engine = create_engine(parsed, connect_args={"timeout": 60})

                @event.listens_for(engine, "connect")
                def _connect(dbapi_conn: Any, _record: Any) -> None:
                    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves

                @event.listens_for(engine, "begin")
                def _begin(conn: Connection) -> None:
                    immediate = conn.get_execution_options().get("ledger_write", False)
                    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
            else:
                engine = create_engine(parsed, pool_pre_ping=True)
        except NoSuchModuleError:
            raise ConfigError(f"ledger.url {_safe_url(url)}: unknown database driver", hint=hint) from None
        except ModuleNotFoundError as exc:
            raise ConfigError(f"ledger.url {_safe_url(url)}: driver {exc.name} is not installed",
                              hint=f"pip install psycopg2-binary, or {hint}") from None
        return engine

    def _fail(self, exc: Exception, doing: str) -> LedgerError:
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        detail = lines[0] if lines else type(exc).__name__
        return LedgerError(f"ledger {_safe_url(self.url)}: cannot {doing}: {detail}",
                           hint="check ledger.url, that the database is running and that you may write to it")

    def _write(self) -> Any:
        """A write transaction that holds the ledger's append lock until commit."""
        conn = self._engine.connect().execution_options(ledger_write=True)
        return _WriteTx(conn, self.dialect)

    def ensure_schema(self) -> None:
        """Create the tables and the head row if missing (idempotent, safe under concurrent first use)."""
        if self._ready:
            return
        from sqlalchemy import insert, select
        from sqlalchemy.exc import SQLAlchemyError

        _, head, metadata = self._tables
        try:
            with self._write() as conn:
                metadata.create_all(conn, checkfirst=True)
                if conn.execute(select(head.c.id)).first() is None:
                    conn.execute(insert(head).values(id=1, format=FORMAT, seq=0, hash=GENESIS_HASH))
        except SQLAlchemyError as exc:
            raise self._fail(exc, "create the ledger schema") from None
        self._ready = True

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------------------

    def append(
        self,
        action: str,
        *,
        actor: str,
        model: str | None = None,
        version: str | int | None = None,
        digest: str | None = None,
        target: str | None = None,
        node: str | None = None,
        run_id: str | None = None,
        outcome: str | None = None,
        details: Mapping[str, Any] | None = None,
        ts: datetime | None = None,
    ) -> Event:
        """Append one event at the head of the chain and return it (with its seq and hash)."""
        from sqlalchemy import insert, select, update
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(action, str) or not _ACTION_RE.match(action):
            raise LedgerError(f"ledger action {action!r} is not valid",
                              hint="use a lower-case word such as node_deploy or run_start")
        if not actor or not isinstance(actor, str):
            raise LedgerError("a ledger event needs an actor", hint="pass who or what made the change")
        values: dict[str, Any] = {
            "actor": actor, "action": action, "model": model,
            "version": None if version is None else str(version), "digest": digest, "target": target,
            "node": node, "run_id": run_id, "outcome": outcome,
        }
        for key in _TEXT_FIELDS:
            if values[key] is not None and not isinstance(values[key], str):
                raise LedgerError(f"ledger field {key} must be text, not {type(values[key]).__name__}")
        clean = _clean_details(details)
        self.ensure_schema()
        events, head, _ = self._tables
        try:
            with self._write() as conn:
                # Chain from the head row, not from the last stored event: if events were cut off the
                # end, the gap stays visible to verify() instead of being papered over.
                row = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
                prev_seq, prev_hash = int(row.seq), str(row.hash)
                record = {"seq": prev_seq + 1, "ts": format_ts(ts or self._clock()), **values,
                          "details": clean, "prev_hash": prev_hash}
                record["hash"] = compute_hash(record)
                conn.execute(insert(events).values(**{**record, "details": canonical_json(clean)}))
                conn.execute(update(head).where(head.c.id == 1).values(seq=record["seq"], hash=record["hash"]))
        except SQLAlchemyError as exc:
            raise self._fail(exc, f"append a {action} event") from None
        return _event_from_record(record)

    def mark_incomplete(self, run_id: str, *, actor: str, reason: str = "run ended without run_end") -> Event:
        """Close a run that will never finish (its process was killed) with a ``run_end``/``incomplete``."""
        start = self.events(run_id=run_id, action="run_start", limit=1)
        if not start:
            raise LedgerError(f"run {run_id} has no run_start in the ledger", hint="list runs: modelfleet ledger runs")
        s = start[0]
        return self.append("run_end", actor=actor, model=s.model, version=s.version, digest=s.digest,
                           target=s.target, run_id=run_id, outcome="incomplete", details={"reason": reason})

    # -- reading -----------------------------------------------------------------------------------------------

    def events(
        self,
        *,
        model: str | None = None,
        node: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        run_id: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Matching events in seq order; with ``limit``, the newest ``limit`` of them."""
        from sqlalchemy import select

        events, _, _ = self._tables
        query = select(events)
        for column, value in (("model", model), ("node", node), ("action", action), ("actor", actor),
                              ("run_id", run_id), ("outcome", outcome)):
            if value is not None:
                query = query.where(events.c[column] == value)
        if since is not None:
            query = query.where(events.c.ts >= format_ts(since))
        query = query.order_by(events.c.seq.desc())
        if limit is not None:
            if limit <= 0:
                raise LedgerError(f"limit {limit} must be positive")
            query = query.limit(limit)
        rows: list[dict[str, Any]] = self._read(partial(_fetch, query=query), "read events")
        return [_event_from_record(_decode(r)) for r in reversed(rows)]

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Every stored event as a dict (details parsed, ts as stored text) in seq order, in pages."""
        from sqlalchemy import select

        events, _, _ = self._tables
        after = 0
        while True:
            query = select(events).where(events.c.seq > after).order_by(events.c.seq).limit(1000)
            page: list[dict[str, Any]] = self._read(partial(_fetch, query=query), "read events")
            if not page:
                return
            for row in page:
                yield _decode(row, strict=False)
            after = page[-1]["seq"]

    def head(self) -> tuple[int, str]:
        """(seq, hash) recorded in the head row."""
        from sqlalchemy import select

        _, head, _ = self._tables
        row = self._read(lambda conn: conn.execute(select(head.c.seq, head.c.hash)).one(), "read the head")
        return int(row.seq), str(row.hash)

    def verify(self) -> VerifyResult:
        """Recompute the whole chain; ``first_bad_seq`` and ``reason`` name the first event that fails."""
        result = verify_chain(self.iter_rows())
        if not result.ok:
            return result
        head_seq, head_hash = self.head()
        if head_seq != result.count or (result.count and head_hash != result.head_hash):
            if head_seq > result.count:
                reason = (f"the ledger ends at event {result.count} but its head says {head_seq} "
                          "(events were removed from the end)")
            else:
                reason = f"the head row (seq {head_seq}) does not match the last event {result.count}"
            return VerifyResult(False, result.count, result.count + 1, reason)
        return VerifyResult(True, result.count, head_hash=result.head_hash,
                            incomplete_runs=[r.run_id for r in self.runs() if r.ended is None])

    def runs(self, *, model: str | None = None, limit: int | None = None) -> list[RunSummary]:
        """Runs (by run_id) in start order, newest ``limit``; a run without ``run_end`` is ``incomplete``."""
        runs: dict[str, dict[str, Any]] = {}
        for ev in self.events(model=model) if model else (_event_from_record(r) for r in self.iter_rows()):
            if not ev.run_id:
                continue
            run = runs.setdefault(ev.run_id, {"run_id": ev.run_id, "started": None, "ended": None,
                                              "outcome": None, "actor": ev.actor, "action": None,
                                              "model": ev.model, "version": ev.version, "target": ev.target,
                                              "events": 0})
            run["events"] += 1
            if ev.action == "run_start":
                run.update(started=ev.ts, actor=ev.actor, action=ev.details.get("kind"), model=ev.model,
                           version=ev.version, target=ev.target)
            elif ev.action == "run_end":
                run.update(ended=ev.ts, outcome=ev.outcome or "ok")
        out = [RunSummary(**{**r, "outcome": r["outcome"] or "incomplete"}) for r in runs.values()]
        return out[-limit:] if limit else out

    def export(self, fmt: str, stream: TextIO) -> int:
        """Write every event to ``stream`` as ``jsonl``, ``json`` (a list) or ``csv``; return the count."""
        if fmt not in EXPORT_FORMATS:
            raise LedgerError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(EXPORT_FORMATS)}")
        count = 0
        if fmt == "csv":
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(FIELDS)
        elif fmt == "json":
            stream.write("[")
        for row in self.iter_rows():
            if fmt == "jsonl":
                stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            elif fmt == "json":
                stream.write(("," if count else "") + "\n  " + json.dumps(row, ensure_ascii=False))
            else:
                writer.writerow(["" if row[k] is None else canonical_json(row[k]) if k == "details" else row[k]
                                 for k in FIELDS])
            count += 1
        if fmt == "json":
            stream.write("\n]\n" if count else "]\n")
        return count

    def export_text(self, fmt: str) -> str:
        buf = io.StringIO()
        self.export(fmt, buf)
        return buf.getvalue()

    def _read(self, fn: Callable[[Connection], Any], doing: str) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        self.ensure_schema()
        try:
            with self._engine.connect() as conn:
                return fn(conn)
        except SQLAlchemyError as exc:
            raise self._fail(exc, doing) from None


class _WriteTx:
    """Context manager: a transaction holding the append lock (BEGIN IMMEDIATE / advisory lock)."""

    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def __enter__(self) -> Connection:
        from sqlalchemy import text

        self.tx = self.conn.begin()
        if self.dialect == "postgresql":
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self.tx.commit()
            else:
                self.tx.rollback()
        finally:
            self.conn.close()


def _fetch(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(query)]


def _decode(row: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    """A stored row as an event dict: details parsed (kept as text when unparseable and not strict)."""
    out = {k: row.get(k) for k in FIELDS}
    try:
        out["details"] = json.loads(row["details"]) if row.get("details") is not None else {}
    except ValueError:
        if strict:
            raise LedgerError(f"event {row.get('seq')}: details are not JSON",
                              hint="run modelfleet ledger verify") from None
        out["details"] = row["details"]
    return out


def _event_from_record(record: Mapping[str, Any]) -> Event:
    details = record["details"] if isinstance(record["details"], dict) else {"_unparseable": record["details"]}
    return Event(
        seq=int(record["seq"]), ts=parse_ts(record["ts"]), actor=record["actor"], action=record["action"],
        model=record["model"], version=record["version"], digest=record["digest"], target=record["target"],
        node=record["node"], run_id=record["run_id"], outcome=record["outcome"], details=details,
        prev_hash=record["prev_hash"], hash=record["hash"],
    )


def _tables() -> tuple[Any, Any, Any]:
    from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

    metadata = MetaData()
    events = Table(
        "ledger_events", metadata,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
        Column("ts", String(32), nullable=False),
        Column("actor", Text, nullable=False),
        Column("action", String(64), nullable=False),
        Column("model", Text), Column("version", Text), Column("digest", Text), Column("target", Text),
        Column("node", Text), Column("run_id", Text), Column("outcome", String(32)),
        Column("details", Text, nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False, unique=True),
        Index("ix_ledger_events_model", "model"), Index("ix_ledger_events_node", "node"),
        Index("ix_ledger_events_run_id", "run_id"), Index("ix_ledger_events_action", "action"),
    )
    head = Table(
        "ledger_head", metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("format", String(32), nullable=False),
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
        Column("hash", String(64), nullable=False),
    )
    return events, head, metadata
