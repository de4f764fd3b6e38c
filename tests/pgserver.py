"""A throw-away PostgreSQL server for tests: initdb into a temp folder, listen on loopback, stop at the end.

Usage::

    with PostgresServer(host="127.0.61.1") as pg:
        url = pg.create_database("ledger")      # postgresql+psycopg2://postgres@127.0.61.1:PORT/ledger

The binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<major>/bin``) or PATH. When the
tests run as root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root) and the temp
folder is owned by that user; otherwise it runs as the current user. Missing binaries raise
:class:`PostgresUnavailable` carrying the install hint: tests must fail, not skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

INSTALL_HINT = ("PostgreSQL server binaries (initdb, pg_ctl) not found; install them with "
                "`scripts/system-deps.sh test` or `sudo apt-get install -y postgresql`")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed or did not start."""


def find_bindir() -> Path:
    """The folder holding initdb and pg_ctl: the newest /usr/lib/postgresql/*/bin, else PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    raise PostgresUnavailable(INSTALL_HINT)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One private PostgreSQL instance on ``host`` (a loopback address) and a free port."""

    def __init__(self, host: str = "127.0.61.1", *, superuser: str = "postgres") -> None:
        self.host = host
        self.superuser = superuser
        self.bindir = find_bindir()
        self.port = 0
        self.base: Path | None = None
        self.run_as: str | None = "postgres" if os.geteuid() == 0 else None
        self._started = False

    # -- helpers -----------------------------------------------------------------------------------------------

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return [*prefix, str(self.bindir / args[0]), *args[1:]]

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.base), check=False)
        if proc.returncode != 0:
            raise PostgresUnavailable(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}"
                                      f"{self._log_tail()}")
        return proc

    def _log_tail(self) -> str:
        log = self.base / "server.log" if self.base else None
        if log and log.exists():
            return "\n--- server.log ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        return ""

    @property
    def datadir(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    @property
    def sockdir(self) -> Path:
        assert self.base is not None
        return self.base / "sock"

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        # Not under pytest's tmp_path: its parents are mode 0700 and the postgres user could not enter them.
        self.base = Path(tempfile.mkdtemp(prefix="modelfleet-pg-"))
        self.sockdir.mkdir()
        if self.run_as:
            try:
                pw = pwd.getpwnam(self.run_as)
            except KeyError:
                raise PostgresUnavailable(f"running as root but there is no {self.run_as!r} user; "
                                          + INSTALL_HINT) from None
            for path in (self.base, self.sockdir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.datadir), "-U", self.superuser, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", timeout=120)
        last_error: Exception | None = None
        for _ in range(3):
            self.port = free_port(self.host)
            options = (f"-c listen_addresses={self.host} -p {self.port} -k {self.sockdir} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
            try:
                self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.base / "server.log"), "-w",
                          "-t", "60", "-o", options, "start", timeout=90)
                self._started = True
                break
            except PostgresUnavailable as exc:  # port taken in between: try another
                last_error = exc
        if not self._started:
            self.cleanup()
            raise PostgresUnavailable(f"PostgreSQL did not start: {last_error}")
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(host=self.host, port=self.port, user=self.superuser, dbname="postgres").close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self._started:
            try:
                self._run("pg_ctl", "-D", str(self.datadir), "stop", "-m", "fast", "-w", "-t", "60", timeout=90)
            finally:
                self._started = False
        self.cleanup()

    def cleanup(self) -> None:
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg2://{self.superuser}@{self.host}:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """Create ``dbname`` (a plain identifier) and return its SQLAlchemy URL."""
        import psycopg2

        if not dbname.replace("_", "").isalnum():
            raise ValueError(f"database name {dbname!r} must be a plain identifier")
        conn = psycopg2.connect(host=self.host, port=self.port, user=self.superuser, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            conn.close()
        return self.url(dbname)
