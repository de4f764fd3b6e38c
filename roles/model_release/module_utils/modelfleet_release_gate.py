# modelfleet: the functional health gate of one model agent (standard library only; runs on the node).
"""Health gate: the agent answers as the release it should serve, correctly and within the latency budget.

Passes when, within ``wait_s``, ``GET /health`` is 200 and names the expected version (and digest), and the
probe request (``POST /invocations``) returns the expected answer within the latency budget. Pauses between
attempts start at ``backoff_s`` and double up to ``max_backoff_s``: an agent that needs seconds to start is
polled often enough to be seen soon after it is ready. A wrong answer from the right version is final at once:
retrying only delays the rollback. So is the agent's own refusal of the release the gate waits for: ``/health``
(200 or 503) carries ``last_reload`` (status, release, reason), and a ``refused`` naming that release (by its
folder name ``<version>-<digest12>``) ends the gate with the agent's reason.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from typing import Any


def close(a: Any, b: Any, rel: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Equal JSON values, floats compared with a tolerance (models may round differently across BLAS builds)."""
    if isinstance(a, bool) or isinstance(b, bool):  # JSON true is not 1
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_tol)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return bool(a == b)


def call(url: str, body: bytes | None, headers: dict[str, str], timeout: float) -> tuple[int, Any, float]:
    """One HTTP request: (status, parsed JSON or a text excerpt, elapsed ms). Proxies from the environment are
    ignored: the agent is always reached directly."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    start = time.perf_counter()
    try:
        with opener.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    try:
        data = json.loads(raw.decode() or "null")
    except ValueError:
        data = raw.decode(errors="replace")[:200]
    return status, data, elapsed_ms


class Gate:
    """What the agent at ``url`` must show: ``version`` (and ``digest``) on /health, ``probe`` answered in time."""

    def __init__(self, url: str, *, version: str = "", digest: str = "", probe: dict[str, Any] | None = None,
                 latency_ms: float = 500.0, wait_s: float = 16.0, backoff_s: float = 0.25,
                 max_backoff_s: float = 1.0, timeout_s: float = 2.0, token: str = "", release: str = "") -> None:
        self.url = url.rstrip("/")
        self.version = version
        self.digest = digest
        self.release = release  # folder name <version>-<digest12>: the agent's refusal of it ends the gate
        self.probe = probe if probe and probe.get("request") is not None else None
        self.latency_ms = latency_ms
        self.wait_s = wait_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = "Bearer " + token

    def refusal(self, health: Any) -> dict[str, Any] | None:
        """The final verdict when ``/health`` says the agent refused the release this gate waits for."""
        last = health.get("last_reload") if isinstance(health, dict) else None
        if not (self.release and isinstance(last, dict) and last.get("status") == "refused"
                and last.get("release") == self.release):
            return None
        reason = str(last.get("reason") or "no reason given")
        return {"ok": False, "final": True, "refused": True, "agent_reason": reason,
                "reason": "agent refused release %s: %s" % (self.release, reason)}

    def attempt(self) -> dict[str, Any]:
        status, health, _ = call(self.url + "/health", None, self.headers, self.timeout_s)
        refused = self.refusal(health)
        if refused is not None:
            return refused
        if status != 200 or not isinstance(health, dict):
            return {"ok": False, "reason": "/health answered %s: %s" % (status, health)}
        if self.version and str(health.get("version")) != self.version:
            return {"ok": False, "reason": "/health names version %s, expected %s" % (health.get("version"),
                                                                                     self.version)}
        if self.digest and not str(health.get("digest", "")).startswith(self.digest[:12]):
            return {"ok": False, "reason": "/health names digest %s, expected %s" % (health.get("digest"),
                                                                                    self.digest)}
        result: dict[str, Any] = {"ok": True, "health": health, "probe": None}
        if self.probe is None:
            return result
        body = json.dumps(self.probe["request"]).encode()
        status, answer, elapsed_ms = call(self.url + "/invocations", body,
                                          dict(self.headers, **{"Content-Type": "application/json"}), self.timeout_s)
        latency = round(elapsed_ms, 2)
        if status != 200:
            return {"ok": False, "reason": "probe answered %s: %s" % (status, answer), "latency_ms": latency}
        expected = self.probe.get("expected")
        if isinstance(expected, dict) and "predictions" in expected:
            got = answer.get("predictions") if isinstance(answer, dict) else answer
            want = expected["predictions"]
        else:
            got, want = answer, expected
        if not close(got, want):
            return {"ok": False, "final": True, "latency_ms": latency,
                    "reason": "probe answer %s differs from the expected %s" % (got, want)}
        if elapsed_ms > self.latency_ms:
            return {"ok": False, "latency_ms": latency,
                    "reason": "probe took %.1f ms, budget %s ms" % (elapsed_ms, self.latency_ms)}
        result.update(probe="passed", latency_ms=latency)
        return result

    def run(self, sleep: Any = time.sleep, clock: Any = time.monotonic) -> dict[str, Any]:
        """Attempt until it passes, a final failure, or ``wait_s`` is spent. One JSON-able verdict."""
        started = clock()
        result: dict[str, Any] = {"ok": False, "reason": "no attempt made"}
        attempts = 0
        while True:
            try:
                result = self.attempt()
            except (OSError, urllib.error.URLError) as exc:
                result = {"ok": False, "reason": "%s unreachable: %s" % (self.url, exc)}
            attempts += 1
            if result["ok"] or result.get("final"):
                break
            pause = min(self.backoff_s * (2 ** (attempts - 1)), self.max_backoff_s)
            if clock() + pause - started > self.wait_s:
                break
            sleep(pause)
        result["attempts"] = attempts
        result["elapsed_s"] = round(clock() - started, 3)
        result["url"] = self.url
        return result
