"""The app's side of the Infrastructure view (``screens/infra.py``): its workers, and a Terraform run's way from
the key to the run pipeline and back (prepare, typed confirmation, launch; after it ends, the environment read
again and, after an apply, its inventory written). Mixed into :class:`~modelfleet.console.app.ModelfleetApp`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work

from modelfleet.console.app_base import AppBase
from modelfleet.console.screens.confirm import ConfirmScreen
from modelfleet.console.screens.infra import confirmation

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.runners.infra_state import InfraState
    from modelfleet.runners.requests import PreparedRun


class InfraActions(AppBase):
    _then_apply: set[str]  # destroy plans started here: their apply is asked for when they end (set by the app)

    @work(thread=True, exclusive=True, group="infra")
    def load_infra(self) -> None:
        self._call("infra", self.services.infra_envs)

    @work(thread=True, exclusive=True, group="infra_detail")
    def load_infra_detail(self, env: str) -> None:
        self._call("infra_details", lambda: self.services.infra_detail(env), env)

    def request_infra(self, action: str, env: str) -> None:
        """Plan, apply the saved plan, or destroy (a destroy plan, then its apply): prepared by the run pipeline
        (refused with the reason before anything is written), confirmed, then launched as any run."""
        if self.read_only:
            self.notify("read-only mode: Terraform runs are disabled", severity="warning")
            return
        self.notify(f"preparing {action} of {env}…", timeout=3)
        self._prepare_infra(action, env)

    @work(thread=True, exclusive=True, group="infra_prepare")
    def _prepare_infra(self, action: str, env: str) -> None:
        self._call("infra_prepared", lambda: (action, self.services.prepare_infra(action, env)))

    def _infra_prepared(self, action: str, prepared: PreparedRun) -> None:
        title, body, typed, prompt = confirmation(action, prepared)

        def done(ok: bool | None) -> None:
            if ok:
                if action == "destroy":
                    self._then_apply.add(prepared.run_id)
                self._launch(prepared)

        self.push_screen(ConfirmScreen(title, body, typed=typed, typed_prompt=prompt,
                                       confirm_label="Apply" if action == "apply" else "Run"), done)

    def _infra_finished(self, run_id: str, st: InfraState, result: Any) -> None:
        env = getattr(result, "env", None)
        if not env:
            return
        self.state.infra_details.pop(env, None)
        self.load_infra()
        if st.outcome() != "ok":
            return
        if st.kind == "infra_apply":
            self._write_inventory(env)
        elif run_id in self._then_apply:
            self._then_apply.discard(run_id)
            plan = getattr(result, "plan", None)
            if plan is not None and not plan.no_changes:
                self.request_infra("apply", env)
            else:
                self.notify(f"{env}: nothing to destroy")

    @work(thread=True, exclusive=True, group="infra_inventory")
    def _write_inventory(self, env: str) -> None:
        """After an apply: the environment's inventory from its ``nodes`` output; then the Fleet view re-reads its
        inventory and probes (``_loaded``)."""
        self._call("infra_inventory", lambda: self.services.infra_inventory(env), env)
