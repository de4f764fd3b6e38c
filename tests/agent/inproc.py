"""Drive the agent's ASGI app in-process (no sockets): for fuzzing and the million-request memory test."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from modelfleet.agent.app import Agent
from modelfleet.agent.config import AgentConfig


async def call(agent: Agent, method: str, path: str, body: bytes = b"",
               headers: list[tuple[bytes, bytes]] | None = None,
               query: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": headers if headers is not None else [(b"content-type", b"application/json")]}
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    await agent(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


async def started_agent(release: Path, **cfg: Any) -> Agent:
    agent = Agent(AgentConfig(current=release, **cfg))
    await agent.startup(load=False)
    status, report = await agent.reload(source="test")
    assert status == 200, report
    return agent
