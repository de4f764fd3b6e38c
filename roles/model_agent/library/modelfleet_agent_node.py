#!/usr/bin/python
# modelfleet: the node-side preflight of the model_agent role.
"""Ansible module ``modelfleet_agent_node``: check the agent is installed, choose and record the model's port, and
create its tokens once - one call on the node instead of five tasks (read ports, look for the agent, choose,
assert, write tokens), each of which costs a worker fork and a round trip per node on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: modelfleet_agent_node
short_description: Check the agent is installed, choose and record a model's port, create its tokens
description:
  - Fails, naming the node and the fix, when the agent is not installed in the node venv (not in check mode,
    where the node may not be provisioned yet) or when the chosen port is already recorded for another model.
  - The port is the explicit one from O(ports) if given, else the one recorded in C(etc/agents/ports.json), else
    the first port from O(port_base) upwards that no other model records or is given. It is recorded in
    C(ports.json) (rewritten atomically, only when it changes; a diff in C(--diff) mode).
  - Each token in O(tokens) (for example C(admin-token)) is created once as C(etc/agents/<model>.<token>), mode
    0600, 40 random letters and digits; an existing token is never changed.
  - Returns the port as the fact C(model_agent_port).
options:
  root:
    description: The node folder modelfleet owns (modelfleet_root).
    type: path
    required: true
  model:
    description: Model name (letters, digits, C(.), C(_), C(-); 128 characters at most).
    type: str
    required: true
  node:
    description: Inventory name of the node, for messages.
    type: str
    default: ""
  ports:
    description: Explicit port per model name.
    type: dict
    default: {}
  port_base:
    description: First port to allocate from.
    type: int
    default: 8080
  port_span:
    description: How many ports from O(port_base) may be allocated.
    type: int
    default: 200
  tokens:
    description: Token files to create once (suffixes after C(<model>.)).
    type: list
    elements: str
    default: []
  owner:
    description: Owner of the token files (the service user), or empty to keep the connecting user.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: partial
    details: the port record only; token contents are never shown.
"""

EXAMPLES = r"""
- name: Preflight | the agent is installed; the model's port; its admin token
  modelfleet_agent_node:
    root: /opt/modelfleet
    model: credit-risk
    tokens: [admin-token]
    owner: modelfleet
"""

RETURN = r"""
ansible_facts:
  description: C(model_agent_port), the model's port on this node.
  returned: success
  type: dict
created_tokens:
  description: Token files created by this call.
  returned: success
  type: list
"""

import json
import os
import re
import secrets
import string
import tempfile

from ansible.module_utils.basic import AnsibleModule

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
TOKEN_CHARS = string.ascii_letters + string.digits


def read_ports(path: str) -> dict[str, int]:
    """The recorded ports (an absent file records none); ValueError for a file that is not a name -> port map."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in data.values()):
        raise ValueError("not a JSON object of model name -> port")
    return {str(k): int(v) for k, v in data.items()}


def choose_port(model: str, recorded: dict[str, int], explicit: dict[str, int], base: int, span: int) -> int:
    """Explicit, else recorded, else the first free one from ``base``; ValueError when none is free."""
    if model in explicit:
        return explicit[model]
    if model in recorded:
        return recorded[model]
    taken = {p for m, p in recorded.items() if m != model} | {p for m, p in explicit.items() if m != model}
    for port in range(base, base + span):
        if port not in taken:
            return port
    raise ValueError("no free port in %d..%d" % (base, base + span - 1))


def write_atomic(path: str, text: str, mode: int) -> None:
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def render_ports(table: dict[str, int]) -> str:
    return json.dumps(table, indent=4, sort_keys=True) + "\n"


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            model=dict(type="str", required=True),
            node=dict(type="str", default=""),
            ports=dict(type="dict", default={}),
            port_base=dict(type="int", default=8080),
            port_span=dict(type="int", default=200),
            tokens=dict(type="list", elements="str", default=[]),
            owner=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    p = module.params
    root, model = p["root"], p["model"]
    where = p["node"] or "this node"
    if not MODEL_NAME.match(model):
        module.fail_json(msg="model_agent_model %s is not a model name; pass the model (e.g. -e "
                             "model_release_model=credit-risk)" % json.dumps(model))
    binary = os.path.join(root, "agent", "venv", "bin", "modelfleet-agent")
    if not module.check_mode and not os.path.isfile(binary):
        module.fail_json(msg="%s has no %s; provision it first (ansible-playbook playbooks/provision.yml)"
                             % (where, binary))
    try:
        explicit = {str(k): int(v) for k, v in (p["ports"] or {}).items()}
    except (TypeError, ValueError):
        module.fail_json(msg="model_agent_ports must map model names to port numbers, got %s" % p["ports"])
    agents = os.path.join(root, "etc", "agents")
    ports_file = os.path.join(agents, "ports.json")
    try:
        recorded = read_ports(ports_file)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="cannot read %s on %s: %s; fix or remove the file (the ports of the node's other "
                             "models are recorded there)" % (ports_file, where, exc))
    try:
        port = choose_port(model, recorded, explicit, p["port_base"], p["port_span"])
    except ValueError as exc:
        module.fail_json(msg="%s on %s for %s; set model_agent_ports for it" % (exc, where, model))
    holders = sorted(m for m, q in recorded.items() if m != model and q == port)
    if holders:
        module.fail_json(msg="port %d for %s on %s is already recorded for %s in %s; set model_agent_ports for one "
                             "of them" % (port, model, where, ", ".join(holders), ports_file))

    changed = False
    diff: dict[str, str] = {}
    table = dict(recorded, **{model: port})
    if table != recorded or not os.path.exists(ports_file):
        changed = True
        diff = {"before_header": ports_file, "after_header": ports_file,
                "before": render_ports(recorded) if recorded else "", "after": render_ports(table)}
    created: list[str] = []
    for suffix in p["tokens"]:
        path = os.path.join(agents, "%s.%s" % (model, suffix))
        if not os.path.exists(path):
            created.append(path)
    changed = changed or bool(created)

    if changed and not module.check_mode:
        try:
            os.makedirs(agents, exist_ok=True)
            if diff:
                write_atomic(ports_file, render_ports(table), 0o644)
            for path in created:
                token = "".join(secrets.choice(TOKEN_CHARS) for _ in range(40))
                write_atomic(path, token + "\n", 0o600)
                if p["owner"]:
                    module.set_owner_if_different(path, p["owner"], False)
        except OSError as exc:
            module.fail_json(msg="cannot write the agent's files under %s on %s: %s" % (agents, where, exc))
    result = dict(changed=changed, ansible_facts={"model_agent_port": port}, created_tokens=created)
    if diff and module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
