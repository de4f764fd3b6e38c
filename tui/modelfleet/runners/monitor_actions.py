"""What the monitoring loop's actions run: a drift-triggered rollback is a run of the one pipeline.

``core/alerts.py`` decides when an action is due (policy, rate limit, once per breach) and records it; it cannot
import ``runners/`` (the core is headless), so the front ends inject :func:`rollback_node` into the alerter. The
rollback is the normal ``playbooks/rollback.yml`` run (``RollbackRequest``), recorded in the ledger with the
breach as its reason and ``monitor`` as its origin, like an operator's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelfleet.core.errors import CheckFailed

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings

ACTOR = "modelfleet-monitor"
WAIT_S = 900.0


def rollback_node(settings: Settings, model: str, node: str, reason: str) -> str:
    """Roll ``model`` back to its previous release on ``node`` and wait for it; the run id, or CheckFailed
    (naming the run and why) when the rollback did not happen."""
    from modelfleet.runners.pipeline import launch
    from modelfleet.runners.requests import RollbackRequest

    request = RollbackRequest(model=model, limit=node, reason=reason, origin="monitor", actor=ACTOR)
    result = launch(settings, request).wait(WAIT_S)
    if not result.ok:
        raise CheckFailed(f"rollback of {model} on {node} (run {result.run_id}) {result.outcome}: {result.problem}",
                          hint=f"see modelfleet ledger list --run {result.run_id}")
    return result.run_id
