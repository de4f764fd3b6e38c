"""The console's door to Terraform environments (the Infrastructure view): listed with their saved plans, read
(resources, outputs, nodes), prepared as runs of the one run pipeline, and the inventory written after an apply.
Headless (no Textual import); mixed into :class:`~modelfleet.console.services.ConsoleServices`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.console.services_base import ServicesBase
from modelfleet.core.errors import ModelfleetError, RunError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.infra import InfraNode, SavedPlan
    from modelfleet.runners.requests import PreparedRun

INFRA_ACTIONS = ("plan", "apply", "destroy")  # destroy: a destroy plan, applied after its own confirmation


@dataclass(frozen=True)
class InfraEnvInfo:
    """A Terraform environment as the Infrastructure view lists it (``core/infra.py``)."""

    name: str
    path: Path
    backend: str  # the backend block's type ("local", "s3", ...); "none" when it declares none
    initialized: bool
    saved_plan: SavedPlan | None = None
    plan_problem: str | None = None  # why the saved plan cannot be applied now (None: it can, or there is none)
    inventory: Path | None = None  # the inventory written from its `nodes` output, when there is one


@dataclass(frozen=True)
class InfraEnvDetail:
    """What an environment holds now: resources in its state, its outputs and the nodes they describe."""

    env: str
    resources: tuple[str, ...] = ()
    outputs: Mapping[str, Any] = field(default_factory=dict)
    nodes: tuple[InfraNode, ...] = ()
    problem: str | None = None  # why they could not be read (never initialised, engine error, bad `nodes`)


@dataclass(frozen=True)
class InfraInventory:
    """The inventory written after an apply, and which of its nodes the Fleet view's inventory lacks."""

    env: str
    path: Path
    nodes: tuple[str, ...]
    fleet_inventory: Path
    not_in_fleet: tuple[str, ...] = ()
    problem: str | None = None  # nothing written (e.g. the environment has no `nodes` output)


class InfraServices(ServicesBase):
    def infra_envs(self) -> list[InfraEnvInfo]:
        """Every environment of ``terraform/envs/`` with its saved plan and whether that plan applies now."""
        from modelfleet.core.infra import SavedPlan, check_saved_plan, list_envs
        from modelfleet.runners.terraform_engine import find_engine

        engine: dict[str, Any] | None = None
        engine_problem = None
        try:
            found = find_engine(self.settings.infra.engine)
            engine = {**found.to_dict(), "label": found.label()}
        except ModelfleetError as exc:
            engine_problem = exc.message
        out = []
        for env in list_envs(self.settings):
            problem = None
            try:
                saved = SavedPlan.load(env.saved_plan_path)
            except ModelfleetError as exc:
                saved, problem = None, exc.message
            if saved is not None and not saved.applied_by:
                try:
                    if engine is None:
                        raise RunError(engine_problem or "no Terraform engine")
                    check_saved_plan(env, engine)
                except ModelfleetError as exc:
                    problem = exc.message
            out.append(InfraEnvInfo(env.name, env.path, env.backend_type or "none", env.initialized, saved, problem,
                                    env.inventory_path if env.inventory_path.is_file() else None))
        return out

    def infra_detail(self, env_name: str) -> InfraEnvDetail:
        """Resources in the environment's state and its outputs (two read-only engine commands)."""
        from modelfleet.core.infra import get_env, parse_nodes
        from modelfleet.runners.infra_outputs import read_outputs, read_resources

        env = get_env(self.settings, env_name)
        if not env.initialized:
            return InfraEnvDetail(env.name, problem="never initialised here: plan it first (p)")
        try:
            resources = tuple(read_resources(self.settings, env))
            outputs = read_outputs(self.settings, env)
        except ModelfleetError as exc:
            return InfraEnvDetail(env.name, problem=exc.message)
        nodes: tuple[InfraNode, ...] = ()
        problem = None
        if "nodes" in outputs:
            try:
                nodes = tuple(parse_nodes(outputs, env=env.name))
            except ModelfleetError as exc:
                problem = exc.message
        return InfraEnvDetail(env.name, resources, outputs, nodes, problem)

    def prepare_infra(self, action: str, env: str) -> PreparedRun:
        """The Terraform run ``action`` (plan, apply the saved plan, destroy = a destroy plan) of ``env``, checked
        by the run pipeline (an unknown environment, no engine, an unusable saved plan: refused, nothing written)."""
        from modelfleet.runners.pipeline import prepare
        from modelfleet.runners.terraform import InfraApplyRequest, InfraPlanRequest, InfraRequest

        common: dict[str, Any] = {"actor": self.actor, "origin": "console"}
        request: InfraRequest
        if action == "apply":
            request = InfraApplyRequest(env, **common)
        elif action in ("plan", "destroy"):
            request = InfraPlanRequest(env, destroy=action == "destroy", **common)
        else:
            raise UsageError(f"unknown infrastructure action {action!r}; one of {', '.join(INFRA_ACTIONS)}")
        return prepare(self.settings, request)

    def infra_inventory(self, env: str) -> InfraInventory:
        """After an apply: write the environment's inventory from its ``nodes`` output (``modelfleet infra
        inventory``) and say which of its nodes the Fleet view's inventory does not list."""
        from modelfleet.core.infra import get_env
        from modelfleet.runners.infra_outputs import write_env_inventory

        fleet_inventory = Path(self.settings.fleet.inventory)
        try:
            written = write_env_inventory(self.settings, env)
        except ModelfleetError as exc:
            return InfraInventory(env, get_env(self.settings, env).inventory_path, (), fleet_inventory,
                                  problem=exc.message)
        names = tuple(n.name for n in written.nodes)
        try:
            listed = {n.name for n in self.inventory().nodes}
        except ModelfleetError:
            listed = set()
        return InfraInventory(env, written.path, names, fleet_inventory,
                              tuple(n for n in names if n not in listed))
