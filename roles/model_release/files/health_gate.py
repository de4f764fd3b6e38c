#!/usr/bin/env python3
"""Functional health gate for one model agent, run on the node (standard library only).

Passes when, within the retries, ``GET /health`` is 200 and names the expected version (and digest), and the
probe request (``POST /invocations``) returns the expected answer within the latency budget. Retries back off
exponentially (backoff, 2*backoff, 4*backoff, ...). Prints one JSON object; exit 0 pass, 1 fail, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def close(a: Any, b: Any, rel: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Equal JSON values, floats compared with a tolerance (models may round differently across BLAS builds)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_tol)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return bool(a == b)


def call(url: str, body: bytes | None, headers: dict[str, str], timeout: float) -> tuple[int, Any, float]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    try:
        data = json.loads(raw.decode() or "null")
    except ValueError:
        data = raw.decode(errors="replace")[:200]
    return status, data, elapsed_ms


def attempt(args: argparse.Namespace, probe: dict[str, Any] | None, headers: dict[str, str]) -> dict[str, Any]:
    status, health, _ = call(f"{args.url}/health", None, headers, args.timeout_s)
    if status != 200 or not isinstance(health, dict):
        return {"ok": False, "reason": f"/health answered {status}: {health}"}
    if args.version and str(health.get("version")) != args.version:
        return {"ok": False, "reason": f"/health names version {health.get('version')}, expected {args.version}"}
    if args.digest and not str(health.get("digest", "")).startswith(args.digest[:12]):
        return {"ok": False, "reason": f"/health names digest {health.get('digest')}, expected {args.digest}"}
    result: dict[str, Any] = {"ok": True, "health": health, "probe": None}
    if probe is None:
        return result
    body = json.dumps(probe["request"]).encode()
    status, answer, elapsed_ms = call(
        f"{args.url}/invocations", body, {**headers, "Content-Type": "application/json"}, args.timeout_s
    )
    result["latency_ms"] = round(elapsed_ms, 2)
    if status != 200:
        return {"ok": False, "reason": f"probe answered {status}: {answer}", "latency_ms": result["latency_ms"]}
    expected = probe["expected"]
    got = answer.get("predictions") if isinstance(answer, dict) and "predictions" in expected else answer
    want = expected.get("predictions") if "predictions" in expected else expected
    if not close(got, want):
        # The right version answering wrongly is deterministic: retrying only delays the rollback.
        return {"ok": False, "final": True, "reason": f"probe answer {got} differs from the expected {want}",
                "latency_ms": result["latency_ms"]}  # fmt: skip
    if elapsed_ms > args.latency_ms:
        return {"ok": False, "reason": f"probe took {elapsed_ms:.1f} ms, budget {args.latency_ms} ms",
                "latency_ms": result["latency_ms"]}  # fmt: skip
    result["probe"] = "passed"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="agent base URL, e.g. http://127.0.10.1:8080")
    parser.add_argument("--version", default="", help="version /health must name")
    parser.add_argument("--digest", default="", help="digest (or its first 12 characters) /health must name")
    parser.add_argument("--manifest", default="", help="release manifest.json holding the probe")
    parser.add_argument("--probe-json", default="", help="probe override: JSON {request, expected}")
    parser.add_argument("--latency-ms", type=float, default=500.0)
    parser.add_argument("--retries", type=int, default=4)
    parser.add_argument("--backoff-s", type=float, default=0.25)
    parser.add_argument("--timeout-s", type=float, default=2.0)
    parser.add_argument("--token-file", default="")
    args = parser.parse_args()
    args.url = args.url.rstrip("/")

    probe = None
    try:
        if args.probe_json and args.probe_json not in ("{}", "null"):
            probe = json.loads(args.probe_json)
        elif args.manifest:
            with open(args.manifest, encoding="utf-8") as fh:
                probe = json.load(fh).get("probe")
    except (OSError, ValueError) as exc:
        print(json.dumps({"ok": False, "reason": f"cannot read the probe: {exc}"}))
        return 2
    headers = {"Accept": "application/json"}
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as fh:
            headers["Authorization"] = f"Bearer {fh.read().strip()}"

    started = time.monotonic()
    result: dict[str, Any] = {"ok": False, "reason": "no attempt made"}
    for n in range(args.retries + 1):
        try:
            result = attempt(args, probe, headers)
        except (OSError, urllib.error.URLError) as exc:
            result = {"ok": False, "reason": f"{args.url} unreachable: {exc}"}
        result["attempts"] = n + 1
        if result["ok"] or result.get("final"):
            break
        if n < args.retries:
            time.sleep(args.backoff_s * (2**n))
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    print(json.dumps(result, sort_keys=True, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
