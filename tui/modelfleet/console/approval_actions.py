"""The app's side of the Approvals view (``screens/approvals.py``): its workers, and a decision's way from the
key to ``governance.decide`` (typed confirmation, a reason, the signed decision) and back. Mixed into
:class:`~modelfleet.console.app.ModelfleetApp`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work

from modelfleet.console.app_base import AppBase
from modelfleet.console.screens.approvals import describe_request
from modelfleet.console.screens.confirm import ConfirmScreen

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.console.governance_services import ApprovalRow
    from modelfleet.core.governance import RequestView


class ApprovalActions(AppBase):
    @work(thread=True, exclusive=True, group="approvals")
    def load_approvals(self) -> None:
        self._call("approvals", self.services.approvals)

    def request_decision(self, row: ApprovalRow, decision: str) -> None:
        """Approve or reject ``row`` as the current user, after typing the request's id (and, to reject, a
        reason)."""
        if self.read_only:
            self.notify("read-only mode: approving and rejecting are disabled", severity="warning")
            return
        rid = row.view.id
        verb = "Approve" if decision == "approve" else "Reject"
        screen = ConfirmScreen(
            f"{verb} request {rid} {row.you}?", str(describe_request(row).plain), typed=rid,
            typed_prompt=f"Your decision is signed with your key and recorded in the ledger. Type [b]{rid}[/b] to "
                         "confirm:", confirm_label=verb,
            reason="reason (required)" if decision == "reject" else "reason (optional)",
            reason_required=decision == "reject")

        def done(ok: bool | None) -> None:
            if ok:
                self._decide(rid, decision, screen.reason_text)

        self.push_screen(screen, done)

    @work(thread=True, exclusive=True, group="decide")
    def _decide(self, request_id: str, decision: str, reason: str) -> None:
        self._call("decided", lambda: self.services.decide(request_id, decision, reason), request_id)

    def _decided(self, view: RequestView) -> None:
        state = view.to_dict()
        self.notify(f"request {view.id} is {state['status']}" + (
            f"; still needs {', '.join(state['missing_roles'])}" if state["status"] == "pending"
            and state["missing_roles"] else ""), title="decision recorded")
        self.state.versions.pop(view.subject.model, None)  # its gate and approval tags changed
        self.load_approvals()
