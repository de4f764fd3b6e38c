"""The real thing from the console: deploy ``credit-risk@champion`` from the run form to a simulated fleet.

A 2-node fleet on 127.0.95.x (sshd on 2295), the demo registry seeded into its state dir, provisioned through the
runner, then the console (Pilot, real :class:`ConsoleServices`) opens the deploy form, pins, launches, confirms,
shows per-host results while the run is going and ends ok; every agent then answers ``/health`` with version 2.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from modelfleet.console.app import ModelfleetApp
from modelfleet.console.screens.confirm import ConfirmScreen
from modelfleet.console.screens.run_live import RunLiveScreen
from modelfleet.console.screens.runs import RunFormScreen
from modelfleet.console.services import ConsoleServices
from modelfleet.sim.session import RunningFleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREFIX, SSH_PORT = "127.0.95", 2295


@pytest.fixture(scope="module")
def live_fleet() -> Iterator[RunningFleet]:
    from modelfleet.demo.seed import seed
    from modelfleet.runners.pipeline import launch
    from modelfleet.runners.requests import ProvisionRequest
    from tests.integration.simfleet import make_sim_fleet  # the factory behind tests/integration's fixture

    with make_sim_fleet(PREFIX, SSH_PORT, "cpu=2") as running:
        seeded = seed(running.settings, rows=2_000)
        assert seeded.aliases.get("champion") == 2, seeded.to_dict()
        result = launch(running.settings, ProvisionRequest()).wait(600)
        assert result.ok, f"provision {result.outcome}: {result.problem}"
        yield running


async def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_deploy_from_the_form_reaches_every_node(live_fleet: RunningFleet) -> None:
    settings = live_fleet.settings
    app = ModelfleetApp(services=ConsoleServices(settings), refresh_s=0)
    nodes = app.services.nodes()
    assert len(nodes) == 2
    seen_live: dict[str, str] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        # the fleet view's first probe ran in the probe's child process (core/probe_worker.py)
        await _until(lambda: app.state.fleet is not None, 60, "the first fleet probe")
        assert {s.name for s in app.state.fleet or []} == {n.name for n in nodes}
        worker = app.services._probe_worker
        probe_pid = worker.pid if worker is not None else None
        assert probe_pid is not None and probe_pid != os.getpid()
        await pilot.press("d")
        await _until(lambda: isinstance(app.screen, RunFormScreen), 10, "the run form")
        form = app.screen
        assert isinstance(form, RunFormScreen)
        for field, value in (("model", "credit-risk"), ("ref", "champion"), ("target", "edge")):
            form.query_one(f"#{field}").focus()
            await pilot.press("ctrl+a", "ctrl+k")  # clear, whatever the default
            await pilot.press(*value)
        await pilot.press("ctrl+o")  # pin + preview
        await _until(lambda: form.pinned is not None, 120, "pinning credit-risk@champion")
        assert form.pinned is not None and form.pinned[:3] == ("credit-risk", "champion", 2)
        await pilot.press("ctrl+r")  # launch: opens the confirmation
        await _until(lambda: isinstance(app.screen, ConfirmScreen), 30, "the confirmation")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert confirm.typed == "edge"  # every node: a typed confirmation
        assert "playbooks/deploy.yml" in confirm.body and "modelfleet deploy credit-risk/2" in confirm.body
        await pilot.press(*"edge", "enter")
        await _until(lambda: isinstance(app.screen, RunLiveScreen), 30, "the live run view")
        live = app.screen
        assert isinstance(live, RunLiveScreen)
        run_id = live.run_id

        def progress() -> bool:
            st = app.state.live.get(run_id)
            if st is None:
                return False
            if not st.finished:
                for name, host in st.hosts.items():
                    if host.tasks:
                        seen_live.setdefault(name, host.outcome(st.kind).value)
            return st.finished

        await _until(progress, 900, "the deploy run to finish")
        await pilot.pause(0.6)  # the live view redraws at most 4 times a second
        st = app.state.live[run_id]
        failures = {h: [(t.task, t.msg) for t in hs.tasks if t.status in ("failed", "unreachable")]
                    for h, hs in st.hosts.items() if hs.failed or hs.unreachable}
        assert st.outcome() == "ok", f"{st.summary()}: {failures}\n" + "\n".join(list(st.lines)[-60:])
        assert {n.name for n in nodes} <= set(seen_live), f"hosts seen while running: {seen_live}"
        assert {h: s.outcome(st.kind).value for h, s in st.hosts.items() if h in {n.name for n in nodes}} == {
            n.name: "changed" for n in nodes}
        shown = live.query_one("#hosts").rows  # type: ignore[attr-defined]
        assert {r.key for r in shown} >= {n.name for n in nodes}

    with pytest.raises(ProcessLookupError):  # the console stopped the probe's child as it closed
        os.kill(probe_pid, 0)
    for node in nodes:
        url = f"http://{node.address}:{node.agent_port}/health"
        body: dict[str, Any] = httpx.get(url, timeout=5).json()
        assert body.get("model") == "credit-risk" and str(body.get("version")) == "2", (url, body)
