"""The headless inventory model: nodes, their class (cpu/gpu/arm) and groups, read from an Ansible inventory.

The console and the deploy commands need to know *which* nodes exist and how to reach their agents without
running Ansible: this module reads the same YAML inventory that ``ansible-playbook -i`` reads, applies Ansible's
variable precedence closely enough for our ``modelfleet_*`` variables (``all`` < parent group < child group <
host), and offers ``select(limit)`` with Ansible's ``--limit`` vocabulary (group and host names, comma
separated, ``!`` to exclude, ``&`` to intersect). Pure: no network, no Ansible import, no Textual.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelfleet.core.errors import ConfigError, NodeNotFound

DEFAULT_ROOT = "/opt/modelfleet"
DEFAULT_AGENT_PORT = 8080
EDGE_GROUP = "edge"
ENVIRONMENT_GROUPS = ("staging", "production")
VAR_PREFIX = "modelfleet_"


class NodeClass(StrEnum):
    """The hardware class a node declares; a release names the class(es) it can run on."""

    CPU = "cpu"
    GPU = "gpu"
    ARM = "arm"

    @property
    def group(self) -> str:
        """The inventory group of this class, e.g. ``edge_gpu``."""
        return f"{EDGE_GROUP}_{self.value}"

    @classmethod
    def parse(cls, value: object, *, where: str) -> NodeClass:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            allowed = "|".join(c.value for c in cls)
            raise ConfigError(
                f"{where}: node class {value!r} is not one of {allowed}",
                hint=f"set modelfleet_node_class to one of {allowed}",
            ) from None


@dataclass(frozen=True)
class Node:
    """One edge node as the inventory describes it. ``root`` is a path *on the node*."""

    name: str
    address: str
    node_class: NodeClass
    root: str = DEFAULT_ROOT
    agent_port: int = DEFAULT_AGENT_PORT
    groups: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)

    @property
    def agent_url(self) -> str:
        return f"http://{self.address}:{self.agent_port}"

    @property
    def environment(self) -> str | None:
        """The node's environment (:func:`environment_of`): ``modelfleet_environment``, else its environment group."""
        return environment_of(self.vars.get("modelfleet_environment"), self.groups)


def environment_of(variable: object, groups: Iterable[str]) -> str | None:
    """A node's environment: its inventory variable ``modelfleet_environment`` (usually a group variable of its
    environment group, e.g. ``group_vars/prod.yml``), else the first of the groups ``staging``, ``production`` it
    is in, else None. policy/approvals.yaml names the protected ones (docs/governance.md, "Enforcement").

    The same rule is the Jinja default of ``edge_runtime_environment`` (installed on the node at provisioning)
    and ``model_release_environment`` (what a deploy tells the node the inventory says)."""
    if variable not in (None, ""):
        return str(variable)
    names = set(groups)
    return next((g for g in ENVIRONMENT_GROUPS if g in names), None)


@dataclass
class _Group:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)


@dataclass
class VarFiles:
    """The ``group_vars/<group>.yml`` and ``host_vars/<host>.yml`` files beside an inventory file (Ansible reads
    them with the inventory; e.g. ``group_vars/prod.yml`` holding ``modelfleet_environment: prod``). Read lazily,
    once per name; a file that is not a YAML mapping is a ConfigError naming it."""

    folder: Path | None = None
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def beside(cls, inventory: Path) -> VarFiles:
        folder = Path(inventory).parent
        has_any = (folder / "group_vars").is_dir() or (folder / "host_vars").is_dir()
        return cls(folder if has_any else None)

    def group(self, name: str) -> dict[str, Any]:
        return self._read("group_vars", name)

    def host(self, name: str) -> dict[str, Any]:
        return self._read("host_vars", name)

    def _read(self, kind: str, name: str) -> dict[str, Any]:
        if self.folder is None:
            return {}
        key = f"{kind}/{name}"
        if key not in self._cache:
            import yaml

            found: dict[str, Any] = {}
            for suffix in (".yml", ".yaml", ".json"):
                path = self.folder / kind / (name + suffix)
                if not path.is_file():
                    continue
                try:
                    data = yaml.safe_load(path.read_text(encoding="utf-8"))
                except (OSError, yaml.YAMLError) as exc:
                    raise ConfigError(f"{path}: cannot read it as YAML: {exc}".replace("\n", " "),
                                      hint=f"fix the syntax in {path}") from None
                if data is not None and not isinstance(data, dict):
                    raise ConfigError(f"{path}: must be a mapping of variables, not {type(data).__name__}",
                                      hint="write name: value lines")
                found.update(data or {})
            self._cache[key] = found
        return self._cache[key]


class Inventory:
    """Nodes and groups of an Ansible YAML inventory.

    Hosts without a node class are kept out of :attr:`nodes` (a controller host, say) unless they sit in the
    ``edge`` group, where a class is required; their names are in :attr:`other_hosts`.
    """

    def __init__(self, nodes: Iterable[Node], groups: Mapping[str, Iterable[str]], *, source: str = "<memory>"):
        self.source = source
        self._nodes: dict[str, Node] = {n.name: n for n in nodes}
        self._groups: dict[str, tuple[str, ...]] = {g: tuple(h) for g, h in groups.items()}
        self.other_hosts: tuple[str, ...] = ()

    # -- loading -------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, *, default_agent_port: int = DEFAULT_AGENT_PORT) -> Inventory:
        """Read an Ansible YAML inventory file. Missing or malformed file -> ConfigError naming the file."""
        import yaml

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"inventory {path} does not exist",
                hint="run `modelfleet sim up` for the simulated fleet, or set fleet.inventory in modelfleet.toml",
            ) from None
        except OSError as exc:
            raise ConfigError(f"inventory {path}: cannot read: {exc.strerror}") from None
        try:
            # libyaml's loader when PyYAML has it: 10x faster (200 nodes: 19 ms instead of 186 ms), same result
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"inventory {path}: not valid YAML: {exc}".replace("\n", " "), hint=f"fix the syntax in {path}"
            ) from None
        return cls.from_data(data, source=str(path), default_agent_port=default_agent_port,
                             var_files=VarFiles.beside(path))

    @classmethod
    def from_data(
        cls, data: Any, *, source: str = "<memory>", default_agent_port: int = DEFAULT_AGENT_PORT,
        var_files: VarFiles | None = None,
    ) -> Inventory:
        """Build from the parsed YAML (a mapping of top-level groups, usually just ``all``); ``var_files``: the
        ``group_vars/`` and ``host_vars/`` files beside it, which Ansible reads too."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"inventory {source}: top level must be a mapping of groups (e.g. all:), not {type(data).__name__}",
                hint="write the inventory in Ansible's YAML format: all: {children: {...}}",
            )
        groups: dict[str, _Group] = {"all": _Group("all")}
        host_vars: dict[str, dict[str, Any]] = {}
        host_order: list[str] = []
        for name, body in data.items():
            _parse_group(str(name), body, None, groups, host_vars, host_order, source)
        # every group without a parent hangs under `all`, as in Ansible
        for g in groups.values():
            if g.name != "all" and not g.parents:
                g.parents.add("all")
                if g.name not in groups["all"].children:
                    groups["all"].children.append(g.name)
        _check_cycles(groups, source)

        nodes: list[Node] = []
        others: list[str] = []
        for host in host_order:
            host_groups = _ancestors_of_host(host, groups)
            merged: dict[str, Any] = {}
            files = var_files or VarFiles()
            for gname in sorted(host_groups, key=lambda n: (_depth(n, groups), n)):
                merged.update(groups[gname].vars)
                merged.update(files.group(gname))
            merged.update(host_vars[host])
            merged.update(files.host(host))
            node = _node_from(host, merged, host_groups, default_agent_port, source)
            if node is None:
                if EDGE_GROUP in host_groups:
                    raise ConfigError(
                        f"inventory {source}: host {host} is in group {EDGE_GROUP} but has no node class",
                        hint="set modelfleet_node_class (cpu|gpu|arm) or put the host in edge_cpu/edge_gpu/edge_arm",
                    )
                others.append(host)
            else:
                nodes.append(node)
        membership = {
            g.name: [h for h in host_order if g.name in _ancestors_of_host(h, groups)] for g in groups.values()
        }
        inv = cls(nodes, membership, source=source)
        inv.other_hosts = tuple(others)
        return inv

    # -- queries -------------------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        """Group name -> every host in it, including hosts of its child groups."""
        return dict(self._groups)

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def node(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise NodeNotFound(
                f"no node named {name!r} in {self.source}; known nodes: {', '.join(self._nodes) or '(none)'}",
                hint="pick one of the known nodes",
            ) from None

    def by_class(self, node_class: NodeClass | str) -> list[Node]:
        wanted = NodeClass(node_class)
        return [n for n in self._nodes.values() if n.node_class is wanted]

    def select(self, limit: str | None = None) -> list[Node]:
        """Nodes matching an Ansible-style limit, in inventory order.

        ``None``/``""``/``all``/``*`` -> every node. Otherwise comma (or colon) separated terms, each a group or a
        node name; ``!term`` removes, ``&term`` intersects. An unknown term raises NodeNotFound naming what is
        known, because a typo in a deploy target must never silently select nothing.
        """
        if limit is None or not limit.strip():
            return self.nodes
        include: set[str] = set()
        excludes: set[str] = set()
        intersections: list[set[str]] = []
        any_include = False
        for raw in limit.replace(":", ",").split(","):
            term = raw.strip()
            if not term:
                continue
            if term.startswith("!"):
                excludes |= self._resolve(term[1:].strip())
            elif term.startswith("&"):
                intersections.append(self._resolve(term[1:].strip()))
            else:
                include |= self._resolve(term)
                any_include = True
        chosen = include if any_include else set(self._nodes)
        return [
            n for name, n in self._nodes.items()
            if name in chosen and name not in excludes and all(name in s for s in intersections)
        ]

    def _resolve(self, term: str) -> set[str]:
        if term in ("all", "*"):
            return set(self._nodes)
        if term in self._nodes:
            return {term}
        if term in self._groups:
            return {h for h in self._groups[term] if h in self._nodes}
        groups = sorted(g for g in self._groups if g != "all")
        raise NodeNotFound(
            f"{term!r} is neither a node nor a group in {self.source}; "
            f"groups: {', '.join(groups) or '(none)'}; nodes: {', '.join(self._nodes) or '(none)'}",
            hint="use group or node names, comma separated (e.g. edge_cpu,edge-gpu-01)",
        )


# -- parsing helpers ---------------------------------------------------------------------------------------


def _mapping(value: Any, what: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"inventory {source}: {what} must be a mapping, not {type(value).__name__}",
            hint="see Ansible's YAML inventory format: groups have hosts:, vars: and children: mappings",
        )
    return value


def _parse_group(
    name: str,
    body: Any,
    parent: str | None,
    groups: dict[str, _Group],
    host_vars: dict[str, dict[str, Any]],
    host_order: list[str],
    source: str,
) -> None:
    body = _mapping(body, f"group {name}", source)
    unknown = set(body) - {"hosts", "vars", "children"}
    if unknown:
        raise ConfigError(
            f"inventory {source}: group {name} has unknown key {sorted(unknown)[0]!r}",
            hint="a group may only have hosts:, vars: and children:",
        )
    group = groups.setdefault(name, _Group(name))
    if parent is not None:
        group.parents.add(parent)
        if name not in groups[parent].children:
            groups[parent].children.append(name)
    group.vars.update(_mapping(body.get("vars"), f"vars of group {name}", source))
    for host, hvars in _mapping(body.get("hosts"), f"hosts of group {name}", source).items():
        host = str(host)
        if host not in host_vars:
            host_vars[host] = {}
            host_order.append(host)
        host_vars[host].update(_mapping(hvars, f"vars of host {host}", source))
        if host not in group.hosts:
            group.hosts.append(host)
    for child, child_body in _mapping(body.get("children"), f"children of group {name}", source).items():
        _parse_group(str(child), child_body, name, groups, host_vars, host_order, source)


def _check_cycles(groups: dict[str, _Group], source: str) -> None:
    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ConfigError(
                f"inventory {source}: group cycle {' -> '.join((*path, name))}",
                hint="a group must not be its own ancestor",
            )
        for child in groups[name].children:
            visit(child, (*path, name))

    visit("all", ())


def _ancestors_of_host(host: str, groups: dict[str, _Group]) -> set[str]:
    found: set[str] = set()
    todo = [g.name for g in groups.values() if host in g.hosts]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        todo.extend(groups[name].parents)
    found.add("all")
    return found


def _depth(name: str, groups: dict[str, _Group]) -> int:
    if name == "all" or not groups[name].parents:
        return 0
    return 1 + max(_depth(p, groups) for p in groups[name].parents)


def _node_from(
    host: str, hv: dict[str, Any], host_groups: set[str], default_port: int, source: str
) -> Node | None:
    where = f"inventory {source}, host {host}"
    raw_class = hv.get(VAR_PREFIX + "node_class")
    if raw_class is not None:
        node_class = NodeClass.parse(raw_class, where=where)
    else:
        by_group = [c for c in NodeClass if c.group in host_groups]
        if len(by_group) > 1:
            raise ConfigError(
                f"{where}: in several class groups ({', '.join(c.group for c in by_group)})",
                hint="put each host in exactly one of edge_cpu, edge_gpu, edge_arm",
            )
        if not by_group:
            return None
        node_class = by_group[0]
    raw_port = hv.get(VAR_PREFIX + "agent_port", default_port)
    try:
        port = int(raw_port)
    except (TypeError, ValueError):
        port = 0
    if not 1 <= port <= 65535 or isinstance(raw_port, bool):
        raise ConfigError(
            f"{where}: modelfleet_agent_port = {raw_port!r} is not a TCP port",
            hint="set modelfleet_agent_port to a number between 1 and 65535",
        )
    address = hv.get(VAR_PREFIX + "agent_address") or hv.get("ansible_host") or host
    root = hv.get(VAR_PREFIX + "root") or DEFAULT_ROOT
    return Node(
        name=host,
        address=str(address),
        node_class=node_class,
        root=str(root),
        agent_port=port,
        groups=tuple(sorted(host_groups - {"all"})),
        vars=dict(hv),
    )
