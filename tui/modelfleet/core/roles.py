"""``policy/roles.yaml`` (people, roles, public keys) and ``policy/approvals.yaml`` (what each environment needs).

roles.yaml::

    people:
      - name: mona
        roles: [manager]
        public_key: ed25519:3q2+7w...        # the line `modelfleet identity new` prints
      - name: quinn
        roles: [qa]
        public_key_file: keys/quinn.pub      # or a file (relative to this file): the same line, or PEM
      - name: dana
        roles: [data_scientist]
        public_key_file: "{state_dir}/demo/identities/dana.pub"   # {state_dir}: the project's paths.state_dir

Roles: ``data_scientist`` requests approval, ``manager`` and ``qa`` approve, ``ops`` deploys and may break glass.
A person may hold several roles; they still count once.

approvals.yaml::

    default_ttl: 72h          # how long an approval stays valid (s, m, h, d)
    break_glass_ttl: 4h
    environments:
      prod:
        require: [manager, qa]   # one approval per role, by distinct people, none by the requester
        ttl: 24h
      staging:
        require: []              # unprotected

An environment that is not listed, or lists no roles, is unprotected. Both files compile into one
:class:`~modelfleet.core.approvals.Trust` (what nodes verify against). A policy folder without approvals.yaml
protects no environment (:func:`load_enforced_trust`: governance is not set up in that project).
"""

from __future__ import annotations

import re
from pathlib import Path

from modelfleet.core.approvals import APPROVER_ROLES, ROLES, Person, Requirement, Trust, parse_public_key
from modelfleet.core.errors import PolicyError
from modelfleet.core.policy import LineDict, LineList, PolicyText, check_keys, read_policy_file, text, where

ROLES_FILE = "roles.yaml"
APPROVALS_FILE = "approvals.yaml"
GATES_FILE = "gates.yaml"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_DURATION_RE = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
ROLES_EXAMPLE = "people: [{name: mona, roles: [manager], public_key: 'ed25519:...'}]"
APPROVALS_EXAMPLE = "environments: {prod: {require: [manager, qa]}}"


STATE_DIR_MARK = "{state_dir}"


class _MissingKey(Exception):
    """A person's public_key_file does not exist: :func:`load_trust` leaves them out and says so."""


def _person(doc: PolicyText, node: object, index: int, people: LineList, state_dir: Path | None) -> Person:
    if not isinstance(node, LineDict):
        raise PolicyError(f"{where(doc, people, index)}: person {index + 1} must be a mapping", hint=ROLES_EXAMPLE)
    what = f"person {node.get('name', index + 1)!r}"
    check_keys(doc, node, ("name", "roles", "public_key", "public_key_file"), ("name", "roles"), what)
    name = text(doc, node, "name", what)
    if not _NAME_RE.match(name):
        raise PolicyError(f"{where(doc, node, 'name')}: {what}: name must be lower-case letters, digits, . _ -",
                          hint="use a short login-like name, e.g. mona")
    roles = node["roles"]
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not roles:
        raise PolicyError(f"{where(doc, node, 'roles')}: {what}: roles must be a non-empty list",
                          hint=f"write roles: [{ROLES[1]}]; roles are {', '.join(ROLES)}")
    for role in roles:
        if role not in ROLES:
            raise PolicyError(f"{where(doc, node, 'roles')}: {what}: unknown role {role!r}",
                              hint=f"roles are {', '.join(ROLES)}")
    if ("public_key" in node) == ("public_key_file" in node):
        raise PolicyError(f"{where(doc, node)}: {what}: give exactly one of public_key and public_key_file",
                          hint="paste the line `modelfleet identity new` printed as public_key: ...")
    if "public_key" in node:
        key_text, origin = text(doc, node, "public_key", what), where(doc, node, "public_key")
    else:
        origin = where(doc, node, "public_key_file")
        name_text = text(doc, node, "public_key_file", what)
        if name_text.startswith(STATE_DIR_MARK):
            if state_dir is None:
                raise PolicyError(f"{origin}: {what}: public_key_file starts with {STATE_DIR_MARK} but no state "
                                  "folder is known here", hint="write the path relative to the roles file")
            name_text = str(state_dir) + name_text[len(STATE_DIR_MARK):]
        path = (doc.path.parent / name_text).resolve()
        if not path.exists():
            # Fail closed, and do not stop a project that has not made this person's key yet (the demo's are made
            # by `modelfleet demo seed`): the person is left out of the trust, so nobody can sign as them.
            raise _MissingKey(f"{what} left out: {origin}: no public_key_file {path} (create it, e.g. the demo's "
                              "with modelfleet demo seed, or use public_key: ed25519:...)")
        try:
            key_text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not ASCII text"
            raise PolicyError(f"{origin}: {what}: cannot read public_key_file {path}: {reason}",
                              hint="create it (the demo's: modelfleet demo seed) or use public_key: ed25519:..."
                              ) from None
    try:
        key = parse_public_key(key_text)
    except ValueError as exc:
        raise PolicyError(f"{origin}: {what}: bad public key: {exc}",
                          hint="paste the line `modelfleet identity new` printed (ed25519:<base64>)") from None
    return Person(name, tuple(dict.fromkeys(str(r) for r in roles)), key)


def parse_duration(doc: PolicyText, node: LineDict, key: str, what: str) -> int:
    raw = node[key]
    match = _DURATION_RE.match(str(raw).strip()) if not isinstance(raw, bool) else None
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if seconds <= 0:
        raise PolicyError(f"{where(doc, node, key)}: {what}: {key} = {raw!r} is not a positive duration",
                          hint=f"write {key}: 24h (units s, m, h, d)")
    return seconds


def _requirements(doc: PolicyText, default_ttl: int) -> dict[str, Requirement]:
    envs = doc.data.get("environments", LineDict())
    if not isinstance(envs, LineDict):
        raise PolicyError(f"{where(doc, doc.data, 'environments')}: environments must be a mapping of name: "
                          "{require: [...]}", hint=APPROVALS_EXAMPLE)
    out: dict[str, Requirement] = {}
    for env, node in envs.items():
        what = f"environment {env!r}"
        if not isinstance(node, LineDict):
            raise PolicyError(f"{where(doc, envs, env)}: {what} must be a mapping with require: [...]",
                              hint=APPROVALS_EXAMPLE)
        check_keys(doc, node, ("require", "ttl"), ("require",), what)
        require = node["require"]
        if not isinstance(require, list) or not all(isinstance(r, str) for r in require):
            raise PolicyError(f"{where(doc, node, 'require')}: {what}: require must be a list of roles",
                              hint="write require: [manager, qa] (or [] for an unprotected environment)")
        for role in require:
            if role not in APPROVER_ROLES:
                raise PolicyError(f"{where(doc, node, 'require')}: {what}: {role!r} cannot approve",
                                  hint=f"approving roles are {', '.join(APPROVER_ROLES)}")
        ttl = parse_duration(doc, node, "ttl", what) if "ttl" in node else default_ttl
        out[str(env)] = Requirement(str(env), tuple(require), ttl)
    return out


def load_enforced_trust(policy_dir: Path, *, state_dir: Path | None = None) -> Trust:
    """What deploys are checked against: :func:`load_trust`, or, when ``policy_dir`` holds no approvals.yaml, a
    Trust that protects no environment (a project that has not set governance up deploys as before)."""
    if not (Path(policy_dir) / APPROVALS_FILE).exists():
        return Trust((), {})
    return load_trust(policy_dir, state_dir=state_dir)


def load_trust(policy_dir: Path, *, state_dir: Path | None = None) -> Trust:
    """roles.yaml + approvals.yaml of ``policy_dir`` as one Trust; PolicyError names the file, line and fix.

    ``state_dir`` replaces a leading ``{state_dir}`` in a ``public_key_file`` (the demo identities live there)."""
    roles = read_policy_file(Path(policy_dir) / ROLES_FILE, "roles file", ROLES_EXAMPLE)
    check_keys(roles, roles.data, ("people",), ("people",), "roles file")
    people_node = roles.data["people"]
    if not isinstance(people_node, LineList):
        raise PolicyError(f"{where(roles, roles.data, 'people')}: people must be a list", hint=ROLES_EXAMPLE)
    people: list[Person] = []
    left_out: list[str] = []
    for i, node in enumerate(people_node):
        try:
            people.append(_person(roles, node, i, people_node, state_dir))
        except _MissingKey as missing:
            left_out.append(str(missing))
    seen: dict[str, Person] = {}
    for i, person in enumerate(people):
        other = seen.get(person.name) or next((p for p in seen.values() if p.key_id == person.key_id), None)
        if other is not None:
            same = "name" if other.name == person.name else f"public key as {other.name}"
            raise PolicyError(f"{where(roles, people_node, i)}: person {person.name!r} has the same {same}",
                              hint="every person has their own name and their own key")
        seen[person.name] = person
    approvals = read_policy_file(Path(policy_dir) / APPROVALS_FILE, "approvals policy", APPROVALS_EXAMPLE)
    check_keys(approvals, approvals.data, ("default_ttl", "break_glass_ttl", "environments"), (), "approvals policy")
    default_ttl = (parse_duration(approvals, approvals.data, "default_ttl", "approvals policy")
                   if "default_ttl" in approvals.data else 72 * 3600)
    glass_ttl = (parse_duration(approvals, approvals.data, "break_glass_ttl", "approvals policy")
                 if "break_glass_ttl" in approvals.data else 4 * 3600)
    return Trust(tuple(people), _requirements(approvals, default_ttl), default_ttl, glass_ttl, tuple(left_out))
