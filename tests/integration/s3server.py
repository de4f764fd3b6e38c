"""An S3 API server on loopback for tests: moto's server mode (``moto_server``), a real HTTP server speaking the
S3 protocol (signatures, presigned URLs, HEAD/PUT/GET), started in the test's network namespace."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "modelfleet-test", "AWS_SECRET_ACCESS_KEY": "modelfleet-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def s3_server(host: str, port: int, log: Path) -> Iterator[str]:
    """Start moto's S3 server on ``host:port``; yields its endpoint URL; stops it afterwards."""
    binary = Path(sys.executable).parent / "moto_server"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(binary), "-H", host, "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection((host, port), timeout=0.5).close()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start on {host}:{port}: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"http://{host}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
