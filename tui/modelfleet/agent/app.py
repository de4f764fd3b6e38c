"""The agent's ASGI application: scoring, health, metrics, stats, zero-downtime reload.

Routes (see docs/agent.md): ``GET /health`` (``/ping``), ``GET /version``, ``POST /invocations``,
``GET /metrics``, ``GET /stats``, ``POST /admin/reload`` (``?force=1``), ``POST /admin/drain``,
``POST /admin/resume``.

Scoring path: the request is parsed and checked against the model signature on the event loop (large bodies in
a thread), then queued; one predict thread takes everything queued at that moment (up to ``max_batch_rows``),
predicts it in one call per compatible group and hands each request its rows back. Under load this coalesces
concurrent requests into one DataFrame and one ``predict`` call; idle, a request is predicted alone at once.
Every request holds the model version it was parsed for, so a reload never changes the model under a request.

Reload: the new release is loaded and warmed in a separate thread, its probe is checked, and only then does the
``active`` reference change (one assignment, atomic). A release that fails to load or to answer its probe is
refused and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfleet.agent.config import AgentConfig, read_token
from modelfleet.agent.metrics import AgentMetrics, ServedCollector
from modelfleet.agent.release import Release, load_release, warm_and_probe
from modelfleet.agent.scoring import BadRequest, Parsed, batch_columns, build_frame, to_jsonable
from modelfleet.agent.served import Served
from modelfleet.core.drift import DriftCounter
from modelfleet.core.errors import BundleError, CheckFailed, ConfigError

log = logging.getLogger("modelfleet.agent")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
BIG_BODY = 256 * 1024


class _Timeout(Exception):
    pass


class _Disconnected(Exception):
    pass


@dataclass
class _Item:
    served: Served
    parsed: Parsed
    future: asyncio.Future[list[Any]]


def _query_seconds(scope: Scope, key: bytes) -> float | None:
    """``key=<number>`` from the query string; None when absent, NaN when not a number."""
    for part in (scope.get("query_string") or b"").split(b"&"):
        name, _, value = part.partition(b"=")
        if name == key:
            try:
                return float(value)
            except ValueError:
                return float("nan")
    return None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None


class Agent:
    """The ASGI application (``await agent(scope, receive, send)``) and its state."""

    def __init__(self, config: AgentConfig, release_path: Path | None = None) -> None:
        self.cfg = config
        self.release_path = release_path or config.current
        self.metrics = AgentMetrics()
        self.active: Served | None = None
        self.metrics.registry.register(ServedCollector(lambda: self.active))
        self.not_ready_reason = "starting: the model is loading"
        self.draining = False
        self.started = time.time()
        self.last_reload: dict[str, Any] | None = None
        self.token, self.admin_token = self._read_tokens()
        self._predict_pool = ThreadPoolExecutor(1, thread_name_prefix="predict")
        self._load_pool = ThreadPoolExecutor(1, thread_name_prefix="load")
        self._parse_pool = ThreadPoolExecutor(1, thread_name_prefix="parse")
        self._queue: asyncio.Queue[_Item] | None = None
        self._reload_lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._timed_out: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready_event: asyncio.Event | None = None
        # called once the startup load has ended, loaded or refused (serve() turns the collector back on there)
        self.after_first_load: Callable[[], None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _read_tokens(self) -> tuple[bytes | None, bytes | None]:
        tok = read_token(self.cfg.token_file, "[auth] token_file")
        adm = read_token(self.cfg.admin_token_file, "[auth] admin_token_file")
        return (tok.encode() if tok else None, adm.encode() if adm else None)

    async def startup(self, *, load: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._reload_lock = asyncio.Lock()
        self.ready_event = asyncio.Event()
        self._spawn(self._batcher())
        self._spawn(self._sweeper())
        # not possible outside the main thread (tests driving the app in-process)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            self._loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload(source="SIGHUP")))
        if load:
            self._spawn(self._first_load())

    async def _first_load(self) -> None:
        try:
            await self.reload(source="startup")
        finally:
            if self.after_first_load is not None:
                self.after_first_load()

    async def shutdown(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._loop is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.remove_signal_handler(signal.SIGHUP)
        for pool in (self._predict_pool, self._load_pool, self._parse_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- reload ---------------------------------------------------------------------------------------------
    def _load_checked(self, path: Path) -> tuple[Release, str]:
        release = load_release(path, default_name=self.cfg.model_name, default_version=self.cfg.model_version,
                               group_column=self.cfg.group_column)
        verdict = warm_and_probe(release)
        return release, verdict

    async def reload(self, *, source: str = "admin", force: bool = False) -> tuple[int, dict[str, Any]]:
        """Load the release ``current`` points to beside the old one, probe it, swap. (status, report)."""
        assert self._reload_lock is not None
        async with self._reload_lock:
            started = time.time()
            # the release it is asked to load, by folder name (<version>-<digest12>): the deploy's health gate
            # matches a refusal to the release it waits for by this name
            asked = None
            if self.release_path is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    asked = self.release_path.resolve().name
            report: dict[str, Any] = {"source": source, "time": started, "release": asked}
            old = self.active
            try:
                self.token, self.admin_token = self._read_tokens()
            except ConfigError as exc:
                log.warning("reload (%s): token files not re-read: %s", source, exc)
                report["token_warning"] = str(exc)
            if self.release_path is None:
                return self._refuse(report, "no release configured ([model] current or --release)")
            try:
                target = self.release_path.resolve(strict=True)
            except (OSError, RuntimeError):
                return self._refuse(report, f"release {self.release_path} does not exist")
            if old is not None and not force and target == old.release.path:
                report.update(status="unchanged", version=old.release.version)
                self.last_reload = report
                return 200, report
            loop = asyncio.get_running_loop()
            try:
                release, verdict = await loop.run_in_executor(self._load_pool, self._load_checked, target)
            except (BundleError, CheckFailed) as exc:
                return self._refuse(report, str(exc))
            except Exception as exc:  # a model that blows up in an unexpected way is refused too
                return self._refuse(report, f"{type(exc).__name__}: {exc}")
            group_column = (release.profile.group_column if release.profile is not None else None) \
                or self.cfg.group_column
            drift = DriftCounter(release.profile) if release.profile is not None else None
            self.active = Served(release=release, group_column=group_column, drift=drift,  # the atomic swap
                                 snapshot_interval_s=self.cfg.snapshot_interval_s, snapshots=self.cfg.snapshots)
            if old is not None and gc.get_freeze_count():
                # serve() froze what the startup load allocated, the first release included: thaw it, or what
                # of that release sits in reference cycles would outlive it for good
                gc.unfreeze()
            self.metrics.set_model(release.name, release.version, release.digest)
            self.metrics.reloads.labels("switched").inc()
            self._update_ready()
            report.update(status="switched", version=release.version, digest=release.digest,
                          previous=old.release.version if old else None, verdict=verdict,
                          seconds=round(time.time() - started, 3))
            self.last_reload = report
            log.info("serving %s version %s (%s) from %s after %s: %s", release.name, release.version,
                     (release.digest or "")[:12], release.path, source, verdict)
            if self.ready_event is not None:
                self.ready_event.set()
            return 200, report

    def _refuse(self, report: dict[str, Any], reason: str) -> tuple[int, dict[str, Any]]:
        report.update(status="refused", reason=reason,
                      serving=self.active.release.version if self.active else None)
        self.last_reload = report
        self.metrics.reloads.labels("refused").inc()
        if self.active is None:
            self.not_ready_reason = f"no release loaded: {reason}"
        log.error("release refused (%s): %s; still serving %s", report["source"], reason,
                  report["serving"] or "nothing")
        return 409, report

    def _update_ready(self) -> None:
        self.metrics.ready.set(1 if self.active is not None and not self.draining else 0)
        self.metrics.draining.set(1 if self.draining else 0)

    async def _sweeper(self) -> None:
        """Cancel body reads past their deadline (checked four times a second)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            if self.active is not None:
                self.active.tick()
            now = loop.time()
            for task, deadline in list(self._reading.items()):
                if deadline <= now and task not in self._timed_out:
                    self._timed_out.add(task)
                    task.cancel()

    # -- batching -------------------------------------------------------------------------------------------
    async def _batcher(self) -> None:
        assert self._queue is not None
        q = self._queue
        while True:
            # one call per batch: the batch (requests, frames, answers) is freed when it is answered, not held
            # by this loop's locals until the next request arrives
            await self._serve_batch(q, await q.get())

    async def _serve_batch(self, q: asyncio.Queue[_Item], item: _Item) -> None:
        limit = self.cfg.max_batch_rows
        items = [item]
        rows = item.parsed.n_rows
        while rows < limit and not q.empty():
            nxt = q.get_nowait()
            items.append(nxt)
            rows += nxt.parsed.n_rows
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._predict_pool, self._run_batch, items)
        except Exception as exc:  # pragma: no cover - _run_batch catches per group
            results = [exc] * len(items)
        for it, res in zip(items, results, strict=True):
            if it.future.done():
                continue
            if isinstance(res, BaseException):
                it.future.set_exception(res)
            else:
                it.future.set_result(res)

    def _run_batch(self, items: list[_Item]) -> list[Any]:
        results: list[Any] = [None] * len(items)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault((id(it.served), *it.parsed.key()), []).append(i)
        for idxs in groups.values():
            self._predict_group(items, idxs, results)
        return results

    def _predict_group(self, items: list[_Item], idxs: list[int], results: list[Any]) -> None:
        served = items[idxs[0]].served
        parts = [items[i].parsed for i in idxs]
        try:
            columns = batch_columns(parts)
            frame = build_frame(parts, columns)
            preds = served.release.model.predict(frame)
            rows = to_jsonable(preds)
            if len(rows) != sum(p.n_rows for p in parts):
                raise ValueError("prediction count differs from row count")
        except Exception as exc:
            if len(idxs) > 1:  # find the request(s) that broke the batch; the others still get answers
                for i in idxs:
                    self._predict_group(items, [i], results)
                return
            results[idxs[0]] = BadRequest(f"the model could not score this input: {type(exc).__name__}: "
                                          f"{str(exc)[:300]}", 400)
            return
        off = 0
        for i, p in zip(idxs, parts, strict=True):
            results[i] = rows[off: off + p.n_rows]
            off += p.n_rows
        self.metrics.batches.inc()
        self.metrics.rows.inc(off)
        try:
            served.record(frame, preds, self.metrics, columns)
        except Exception:  # statistics must never fail a request
            log.exception("counting predictions failed")

    # -- HTTP -----------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    try:
                        await self.startup()
                    except Exception as exc:
                        await send({"type": "lifespan.startup.failed", "message": str(exc)})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await self.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _respond(self, send: Send, status: int, body: bytes, ctype: bytes = JSON,
                       extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _error(self, send: Send, endpoint: str, status: int, message: str,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
        code = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
                415: "UNSUPPORTED_MEDIA_TYPE", 503: "UNAVAILABLE"}.get(status, "ERROR")
        body = json.dumps({"error_code": code, "message": message}).encode()
        self.metrics.errors.labels(endpoint, code.lower()).inc()
        self.metrics.observe_request(endpoint, status)
        await self._respond(send, status, body, JSON, extra)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        method = scope["method"]
        if path == "/invocations":
            if method != "POST":
                await self._error(send, "invocations", 405, "use POST /invocations", [(b"allow", b"POST")])
                return
            await self._invocations(scope, receive, send)
            return
        route = _ROUTES.get(path)
        if route is None:
            await self._error(send, "other", 404, f"no such endpoint {path[:80]!r}; see /health, /invocations, "
                              "/metrics, /stats, /profile, /version")
            return
        want, handler = route
        if method != want and not (want == "GET" and method == "HEAD"):
            await self._error(send, path.strip("/"), 405, f"use {want} {path}", [(b"allow", want.encode())])
            return
        await handler(self, scope, receive, send)

    def _authorized(self, scope: Scope, token: bytes | None) -> bool:
        if token is None:
            return True
        got = _header(scope, b"authorization") or b""
        scheme, _, value = got.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), token)

    async def _read_body(self, scope: Scope, receive: Receive, deadline: float) -> bytes:
        limit = self.cfg.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise BadRequest("invalid Content-Length header") from None
            if declared > limit:
                raise BadRequest(f"request body of {declared} bytes exceeds the limit of {limit} bytes", 413)
        chunks: list[bytes] = []
        size = 0
        # the deadline is enforced by one sweeper task (_sweeper) instead of a timer per request: cheaper
        task = asyncio.current_task()
        assert task is not None
        self._reading[task] = deadline
        try:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    raise _Disconnected
                chunk = msg.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise BadRequest(f"request body exceeds the limit of {limit} bytes", 413)
                    chunks.append(chunk)
                if not msg.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if task in self._timed_out:
                self._timed_out.discard(task)
                task.uncancel()
                raise _Timeout from None
            raise
        finally:
            self._reading.pop(task, None)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        served = self.active
        if served is None:
            await self._error(send, "invocations", 503, self.not_ready_reason, [(b"retry-after", b"1")])
            return
        vh = [(b"x-model-name", served.release.name.encode("latin-1", "replace")),
              (b"x-model-version", served.version_header)]
        if self.draining:
            await self._error(send, "invocations", 503, "draining: this agent takes no new requests",
                              [*vh, (b"retry-after", b"5")])
            return
        if not self._authorized(scope, self.token):
            served.errors += 1
            await self._error(send, "invocations", 401, "missing or wrong bearer token",
                              [*vh, (b"www-authenticate", b'Bearer realm="modelfleet-agent"')])
            return
        ctype = _header(scope, b"content-type")
        if ctype is not None:
            mime = ctype.split(b";")[0].strip().lower()
            if mime not in (b"application/json", b"", b"*/*"):
                served.errors += 1
                await self._error(send, "invocations", 415,
                                  f"unsupported content type {mime.decode('latin-1')[:60]!r}; "
                                  "send application/json", [*vh, (b"connection", b"close")])
                return
        try:
            body = await self._read_body(scope, receive, t0 + self.cfg.request_timeout_s)
            if len(body) > BIG_BODY:
                parsed = await loop.run_in_executor(self._parse_pool, served.release.parse, body,
                                                    self.cfg.max_rows)
            else:
                parsed = served.release.parse(body, self.cfg.max_rows)
            assert self._queue is not None
            fut: asyncio.Future[list[Any]] = loop.create_future()
            self._queue.put_nowait(_Item(served, parsed, fut))
            preds = await fut
        except BadRequest as exc:
            served.errors += 1
            extra = vh if exc.status != 413 else [*vh, (b"connection", b"close")]
            await self._error(send, "invocations", exc.status, exc.message, extra)
            return
        except _Timeout:
            served.errors += 1
            await self._error(send, "invocations", 408,
                              f"request body not received within {self.cfg.request_timeout_s:g} s",
                              [*vh, (b"connection", b"close")])
            return
        except _Disconnected:
            return
        out = json.dumps({"predictions": preds}).encode()
        await self._respond(send, 200, out, JSON, vh)
        dt = loop.time() - t0
        served.observe(dt)
        self.metrics.observe_request("invocations", 200, dt)

    # -- simple endpoints -----------------------------------------------------------------------------------
    def _last_reload_summary(self) -> dict[str, Any] | None:
        """The last load or reload in a few keys: status (switched, unchanged, refused), release, version, reason."""
        last = self.last_reload
        if last is None:
            return None
        return {k: last[k] for k in ("status", "release", "version", "reason", "source", "time") if k in last}

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.active
        if s is None or self.draining:
            reason = "draining" if self.draining else self.not_ready_reason
            body: dict[str, Any] = {"status": "unavailable", "reason": reason,
                    "version": s.release.version if s else None, "last_reload": self._last_reload_summary()}
            self.metrics.observe_request("health", 503)
            await self._respond(send, 503, json.dumps(body).encode())
            return
        r = s.release
        body = {"status": "ok", "model": r.name, "version": r.version, "digest": r.digest,
                "uptime_s": round(time.time() - self.started, 3), "flavor": r.flavor,
                "last_reload": self._last_reload_summary()}
        self.metrics.observe_request("health", 200)
        await self._respond(send, 200, json.dumps(body).encode(), JSON,
                            [(b"x-model-version", s.version_header)])

    async def _version(self, scope: Scope, receive: Receive, send: Send) -> None:
        from modelfleet import __version__ as agent_version

        s = self.active
        body: dict[str, Any] = {"agent": agent_version}
        if s is None:
            body.update(status="unavailable", reason=self.not_ready_reason)
            await self._respond(send, 503, json.dumps(body).encode())
            return
        body.update(s.release.describe())
        body["last_reload"] = self.last_reload
        await self._respond(send, 200, json.dumps(body).encode(), JSON, [(b"x-model-version", s.version_header)])

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.metrics.observe_request("metrics", 200)
        await self._respond(send, 200, self.metrics.render(), PROMETHEUS)

    async def _stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.active
        if s is None:
            await self._respond(send, 503, json.dumps({"status": "unavailable",
                                                       "reason": self.not_ready_reason}).encode())
            return
        window = _query_seconds(scope, b"window")
        if window is not None and not window >= 0:
            await self._error(send, "stats", 400, "window must be a number of seconds >= 0, e.g. /stats?window=900")
            return
        body = s.stats(window)
        body["uptime_s"] = round(time.time() - self.started, 3)
        body["draining"] = self.draining
        self.metrics.observe_request("stats", 200)
        await self._respond(send, 200, json.dumps(body).encode(), JSON, [(b"x-model-version", s.version_header)])

    async def _profile(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The release's reference profile (profile.json as deployed): the bins ``/stats`` counts on."""
        s = self.active
        if s is None or s.release.profile is None:
            reason = self.not_ready_reason if s is None else (s.release.profile_error or "no reference profile")
            await self._error(send, "profile", 404 if s is not None else 503, reason)
            return
        body = s.profile_json()
        self.metrics.observe_request("profile", 200)
        await self._respond(send, 200, body, JSON, [(b"x-model-version", s.version_header),
                                                    (b"x-profile-sha256", (s.profile_sha256 or "").encode())])

    async def _admin(self, scope: Scope, send: Send, endpoint: str) -> bool:
        if self.admin_token is None:
            await self._error(send, endpoint, 403, "admin actions are disabled: no admin token is configured "
                              "([auth] admin_token_file)")
            return False
        if not self._authorized(scope, self.admin_token):
            await self._error(send, endpoint, 401, "missing or wrong admin bearer token",
                              [(b"www-authenticate", b'Bearer realm="modelfleet-agent-admin"')])
            return False
        return True

    async def _admin_reload(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self._admin(scope, send, "admin_reload"):
            return
        qs = scope.get("query_string", b"") or b""
        force = b"force=1" in qs or b"force=true" in qs
        status, report = await self.reload(source="admin", force=force)
        self.metrics.observe_request("admin_reload", status)
        await self._respond(send, status, json.dumps(report).encode())

    async def _admin_drain(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self._admin(scope, send, "admin_drain"):
            return
        self.draining = True
        self._update_ready()
        log.info("draining: new scoring requests are refused, /health answers 503")
        self.metrics.observe_request("admin_drain", 200)
        await self._respond(send, 200, json.dumps({"status": "draining"}).encode())

    async def _admin_resume(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self._admin(scope, send, "admin_resume"):
            return
        self.draining = False
        self._update_ready()
        log.info("resumed: accepting scoring requests")
        self.metrics.observe_request("admin_resume", 200)
        await self._respond(send, 200, json.dumps({"status": "serving"}).encode())


_ROUTES: dict[str, tuple[str, Callable[..., Awaitable[None]]]] = {
    "/health": ("GET", Agent._health),
    "/ping": ("GET", Agent._health),
    "/version": ("GET", Agent._version),
    "/metrics": ("GET", Agent._metrics),
    "/stats": ("GET", Agent._stats),
    "/profile": ("GET", Agent._profile),
    "/admin/reload": ("POST", Agent._admin_reload),
    "/admin/drain": ("POST", Agent._admin_drain),
    "/admin/resume": ("POST", Agent._admin_resume),
}
