"""Debian's real Prometheus, started by a test on loopback with the repository's rules and a file_sd target list."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import REPO_ROOT


class PrometheusServer:
    """``prometheus`` scraping the targets in ``targets`` every ``interval`` on ``address:port``."""

    def __init__(self, workdir: Path, targets: Path, *, address: str = "127.0.0.1", port: int = 19096,
                 interval: str = "1s") -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed; fix: sudo apt-get install -y prometheus (make test does it)"
        config = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus.yml").read_text())
        config["global"].update(scrape_interval=interval, evaluation_interval=interval)
        config["rule_files"] = [str(REPO_ROOT / "monitoring" / r) for r in config["rule_files"]]
        job = config["scrape_configs"][0]
        job["scrape_timeout"] = interval
        job["file_sd_configs"] = [{"files": [str(targets)], "refresh_interval": "1s"}]
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://{address}:{port}"
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address={address}:{port}", "--web.enable-lifecycle"],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(self.url + "/-/ready", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready: {self.log.read_text()[-2000:]}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10, trust_env=False)
        r.raise_for_status()
        return list(r.json()["data"]["result"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
