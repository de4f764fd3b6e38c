"""Policy gates (seed 000's format) and the line-aware YAML reading shared by every policy file.

``policy/gates.yaml``::

    policy_name: credit-risk release gates
    version: 1
    cost_ratio: 5            # false negative : false positive, for expected_cost (seed 003)
    random_seed: 42          # bootstrap seed of the confidence intervals (recorded in the manifest)
    gates:
      - name: Minimum AUC
        metric: run.auc      # a metric logged in the version's MLflow run
        threshold: 0.75
        comparison: ">="     # >=  <=  >  <  ==
        severity: error      # error fails the gate; warning is reported
      - name: Equal opportunity
        metric: fpr_gap      # computed by modelfleet on the version's evaluation set
        group: applicant_group
        threshold: 0.10
        comparison: "<="
        severity: error
        environments: [prod] # optional: only when gating for these environments

A gate without ``environments`` applies to every environment: that is how one file holds a set per environment.
Metrics are either computed by modelfleet (:data:`METRICS`) or ``run.<name>``: a metric of the version's MLflow
run. A bad file is a :class:`PolicyError` naming the file, the line and the fix, before anything is evaluated.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.core.errors import PolicyError

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
}
_COMPARISON_WORDS = {
    "greater_than": ">", "greater_than_or_equal": ">=", "less_than": "<", "less_than_or_equal": "<=",
    "gt": ">", "ge": ">=", "gte": ">=", "lt": "<", "le": "<=", "lte": "<=", "eq": "==", "equal": "==",
    "equals": "==", "=": "==",
}
SEVERITIES = ("error", "warning")
RUN_PREFIX = "run."
_ENV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    per_group: bool = False  # one value per group (the gate checks each)
    needs_group: bool = False  # computed across the groups of a column


METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("auc", "ROC AUC of the positive-class probability"),
    MetricSpec("accuracy", "share of correct decisions"),
    MetricSpec("ece", "expected calibration error (10 equal-width bins)"),
    MetricSpec("expected_cost", "mean cost per decision at the policy's cost_ratio (FN : FP)"),
    MetricSpec("flag_rate", "share of rows flagged positive"),
    MetricSpec("fpr", "false-positive rate of each group", per_group=True, needs_group=True),
    MetricSpec("tpr", "true-positive rate of each group", per_group=True, needs_group=True),
    MetricSpec("positive_rate", "flag (selection) rate of each group", per_group=True, needs_group=True),
    MetricSpec("fpr_gap", "largest FPR difference between groups (equal opportunity)", needs_group=True),
    MetricSpec("tpr_gap", "largest TPR difference between groups", needs_group=True),
    MetricSpec("demographic_parity_difference", "largest flag-rate difference between groups", needs_group=True),
)}


# -- line-aware YAML ------------------------------------------------------------------------------------------


class LineDict(dict[Any, Any]):
    """A YAML mapping that remembers its own line and each key's line (1-based)."""

    line: int = 0
    lines: dict[Any, int]


class LineList(list[Any]):
    """A YAML sequence that remembers its own line and each item's line (1-based)."""

    line: int = 0
    lines: list[int]


def _loader(path: Path) -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LineDict:
        loader.flatten_mapping(node)
        out = LineDict()
        out.line = node.start_mark.line + 1
        out.lines = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in out:
                raise PolicyError(f"{path}:{line}: key {key!r} appears twice (first on line {out.lines[key]})",
                                  hint=f"remove one of the two {key!r} entries")
            out[key] = loader.construct_object(value_node, deep=True)
            out.lines[key] = line
        return out

    def sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> LineList:
        out = LineList(loader.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.lines = [child.start_mark.line + 1 for child in node.value]
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return Loader


@dataclass(frozen=True)
class PolicyText:
    """A policy file's parsed content, its bytes' sha256 and its path (for messages)."""

    path: Path
    data: LineDict
    sha256: str


def read_policy_file(path: Path, what: str, example: str) -> PolicyText:
    """Read a YAML policy file whose top level is a mapping; PolicyError names the file, line and fix."""
    import yaml

    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"{path}: {what} not found",
                          hint=f"create it (see docs/governance.md) or set governance.policy_dir; e.g. {example}"
                          ) from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_loader(path))
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not UTF-8 text", hint="save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"{path}{line}: not valid YAML: {problem}",
                          hint="fix the YAML syntax on that line (indentation, quotes, colons)") from None
    if not isinstance(data, LineDict):
        raise PolicyError(f"{path}:1: the {what} must be a YAML mapping at the top level",
                          hint=f"start the file with keys, e.g. {example}")
    return PolicyText(path, data, hashlib.sha256(raw).hexdigest())


def where(doc: PolicyText, node: LineDict | LineList, key: Any = None) -> str:
    """``file:line`` of ``key`` in ``node`` (or of the node itself)."""
    line = node.line
    if key is not None:
        if isinstance(node, LineDict):
            line = node.lines.get(key, node.line)
        elif isinstance(key, int) and key < len(node.lines):
            line = node.lines[key]
    return f"{doc.path}:{line}"


def check_keys(doc: PolicyText, node: LineDict, allowed: tuple[str, ...], required: tuple[str, ...],
               what: str) -> None:
    for key in node:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            raise PolicyError(f"{where(doc, node, key)}: {what}: unknown key {key!r}",
                              hint=(f"did you mean {close[0]!r}? " if close else "")
                              + f"allowed keys: {', '.join(allowed)}")
    for key in required:
        if key not in node:
            raise PolicyError(f"{where(doc, node)}: {what}: missing {key!r}",
                              hint=f"add {key}: ... (required keys: {', '.join(required)})")


def number(doc: PolicyText, node: LineDict, key: str, what: str, *, positive: bool = False) -> float:
    value = node[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PolicyError(f"{where(doc, node, key)}: {what}: {key} = {value!r} is not a number",
                          hint=f"write {key} as a number, e.g. {key}: 0.1")
    if positive and value <= 0:
        raise PolicyError(f"{where(doc, node, key)}: {what}: {key} = {value!r} must be greater than 0",
                          hint=f"set {key} to a positive number")
    return float(value)


def text(doc: PolicyText, node: LineDict, key: str, what: str) -> str:
    value = node[key]
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{where(doc, node, key)}: {what}: {key} must be a non-empty string, not {value!r}",
                          hint=f"write {key}: <text>")
    return value.strip()


def environment_names(doc: PolicyText, node: LineDict, key: str, what: str) -> tuple[str, ...]:
    value = node[key]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and _ENV_RE.match(v) for v in items):
        raise PolicyError(f"{where(doc, node, key)}: {what}: {key} must be a list of environment names",
                          hint=f"write {key}: [prod] (letters, digits, '.', '_', '-')")
    return tuple(items)


def check_environment_name(name: str) -> str:
    from modelfleet.core.errors import UsageError

    if not _ENV_RE.match(name or ""):
        raise UsageError(f"environment {name!r} is not a valid name",
                         hint="use letters, digits, '.', '_' and '-', e.g. --env prod")
    return name


# -- gates ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    name: str
    metric: str
    threshold: float
    comparison: str
    severity: str
    environments: tuple[str, ...] = ()
    group: str | None = None
    line: int = 0

    @property
    def from_run(self) -> bool:
        return self.metric.startswith(RUN_PREFIX)

    @property
    def spec(self) -> MetricSpec | None:
        return None if self.from_run else METRICS[self.metric]

    def applies_to(self, environment: str | None) -> bool:
        return not self.environments or (environment is not None and environment in self.environments)

    def passes(self, value: float) -> bool:
        return not math.isnan(value) and COMPARISONS[self.comparison](value, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "threshold": self.threshold,
                "comparison": self.comparison, "severity": self.severity, "environments": list(self.environments),
                "group": self.group}


@dataclass(frozen=True)
class GatePolicy:
    path: Path
    sha256: str
    name: str
    gates: tuple[Gate, ...]
    cost_ratio: float = 5.0
    random_seed: int = 42
    version: str = "1"
    environments: tuple[str, ...] = field(default=())  # every environment some gate names

    def for_environment(self, environment: str | None) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if g.applies_to(environment))


GATES_EXAMPLE = "gates: [{name: Minimum AUC, metric: run.auc, threshold: 0.75, comparison: '>=', severity: error}]"
_GATE_KEYS = ("name", "metric", "threshold", "comparison", "severity", "environments", "group")
_TOP_KEYS = ("policy_name", "version", "cost_ratio", "random_seed", "gates")


def _metric_hint(metric: str) -> str:
    close = difflib.get_close_matches(metric, list(METRICS), n=1, cutoff=0.5)
    return ((f"did you mean {close[0]!r}? " if close else "")
            + f"use one of {', '.join(METRICS)}, or run.<name> for a metric logged in the version's MLflow run")


def _gate(doc: PolicyText, node: Any, index: int, gates: LineList) -> Gate:
    if not isinstance(node, LineDict):
        raise PolicyError(f"{where(doc, gates, index)}: gate {index + 1} must be a mapping",
                          hint="write each gate as - name: ..., metric: ..., threshold: ..., comparison: ..., "
                          "severity: ...")
    what = f"gate {node.get('name', index + 1)!r}"
    check_keys(doc, node, _GATE_KEYS, ("name", "metric", "threshold", "comparison", "severity"), what)
    name = text(doc, node, "name", what)
    metric = text(doc, node, "metric", what)
    if metric.startswith(RUN_PREFIX):
        if len(metric) == len(RUN_PREFIX):
            raise PolicyError(f"{where(doc, node, 'metric')}: {what}: 'run.' names no metric",
                              hint="write run.<name>, e.g. run.auc")
    elif metric not in METRICS:
        raise PolicyError(f"{where(doc, node, 'metric')}: {what}: unknown metric {metric!r}", hint=_metric_hint(metric))
    comparison = node["comparison"]
    if comparison not in COMPARISONS:
        word = _COMPARISON_WORDS.get(str(comparison).strip().lower())
        raise PolicyError(f"{where(doc, node, 'comparison')}: {what}: unknown comparison {comparison!r}",
                          hint=(f"write comparison: \"{word}\"" if word else
                                f"use one of {', '.join(repr(c) for c in COMPARISONS)} (quoted in YAML)"))
    severity = node["severity"]
    if severity not in SEVERITIES:
        raise PolicyError(f"{where(doc, node, 'severity')}: {what}: severity {severity!r} is not error or warning",
                          hint="write severity: error (fails the gate) or severity: warning (reported only)")
    threshold = number(doc, node, "threshold", what)
    group = None
    if "group" in node:
        group = text(doc, node, "group", what)
        if metric.startswith(RUN_PREFIX) or not METRICS[metric].needs_group:
            raise PolicyError(f"{where(doc, node, 'group')}: {what}: metric {metric!r} is not computed per group",
                              hint="remove group:, or use a group metric such as fpr_gap or fpr")
    environments = environment_names(doc, node, "environments", what) if "environments" in node else ()
    return Gate(name=name, metric=metric, threshold=threshold, comparison=str(comparison), severity=str(severity),
                environments=environments, group=group, line=node.line)


def load_gate_policy(path: Path) -> GatePolicy:
    """Read and check a gates file; every problem is a PolicyError with ``file:line`` and the fix."""
    doc = read_policy_file(path, "gates policy", GATES_EXAMPLE)
    top = doc.data
    check_keys(doc, top, _TOP_KEYS, ("gates",), "gates policy")
    gates_node = top["gates"]
    if not isinstance(gates_node, LineList) or not gates_node:
        raise PolicyError(f"{where(doc, top, 'gates')}: gates must be a non-empty list", hint=GATES_EXAMPLE)
    gates = [_gate(doc, node, i, gates_node) for i, node in enumerate(gates_node)]
    seen: dict[str, int] = {}
    for gate in gates:
        if gate.name in seen:
            raise PolicyError(f"{doc.path}:{gate.line}: gate name {gate.name!r} is used twice (also line "
                              f"{seen[gate.name]})", hint="give every gate its own name")
        seen[gate.name] = gate.line
    cost_ratio = number(doc, top, "cost_ratio", "gates policy", positive=True) if "cost_ratio" in top else 5.0
    seed = 42
    if "random_seed" in top:
        raw = top["random_seed"]
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise PolicyError(f"{where(doc, top, 'random_seed')}: random_seed must be a whole number >= 0",
                              hint="write random_seed: 42")
        seed = raw
    envs = sorted({e for g in gates for e in g.environments})
    return GatePolicy(path=doc.path, sha256=doc.sha256, name=str(top.get("policy_name") or doc.path.name),
                      gates=tuple(gates), cost_ratio=cost_ratio, random_seed=seed, version=str(top.get("version", 1)),
                      environments=tuple(envs))


def metric_catalog() -> Mapping[str, str]:
    """Metric name -> description (for --help and error messages)."""
    return {name: spec.description for name, spec in METRICS.items()}
