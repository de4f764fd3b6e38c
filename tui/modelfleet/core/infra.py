"""Terraform environments, their saved plans and the nodes they output: the headless half of ``modelfleet infra``.

An *environment* is a folder ``<terraform_dir>/envs/<name>/`` (``local``, ``aws``, ...). Its configuration stays
read-only in the repository; everything a run writes lives under ``<state_dir>/infra/<name>/``::

    tfdata/             TF_DATA_DIR: providers, modules, backend settings (``terraform init``)
    terraform.tfstate   state of a local backend (``-backend-config=path=...``)
    saved-plan.json     the plan that ``apply`` will apply: file, sha256, engine, config digest, summary
    inventory.yml       what ``modelfleet infra inventory`` wrote from the ``nodes`` output

Every environment outputs ``nodes``, a list of objects with ``name address class arch environment ssh_user
ssh_port``; :func:`parse_nodes` checks that shape and names what is wrong.

Pure: no Terraform process, no network. :mod:`modelfleet.runners.terraform` runs the engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.core.errors import ConfigError, RunError, UsageError
from modelfleet.core.fleet import NodeClass

PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # tui/modelfleet/core/infra.py -> repository root
ENV_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
SAVED_PLAN = "saved-plan.json"
CONFIG_SUFFIXES = (".tf", ".tfvars", ".hcl", ".tf.json", ".tfvars.json")
NODE_FIELDS = ("name", "address", "class", "arch", "environment", "ssh_user", "ssh_port")


# -- environments ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InfraEnv:
    """One environment: its configuration folder and its working folder under the state dir."""

    name: str
    path: Path  # terraform/envs/<name>
    work_dir: Path  # <state_dir>/infra/<name>

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "tfdata"

    @property
    def local_state(self) -> Path:
        return self.work_dir / "terraform.tfstate"

    @property
    def saved_plan_path(self) -> Path:
        return self.work_dir / SAVED_PLAN

    @property
    def inventory_path(self) -> Path:
        return self.work_dir / "inventory.yml"

    @property
    def backend_file(self) -> Path | None:
        """``backend.hcl`` beside the configuration (remote backends), if the operator wrote one."""
        path = self.path / "backend.hcl"
        return path if path.is_file() else None

    @property
    def backend_type(self) -> str | None:
        """The ``backend "TYPE"`` the configuration declares (None: Terraform's default, local)."""
        for text in _config_texts(self.path):
            match = re.search(r'^\s*backend\s+"([a-z0-9_]+)"', text, re.MULTILINE)
            if match:
                return match.group(1)
        return None

    @property
    def init_marker(self) -> Path:
        return self.work_dir / "initialized"

    @property
    def initialized(self) -> bool:
        """``terraform init`` succeeded here (and its data dir is still there)."""
        return self.init_marker.is_file() and self.data_dir.is_dir()

    def check_backend(self) -> None:
        """Refuse a configuration without a backend block: its state would land in the repository folder."""
        if self.backend_type is None:
            raise RunError(
                f"environment {self.name} declares no backend, so Terraform would keep its state in {self.path}",
                hint=f'add `terraform {{ backend "local" {{}} }}` to {self.path} (modelfleet keeps local state under '
                     "the state dir), or a remote backend",
            )


def _config_texts(folder: Path) -> Iterable[str]:
    for path in sorted(folder.glob("*.tf")):
        try:
            yield path.read_text(encoding="utf-8")
        except OSError:
            continue


def terraform_root(settings: Any) -> Path:
    """The folder holding ``envs/`` and ``modules/``: ``infra.terraform_dir`` if it has ``envs/``, else the
    repository this package was installed from (editable install)."""
    configured = Path(settings.infra.terraform_dir)
    for root in (configured, PACKAGE_ROOT / "terraform"):
        if (root / "envs").is_dir():
            return root.resolve()
    raise ConfigError(
        f"no Terraform environments: {configured / 'envs'} does not exist",
        hint="run from the modelfleet repository or set infra.terraform_dir (MODELFLEET_INFRA_TERRAFORM_DIR)",
    )


def list_envs(settings: Any) -> list[InfraEnv]:
    root = terraform_root(settings)
    return [
        InfraEnv(p.name, p, Path(settings.state_dir) / "infra" / p.name)
        for p in sorted((root / "envs").iterdir())
        if p.is_dir() and ENV_NAME.fullmatch(p.name) and any(p.glob("*.tf"))
    ]


def get_env(settings: Any, name: str) -> InfraEnv:
    """The environment called ``name``; UsageError naming the known ones if there is none."""
    envs = list_envs(settings)
    for env in envs:
        if env.name == name:
            return env
    known = ", ".join(e.name for e in envs) or "none"
    raise UsageError(
        f"unknown environment {name!r}; known environments: {known}",
        hint=f"pick one of {known}, or add a folder {terraform_root(settings) / 'envs' / name} with its *.tf files",
    )


def config_digest(env: InfraEnv) -> str:
    """sha256 over the environment's configuration and every module it may use (``modules/``): a saved plan
    made from other files is refused rather than applied."""
    digest = hashlib.sha256()
    folders = [env.path, env.path.parent.parent / "modules"]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name.endswith(CONFIG_SUFFIXES) and ".terraform" not in path.parts \
                    and "tests" not in path.relative_to(folder).parts:
                digest.update(str(path.relative_to(folder.parent)).encode())
                digest.update(b"\0")
                digest.update(path.read_bytes())
                digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


# -- plan summaries ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceChange:
    address: str
    action: str  # create | update | delete | replace | read | no-op
    resource_type: str = ""

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> ResourceChange:
        actions = list((raw.get("change") or {}).get("actions") or [])
        if sorted(actions) == ["create", "delete"]:
            action = "replace"
        elif actions == ["no-op"] or not actions:
            action = "no-op"
        else:
            action = actions[0]
        return cls(str(raw.get("address", "")), action, str(raw.get("type", "")))


@dataclass(frozen=True)
class PlanSummary:
    """What a plan changes, per resource (from ``terraform show -json PLANFILE``)."""

    changes: tuple[ResourceChange, ...] = ()
    output_changes: dict[str, str] = field(default_factory=dict)
    destroy: bool = False
    errored: bool = False

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def add(self) -> int:
        return self.count("create") + self.count("replace")

    @property
    def change(self) -> int:
        return self.count("update")

    @property
    def remove(self) -> int:
        return self.count("delete") + self.count("replace")

    @property
    def no_changes(self) -> bool:
        return not any(c.action not in ("no-op", "read") for c in self.changes) and not any(
            a != "no-op" for a in self.output_changes.values())

    def line(self) -> str:
        if self.no_changes:
            return "no changes"
        return f"{self.add} to add, {self.change} to change, {self.remove} to destroy"

    def to_dict(self) -> dict[str, Any]:
        return {
            "add": self.add, "change": self.change, "destroy": self.remove, "no_changes": self.no_changes,
            "destroy_plan": self.destroy, "errored": self.errored,
            "resources": [asdict(c) for c in self.changes if c.action != "no-op"],
            "outputs": dict(self.output_changes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanSummary:
        changes = tuple(ResourceChange(r["address"], r["action"], r.get("resource_type", ""))
                        for r in data.get("resources", []))
        return cls(changes, dict(data.get("outputs", {})), bool(data.get("destroy_plan")), bool(data.get("errored")))


def summarize_plan(plan: Mapping[str, Any], *, destroy: bool = False) -> PlanSummary:
    """A summary of ``terraform show -json PLANFILE``'s output."""
    changes = tuple(ResourceChange.of(r) for r in plan.get("resource_changes") or [] if r.get("mode") != "data")
    outputs: dict[str, str] = {}
    for name, raw in (plan.get("output_changes") or {}).items():
        actions = list((raw or {}).get("actions") or ["no-op"])
        outputs[name] = "replace" if sorted(actions) == ["create", "delete"] else actions[0]
    return PlanSummary(changes, outputs, destroy, bool(plan.get("errored")))


# -- saved plans -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedPlan:
    """The plan ``modelfleet infra apply`` applies: recorded by ``plan``, consumed by ``apply``."""

    env: str
    run_id: str
    plan_file: str
    digest: str  # sha256 of the plan file
    engine: dict[str, Any]  # kind, name, path, version: a plan file only applies with the engine that made it
    config_digest: str
    destroy: bool
    created: str
    actor: str
    summary: dict[str, Any]
    applied_by: str | None = None  # run id of the apply that used it

    @property
    def plan_summary(self) -> PlanSummary:
        return PlanSummary.from_dict(self.summary)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SavedPlan | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise RunError(f"saved plan record {path} is unreadable ({exc})",
                           hint=f"delete {path} and make a new plan") from None


def check_saved_plan(env: InfraEnv, engine: Mapping[str, Any]) -> SavedPlan:
    """The environment's saved plan if it can be applied as it is; RunError naming why not (and the fix)."""
    fix = f"make a new plan: modelfleet infra plan --env {env.name}"
    saved = SavedPlan.load(env.saved_plan_path)
    if saved is None:
        raise RunError(f"environment {env.name} has no saved plan to apply", hint=fix)
    if saved.applied_by:
        raise RunError(f"the saved plan of {env.name} (run {saved.run_id}) was already applied by run "
                       f"{saved.applied_by}", hint=fix)
    plan_file = Path(saved.plan_file)
    if not plan_file.is_file():
        raise RunError(f"the saved plan file {plan_file} of {env.name} is gone", hint=fix)
    if file_digest(plan_file) != saved.digest:
        raise RunError(f"the saved plan file {plan_file} of {env.name} changed since it was made "
                       f"(sha256 differs from the plan's record)", hint=fix)
    if config_digest(env) != saved.config_digest:
        raise RunError(f"the configuration of {env.name} changed since its plan was made (run {saved.run_id}): "
                       "the saved plan is stale", hint=fix)
    same = {k: saved.engine.get(k) for k in ("kind", "name", "path")} == {k: engine.get(k)
                                                                           for k in ("kind", "name", "path")}
    if not same:
        made = saved.engine.get("label") or saved.engine.get("name")
        raise RunError(f"the saved plan of {env.name} was made by {made}, which is not the engine in use now "
                       f"({engine.get('label') or engine.get('name')}); a plan file applies only with its engine",
                       hint=f"{fix}, or pick the same engine with --engine")
    return saved


# -- nodes -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InfraNode:
    """One node as every environment's ``nodes`` output describes it."""

    name: str
    address: str
    node_class: NodeClass
    arch: str
    environment: str
    ssh_user: str
    ssh_port: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "class": self.node_class.value, "arch": self.arch,
                "environment": self.environment, "ssh_user": self.ssh_user, "ssh_port": self.ssh_port}


def parse_nodes(outputs: Mapping[str, Any], *, env: str) -> list[InfraNode]:
    """The ``nodes`` output (as ``terraform output -json`` gives it: ``{"nodes": {"value": [...]}}`` or plain
    values) -> nodes. ConfigError naming the environment, the node and the field for anything malformed."""
    raw = outputs.get("nodes")
    if isinstance(raw, Mapping) and "value" in raw:
        raw = raw["value"]
    if raw is None:
        raise ConfigError(f"environment {env} has no `nodes` output (or it was never applied)",
                          hint=f"run `modelfleet infra apply --env {env}` first; every environment outputs nodes")
    if not isinstance(raw, list):
        raise ConfigError(f"environment {env}: output `nodes` is a {type(raw).__name__}, not a list",
                          hint="output nodes as a list of objects (see terraform/envs/local/outputs.tf)")
    nodes: list[InfraNode] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"environment {env}: nodes[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where} is not an object", hint="each node is an object with " + ", ".join(NODE_FIELDS))
        missing = [f for f in NODE_FIELDS if item.get(f) in (None, "")]
        if missing:
            raise ConfigError(f"{where} ({item.get('name', '?')}) has no {', '.join(missing)}",
                              hint="each node is an object with " + ", ".join(NODE_FIELDS))
        name = str(item["name"])
        if name in seen:
            raise ConfigError(f"{where}: node name {name} appears twice", hint="node names must be unique")
        seen.add(name)
        try:
            port = int(item["ssh_port"])
        except (TypeError, ValueError):
            raise ConfigError(f"{where} ({name}): ssh_port {item['ssh_port']!r} is not a number") from None
        nodes.append(InfraNode(name, str(item["address"]), NodeClass.parse(item["class"], where=f"{where} ({name})"),
                               str(item["arch"]), str(item["environment"]), str(item["ssh_user"]), port))
    return nodes
