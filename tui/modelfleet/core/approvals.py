"""Signed approval records and the rule that decides whether they clear a deploy. Standard library + cryptography.

Nodes import this module (``python -m modelfleet.governance_verify``), so it needs nothing else: no YAML, no
database, no MLflow. The controller builds the same records (``core/governance.py``) and checks them with the same
functions, so there is one rule for "cleared" on both sides.

Records (each a JSON object, signed as a whole)::

    request     {"format": "modelfleet-approval-request/1", "id", "model", "version", "digest", "environment",
                 "thresholds_sha256", "reason", "by", "key_id", "issued_at"}
    approval    {"format": "modelfleet-approval/1", "request_id", "model", "version", "digest", "environment",
                 "thresholds_sha256", "decision": "approve" | "reject", "reason", "by", "key_id",
                 "issued_at", "expires_at", "gate": {"policy_sha256", "verdict"}}
    break-glass {"format": "modelfleet-break-glass/1", "id", "model", "version", "digest", "environment",
                 "thresholds_sha256", "reason", "by", "key_id", "issued_at", "expires_at"}

Signature scheme: ed25519 over the UTF-8 bytes of ``canonical_json(record)`` (keys sorted, no spaces, non-ASCII
kept), base64 text; ``key_id`` is the first 16 hex digits of sha256 over the raw public key (as release keys).
A record is valid when the key named by ``key_id`` belongs to the person named by ``by`` in the trust file and
the signature verifies with it. An approval binds the artifact digest, the environment and the sha256 of the
release's per-group thresholds (``null`` when it has none): a new version or new thresholds need new approvals.

Trust file (``modelfleet-trust/1``, compiled from policy/roles.yaml and policy/approvals.yaml; nodes keep a copy)::

    {"format": "modelfleet-trust/1", "people": [{"name", "roles": [...], "public_key": "ed25519:<base64>"}],
     "environments": {"prod": {"require": ["manager", "qa"], "ttl_s": 86400}}, "default_ttl_s", "break_glass_ttl_s"}

Clearance (what travels with a deploy)::

    {"format": "modelfleet-clearance/1", "environment", "model", "version", "digest", "thresholds_sha256",
     "mode": "approvals" | "break_glass" | "unprotected", "request": {"record", "signature"} | null,
     "approvals": [{"record", "signature"}, ...], "break_glass": {"record", "signature"} | null}

A clearance file holds one such document or a JSON list of them, one per environment
(:func:`select_clearance` picks the one for the verifier's environment).

Rule (:func:`evaluate`): an environment with no requirement is unprotected. Otherwise the request must be signed by
a person with the ``data_scientist`` role; each approval must be signed by its ``by`` person, name the request and
its exact subject, decide ``approve``, attest a passed gate, be issued no later than ``now`` (plus
:data:`CLOCK_SKEW_S`) and expire after it; the requester's own approval never counts and a person counts once,
whatever roles they hold; the required roles are filled by distinct people (a matching, so someone who is both
manager and QA fills one of the two). A valid break-glass record signed by a person with the ``ops`` role clears
the deploy on its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelfleet.core.errors import GovernanceError
from modelfleet.core.signing import key_id

REQUEST_FORMAT = "modelfleet-approval-request/1"
APPROVAL_FORMAT = "modelfleet-approval/1"
BREAK_GLASS_FORMAT = "modelfleet-break-glass/1"
CLEARANCE_FORMAT = "modelfleet-clearance/1"
TRUST_FORMAT = "modelfleet-trust/1"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
KEY_PREFIX = "ed25519:"
CLOCK_SKEW_S = 300  # a record issued up to 5 minutes "in the future" (clocks differ) is accepted

ROLES = ("data_scientist", "manager", "qa", "ops")
REQUEST_ROLES = ("data_scientist",)
APPROVER_ROLES = ("manager", "qa")
DEPLOY_ROLES = ("ops",)
BREAK_GLASS_ROLES = ("ops",)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# -- keys and canonical bytes ----------------------------------------------------------------------------------


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """The one-line form ``ed25519:<base64 of the raw 32-byte key>`` used in roles.yaml and trust files."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from ``ed25519:<base64>`` or a PEM block; ValueError says what is wrong."""
    text = text.strip()
    if text.startswith(KEY_PREFIX):
        try:
            raw = base64.b64decode(text[len(KEY_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the text after 'ed25519:' is not base64") from None
        if len(raw) != 32:
            raise ValueError(f"an ed25519 public key has 32 bytes, this one {len(raw)}")
        return Ed25519PublicKey.from_public_bytes(raw)
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM block is not an ed25519 public key")
        return key
    raise ValueError("expected 'ed25519:<base64>' or a PEM public key block")


def thresholds_digest(table: Mapping[str, Any] | None) -> str | None:
    """What approvals bind of a release's per-group thresholds: sha256 of their canonical JSON (None: none).

    ``table`` is the thresholds object as a manifest carries it (``GroupThresholds.to_dict()``)."""
    if table is None:
        return None
    return hashlib.sha256(canonical_json(dict(table)).encode("utf-8")).hexdigest()


def format_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: Any, what: str) -> datetime:
    try:
        return datetime.strptime(str(text), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise GovernanceError(f"{what}: time {text!r} is not YYYY-MM-DDTHH:MM:SSZ",
                              hint="the record is malformed; create it again") from None


# -- trust -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    name: str
    roles: tuple[str, ...]
    public_key: Ed25519PublicKey = field(compare=False)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def has(self, roles: Iterable[str]) -> bool:
        return bool(set(self.roles) & set(roles))


@dataclass(frozen=True)
class Requirement:
    """What a protected environment needs: one approval per listed role (by distinct people), valid ``ttl_s``."""

    environment: str
    require: tuple[str, ...]
    ttl_s: int


@dataclass(frozen=True)
class Trust:
    """Who is who (people, roles, public keys) and what each environment requires."""

    people: tuple[Person, ...]
    environments: dict[str, Requirement]
    default_ttl_s: int = 72 * 3600
    break_glass_ttl_s: int = 4 * 3600
    #: people of roles.yaml left out because their public_key_file does not exist (yet): "name: why (fix)"
    left_out: tuple[str, ...] = ()

    def by_key_id(self, kid: str) -> Person | None:
        return next((p for p in self.people if p.key_id == kid), None)

    def person(self, name: str) -> Person | None:
        return next((p for p in self.people if p.name == name), None)

    def requirement(self, environment: str) -> Requirement | None:
        """None when ``environment`` is unprotected (no approvals required)."""
        req = self.environments.get(environment)
        return req if req is not None and req.require else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TRUST_FORMAT,
            "people": [{"name": p.name, "roles": list(p.roles), "public_key": public_key_text(p.public_key)}
                       for p in self.people],
            "environments": {e: {"require": list(r.require), "ttl_s": r.ttl_s}
                             for e, r in sorted(self.environments.items())},
            "default_ttl_s": self.default_ttl_s, "break_glass_ttl_s": self.break_glass_ttl_s,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, raw: Any) -> Trust:
        """Parse a trust document; GovernanceError names what is wrong."""
        def bad(what: str) -> GovernanceError:
            return GovernanceError(f"trust file: {what}",
                                   hint="compile it again on the controller (modelfleet trust -o FILE) and provision "
                                   "the node again")

        if not isinstance(raw, Mapping) or raw.get("format") != TRUST_FORMAT:
            raise bad(f"not a {TRUST_FORMAT} document")
        people: list[Person] = []
        for item in raw.get("people") or []:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise bad("a person entry has no name")
            roles = item.get("roles")
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise bad(f"{item['name']}: roles must be a list of names")
            try:
                key = parse_public_key(str(item.get("public_key", "")))
            except ValueError as exc:
                raise bad(f"{item['name']}: {exc}") from None
            people.append(Person(item["name"], tuple(roles), key))
        envs: dict[str, Requirement] = {}
        for name, req in (raw.get("environments") or {}).items():
            if not isinstance(req, Mapping) or not isinstance(req.get("require"), list):
                raise bad(f"environment {name}: require must be a list of roles")
            envs[str(name)] = Requirement(str(name), tuple(str(r) for r in req["require"]),
                                          int(req.get("ttl_s") or raw.get("default_ttl_s") or 72 * 3600))
        return cls(tuple(people), envs, int(raw.get("default_ttl_s") or 72 * 3600),
                   int(raw.get("break_glass_ttl_s") or 4 * 3600))


# -- signed records ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    """A record and its base64 ed25519 signature over ``canonical_json(record)``."""

    record: dict[str, Any]
    signature: str

    @property
    def kind(self) -> str:
        return str(self.record.get("format", ""))

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record, "signature": self.signature}

    @classmethod
    def from_dict(cls, raw: Any, what: str) -> Signed:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("record"), Mapping) \
                or not isinstance(raw.get("signature"), str):
            raise GovernanceError(f"{what} is not a signed record ({{record, signature}})",
                                  hint="pass the records as modelfleet wrote them")
        return cls(dict(raw["record"]), raw["signature"])


def sign_record(private_key: Ed25519PrivateKey, record: Mapping[str, Any]) -> Signed:
    body = dict(record)
    signature = base64.b64encode(private_key.sign(canonical_json(body).encode("utf-8"))).decode("ascii")
    return Signed(body, signature)


def signer(trust: Trust, signed: Signed, what: str) -> Person:
    """The person who signed ``signed``; GovernanceError when the key is unknown, not theirs, or the bytes changed."""
    kid = signed.record.get("key_id")
    claimed = signed.record.get("by")
    person = trust.by_key_id(str(kid)) if isinstance(kid, str) else None
    if person is None:
        raise GovernanceError(f"{what} is signed with key {kid}, which no person in the roles file holds",
                              hint="sign with your own key (governance.identity); add your public key to roles.yaml")
    if claimed != person.name:
        raise GovernanceError(f"{what} claims to be by {claimed!r} but key {kid} belongs to {person.name}",
                              hint="each person signs with their own key")
    try:
        person.public_key.verify(base64.b64decode(signed.signature, validate=True),
                                 canonical_json(signed.record).encode("utf-8"))
    except (InvalidSignature, binascii.Error, ValueError):
        raise GovernanceError(f"{what}: the signature does not verify with {person.name}'s key {kid} (signed by "
                              "another key, or the record was altered after signing)",
                              hint="create the record again with the signer's own key") from None
    return person


# -- subjects and matching ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """What a record is about: one artifact (by digest) with its thresholds, in one environment."""

    model: str
    version: str
    digest: str
    environment: str
    thresholds_sha256: str | None = None

    def __post_init__(self) -> None:
        if not _HEX64.match(self.digest):
            raise GovernanceError(f"digest {self.digest!r} is not a sha256 hex digest", hint="pin the version first")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": str(self.version), "digest": self.digest,
                "environment": self.environment, "thresholds_sha256": self.thresholds_sha256}

    def matches(self, record: Mapping[str, Any]) -> str | None:
        """None when ``record`` is about this subject, else what differs."""
        for key, want in self.to_dict().items():
            if record.get(key) != want:
                return f"{key} {record.get(key)!r} (expected {want!r})"
        return None

    @property
    def label(self) -> str:
        return f"{self.model}/{self.version} ({self.digest[:12]}) for {self.environment}"


def match_roles(required: Sequence[str], people: Sequence[Person]) -> tuple[dict[int, Person], list[str]]:
    """Fill each required role slot with a distinct person holding that role (maximum bipartite matching).

    Returns (slot index -> person, the roles left unfilled)."""
    owner: dict[int, int] = {}  # person index -> slot (Kuhn's augmenting paths)

    def augment(slot: int, seen: set[int]) -> bool:
        for i, person in enumerate(people):
            if required[slot] in person.roles and i not in seen:
                seen.add(i)
                if i not in owner or augment(owner[i], seen):
                    owner[i] = slot
                    return True
        return False

    for slot in range(len(required)):
        augment(slot, set())
    filled = {slot: people[i] for i, slot in owner.items()}
    return filled, [required[s] for s in range(len(required)) if s not in filled]


@dataclass(frozen=True)
class ApprovalState:
    """How far a request's approvals go: who counts, for which role, what is missing and what was set aside."""

    satisfied: bool
    counted: tuple[tuple[str, str], ...]  # (person, role)
    missing_roles: tuple[str, ...]
    set_aside: tuple[str, ...]  # approvals that do not count, with the reason
    rejected_by: str | None = None
    earliest_expiry: datetime | None = None


def evaluate(trust: Trust, request: Signed, decisions: Sequence[Signed], now: datetime) -> ApprovalState:
    """Check ``request`` and the approvals/rejections given for it (see the module docstring for the rule)."""
    record = request.record
    if request.kind != REQUEST_FORMAT:
        raise GovernanceError(f"request record has format {request.kind!r}, not {REQUEST_FORMAT}")
    requester = signer(trust, request, f"request {record.get('id')}")
    if not requester.has(REQUEST_ROLES):
        raise GovernanceError(f"request {record.get('id')} was made by {requester.name}, who has none of the roles "
                              f"{', '.join(REQUEST_ROLES)}", hint="a data scientist requests approval")
    env = str(record.get("environment"))
    requirement = trust.requirement(env)
    subject = Subject(str(record.get("model")), str(record.get("version")), str(record.get("digest")), env,
                      record.get("thresholds_sha256"))
    aside: list[str] = []
    approvers: dict[str, Person] = {}
    expiries: list[datetime] = []
    rejected_by = None
    for signed in decisions:
        rec = signed.record
        what = f"{rec.get('decision', 'decision')} by {rec.get('by')}"
        try:
            if signed.kind != APPROVAL_FORMAT:
                raise GovernanceError(f"{what}: format {signed.kind!r} is not {APPROVAL_FORMAT}")
            person = signer(trust, signed, what)
            if rec.get("request_id") != record.get("id"):
                raise GovernanceError(f"{what}: for request {rec.get('request_id')}, not {record.get('id')}")
            differs = subject.matches(rec)
            if differs:
                raise GovernanceError(f"{what}: for another subject: {differs}")
            if person.name == requester.name:
                raise GovernanceError(f"{what}: the requester's own decision does not count")
            if not person.has(APPROVER_ROLES):
                raise GovernanceError(f"{what}: {person.name} holds none of the roles {', '.join(APPROVER_ROLES)}")
            issued = parse_time(rec.get("issued_at"), what)
            if issued > now + timedelta(seconds=CLOCK_SKEW_S):
                raise GovernanceError(f"{what}: issued in the future ({format_time(issued)})")
            if rec.get("decision") == "reject":
                rejected_by = person.name
                continue
            if rec.get("decision") != "approve":
                raise GovernanceError(f"{what}: decision {rec.get('decision')!r} is not approve or reject")
            expires = parse_time(rec.get("expires_at"), what)
            if expires <= now:
                raise GovernanceError(f"{what}: expired at {format_time(expires)}")
            gate = rec.get("gate")
            if not isinstance(gate, Mapping) or gate.get("verdict") != "passed":
                raise GovernanceError(f"{what}: does not attest a passed gate")
            if person.name in approvers:
                raise GovernanceError(f"{what}: {person.name} already counts once")
        except GovernanceError as exc:
            aside.append(exc.message)
            continue
        approvers[person.name] = person
        expiries.append(expires)
    required = requirement.require if requirement is not None else ()
    filled, missing = match_roles(required, list(approvers.values()))
    counted = tuple((filled[s].name, required[s]) for s in sorted(filled))
    by_name = {p: e for p, e in zip(approvers, expiries, strict=True)}
    earliest = min((by_name[name] for name, _ in counted), default=None)
    return ApprovalState(satisfied=rejected_by is None and not missing, counted=counted, missing_roles=tuple(missing),
                         set_aside=tuple(aside), rejected_by=rejected_by, earliest_expiry=earliest)


def check_break_glass(trust: Trust, signed: Signed, subject: Subject, now: datetime) -> Person:
    """The ops person whose valid break-glass record covers ``subject``; GovernanceError otherwise."""
    what = f"break-glass by {signed.record.get('by')}"
    if signed.kind != BREAK_GLASS_FORMAT:
        raise GovernanceError(f"{what}: format {signed.kind!r} is not {BREAK_GLASS_FORMAT}")
    person = signer(trust, signed, what)
    if not person.has(BREAK_GLASS_ROLES):
        raise GovernanceError(f"{what}: {person.name} holds none of the roles {', '.join(BREAK_GLASS_ROLES)}",
                              hint="only the ops role may break glass")
    differs = subject.matches(signed.record)
    if differs:
        raise GovernanceError(f"{what}: for another subject: {differs}")
    if not str(signed.record.get("reason") or "").strip():
        raise GovernanceError(f"{what}: has no reason")
    if parse_time(signed.record.get("expires_at"), what) <= now:
        raise GovernanceError(f"{what}: expired at {signed.record.get('expires_at')}",
                              hint="break glass again, or get the approvals")
    if parse_time(signed.record.get("issued_at"), what) > now + timedelta(seconds=CLOCK_SKEW_S):
        raise GovernanceError(f"{what}: issued in the future")
    return person


# -- clearance (what a node verifies) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A clearance that verified: how (``approvals`` | ``break_glass`` | ``unprotected``) and by whom."""

    mode: str
    environment: str
    people: tuple[tuple[str, str], ...] = ()  # (person, role)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "mode": self.mode, "environment": self.environment,
                "people": [{"name": n, "role": r} for n, r in self.people]}


def select_clearance(raw: Any, environment: str) -> Mapping[str, Any] | None:
    """The clearance for ``environment`` out of what came with a deploy: one document (returned as it is: the
    signed records inside say which environment it is for), or a list of documents, one per environment (what
    the run pipeline writes when a run spans several protected environments). None when there is none."""
    if isinstance(raw, Mapping):
        return raw or None
    if isinstance(raw, list):
        return next((d for d in raw if isinstance(d, Mapping) and d.get("environment") == environment), None)
    return None


def verify_clearance(trust: Trust, clearance: Mapping[str, Any], *, environment: str, digest: str,
                     thresholds_sha256: str | None, now: datetime) -> Verdict:
    """Does ``clearance`` allow the release ``digest`` (with those thresholds) in ``environment`` now?

    ``environment``, ``digest`` and ``thresholds_sha256`` come from the verifier's own side (the node's configured
    environment, the verified release manifest), never from the clearance. Raises GovernanceError naming why not.
    """
    requirement = trust.requirement(environment)
    if requirement is None:
        return Verdict("unprotected", environment)
    if not isinstance(clearance, Mapping) or not clearance:
        raise GovernanceError(f"{environment} is protected and no {CLEARANCE_FORMAT} document came with the deploy",
                              hint="deploy through modelfleet (it attaches the approvals), or pass the clearance file")
    if clearance.get("format") != CLEARANCE_FORMAT:
        raise GovernanceError(f"{environment} is protected and the clearance that came with the deploy is not a "
                              f"{CLEARANCE_FORMAT} document (format {clearance.get('format')!r})",
                              hint=f"write it with `modelfleet clearance MODEL/VERSION --env {environment} -o "
                                   "clearance.json` and pass it unchanged")
    subject = Subject(str(clearance.get("model")), str(clearance.get("version")), digest, environment,
                      thresholds_sha256)
    if clearance.get("break_glass"):
        person = check_break_glass(trust, Signed.from_dict(clearance["break_glass"], "break-glass record"),
                                   subject, now)
        return Verdict("break_glass", environment, ((person.name, "ops"),))
    if not clearance.get("request"):
        raise GovernanceError(f"{environment} requires approvals ({', '.join(requirement.require)}) and the "
                              "clearance holds no request", hint="modelfleet request MODEL@REF --env " + environment)
    request = Signed.from_dict(clearance["request"], "request")
    differs = subject.matches(request.record)
    if differs:
        raise GovernanceError(f"the approval request is for another release or environment: {differs}",
                              hint=f"request approval for {subject.label}")
    approvals = clearance.get("approvals") or []
    if not isinstance(approvals, list):
        raise GovernanceError(f"the clearance's approvals must be a list of signed records, not "
                              f"{type(approvals).__name__}", hint="pass the clearance as modelfleet clearance wrote it")
    decisions = [Signed.from_dict(a, "approval") for a in approvals]
    state = evaluate(trust, request, decisions, now)
    if state.rejected_by:
        raise GovernanceError(f"{subject.label} was rejected by {state.rejected_by}")
    if not state.satisfied:
        detail = f"; not counted: {'; '.join(state.set_aside)}" if state.set_aside else ""
        raise GovernanceError(f"{subject.label} lacks approval by {', '.join(state.missing_roles)}{detail}",
                              hint="modelfleet approve REQUEST_ID (by a person holding the missing role)",
                              missing=tuple(f"approval by {r}" for r in state.missing_roles))
    return Verdict("approvals", environment, state.counted)
