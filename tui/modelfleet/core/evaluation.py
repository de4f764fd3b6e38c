"""Evaluate a pinned version on its labelled evaluation set, and judge policy gates on the result.

A version carries its evaluation set as a file of its MLflow run, named by version tags:

- ``modelfleet.evaluation_set``: the run artifact (CSV or Parquet) with the model's input columns and the label;
- ``modelfleet.label_column``: the label (1 / True = positive = flagged as high risk);
- ``modelfleet.group_column``: the default group column of group metrics (a gate's ``group:`` overrides it);
- ``modelfleet.thresholds``: per-group thresholds attached by ``modelfleet fairness --attach`` (JSON).

Metrics computed here are the decisions the release will make: with thresholds attached, the thresholds applied
to the positive-class probability (as the agent does); otherwise the model's own ``predict``. ``run.<name>`` gate
metrics come from the version's run as logged. The manifest (:func:`build_manifest`) records what makes a verdict
reproducible: model digest, policy digest, evaluation data digest, thresholds digest, library versions, seed.
"""

from __future__ import annotations

import hashlib
import math
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelfleet.core import fairness
from modelfleet.core.errors import ArtifactError, ModelfleetError
from modelfleet.core.fairness import GroupStats, GroupThresholds
from modelfleet.core.policy import RUN_PREFIX, Gate, GatePolicy

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from modelfleet.core.registry import ModelVersionInfo, PinnedVersion, Registry

EVALUATION_SET_TAG = "modelfleet.evaluation_set"
LABEL_TAG = "modelfleet.label_column"
GROUP_TAG = "modelfleet.group_column"
THRESHOLDS_TAG = "modelfleet.thresholds"
MANIFEST_FORMAT = "modelfleet-gate-manifest/1"
LIBRARIES = ("modelfleet", "numpy", "pandas", "scikit-learn", "scipy", "mlflow", "cloudpickle")


def attached_thresholds(info: ModelVersionInfo | PinnedVersion) -> GroupThresholds | None:
    """The per-group thresholds attached to a version (its ``modelfleet.thresholds`` tag), or None."""
    raw = info.tags.get(THRESHOLDS_TAG)
    if not raw:
        return None
    try:
        return GroupThresholds.from_json(raw)
    except ValueError as exc:
        raise ArtifactError(f"{info.name}/{info.version}: tag {THRESHOLDS_TAG} is not valid: {exc}",
                            hint=f"attach thresholds again: modelfleet fairness {info.name}/{info.version} --attach"
                            ) from None


@dataclass(frozen=True)
class EvaluationSet:
    frame: pd.DataFrame
    label: str
    group: str | None
    artifact: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "sha256": self.sha256, "rows": len(self.frame),
                "label_column": self.label, "group_column": self.group}


def load_evaluation_set(registry: Registry, info: ModelVersionInfo) -> EvaluationSet:
    """The labelled evaluation set registered with the version; ArtifactError says how to register one."""
    import pandas as pd

    rel = info.tags.get(EVALUATION_SET_TAG)
    label = info.tags.get(LABEL_TAG)
    if not rel or not label:
        raise ArtifactError(
            f"{info.name}/{info.version} has no labelled evaluation set (version tags {EVALUATION_SET_TAG} and "
            f"{LABEL_TAG})", hint="log the evaluation data in the version's run and tag the version with its "
            "path and label column (the demo does: modelfleet demo seed)")
    path = registry.run_artifact_path(info, rel, tag=EVALUATION_SET_TAG, what="evaluation set")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for a bad file
        raise ArtifactError(f"{info.name}/{info.version}: evaluation set {rel} cannot be read: {exc}") from None
    if label not in frame.columns:
        raise ArtifactError(f"{info.name}/{info.version}: evaluation set {rel} has no label column {label!r}",
                            hint=f"fix the version tag {LABEL_TAG}")
    return EvaluationSet(frame, label, info.tags.get(GROUP_TAG), rel, digest)


def load_classifier(model_dir: Path) -> Any:
    """The fitted scikit-learn model of an MLflow model directory (needs ``predict_proba`` for most metrics)."""
    import yaml

    try:
        flavors = (yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}).get("flavors") or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ArtifactError(f"{model_dir}/MLmodel cannot be read: {exc}") from None
    if "sklearn" not in flavors:
        raise ArtifactError(f"the model in {model_dir} is not a scikit-learn model",
                            hint="modelfleet evaluates binary classifiers with predict_proba (sklearn flavour)")
    import mlflow.sklearn

    try:
        return mlflow.sklearn.load_model(str(model_dir))
    except Exception as exc:  # MLflow and unpickling raise many types
        raise ArtifactError(f"the model in {model_dir} failed to load: {type(exc).__name__}: {exc}") from None


@dataclass
class Evaluation:
    """A version's decisions on its evaluation set, and the metrics computed from them."""

    data: EvaluationSet
    y: np.ndarray
    proba: np.ndarray
    flags: np.ndarray
    thresholds: GroupThresholds | None
    cost_ratio: float
    seed: int
    _groups: dict[str, dict[str, GroupStats]] = field(default_factory=dict)

    @cached_property
    def scalars(self) -> dict[str, float]:
        from sklearn.metrics import roc_auc_score

        has_both = 0 < int(self.y.sum()) < len(self.y)
        return {
            "auc": float(roc_auc_score(self.y, self.proba)) if has_both else math.nan,
            "accuracy": float(np.mean(self.y == self.flags)),
            "ece": fairness.expected_calibration_error(self.y, self.proba),
            "expected_cost": fairness.expected_cost(self.y, self.flags, self.cost_ratio),
            "flag_rate": float(np.mean(self.flags)),
        }

    def group_stats(self, column: str) -> dict[str, GroupStats]:
        if column not in self._groups:
            if column not in self.data.frame.columns:
                raise KeyError(column)
            self._groups[column] = fairness.group_stats(self.y, self.flags, self.data.frame[column].to_numpy())
        return self._groups[column]

    def gap_interval(self, column: str, metric: str) -> tuple[float, float]:
        rate = "fpr" if metric == "fpr_gap" else "positive_rate"
        return fairness.gap_interval(self.y, self.flags, self.data.frame[column].to_numpy(), seed=self.seed,
                                     rate=rate)


def evaluate(pinned_dir: Path, data: EvaluationSet, thresholds: GroupThresholds | None, *,
             cost_ratio: float, seed: int, model: Any = None) -> Evaluation:
    """Score the evaluation set with the model at ``pinned_dir`` (or ``model``) as the release will decide."""
    model = model if model is not None else load_classifier(pinned_dir)
    frame = data.frame
    inputs = frame.drop(columns=[data.label])
    classes = list(getattr(model, "classes_", []))
    if len(classes) != 2 or not callable(getattr(model, "predict_proba", None)):
        raise ArtifactError(f"the model in {pinned_dir} is not a binary classifier with predict_proba",
                            hint="gates and fairness need the positive-class probability")
    y = _positive(frame[data.label].to_numpy(), classes[1])
    try:
        proba = np.asarray(model.predict_proba(inputs))[:, 1]
        if thresholds is not None:
            flags = fairness.ThresholdedClassifier(model, thresholds).flags(inputs)
        else:
            flags = np.asarray(model.predict(inputs)) == classes[1]
    except Exception as exc:  # the model's own error, named
        raise ArtifactError(f"the model in {pinned_dir} failed on its evaluation set: {type(exc).__name__}: {exc}",
                            hint="the evaluation set must hold the model's input columns") from None
    return Evaluation(data, y, proba.astype(float), np.asarray(flags, dtype=bool), thresholds, cost_ratio, seed)


def _positive(labels: np.ndarray, positive: Any) -> np.ndarray:
    if labels.dtype == bool:
        return labels
    try:
        return np.asarray(labels == positive) | np.asarray(labels.astype(str) == str(positive))
    except (TypeError, ValueError):
        return np.asarray(labels == positive)


# -- gates ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    status: str  # passed | failed | warning (a warning gate that failed) | missing
    value: float | None
    explanation: str
    groups: dict[str, float] = field(default_factory=dict)  # per group value (group metrics)
    failing_groups: tuple[str, ...] = ()
    interval: tuple[float, float] | None = None

    @property
    def blocks(self) -> bool:
        """True when this gate makes the verdict fail (an error gate that failed or could not be computed)."""
        return self.gate.severity == "error" and self.status in ("failed", "missing")

    def to_dict(self) -> dict[str, Any]:
        return {**self.gate.to_dict(), "status": self.status, "value": _num(self.value),
                "explanation": self.explanation, "groups": {k: _num(v) for k, v in self.groups.items()},
                "failing_groups": list(self.failing_groups),
                "interval": [_num(x) for x in self.interval] if self.interval else None}


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 6)


@dataclass(frozen=True)
class GateReport:
    model: str
    version: str
    digest: str
    environment: str | None
    policy: GatePolicy
    results: tuple[GateResult, ...]
    thresholds_sha256: str | None
    evaluation_sha256: str | None

    @property
    def passed(self) -> bool:
        return not any(r.blocks for r in self.results)

    @property
    def verdict(self) -> str:
        return "passed" if self.passed else "failed"

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if r.blocks)

    @property
    def warnings(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if r.status == "warning")


def _distance(gate: Gate, value: float) -> str:
    diff = value - gate.threshold
    if gate.comparison in (">=", ">"):
        return f"short by {-diff:.4g}"
    if gate.comparison in ("<=", "<"):
        return f"over by {diff:.4g}"
    return f"off by {abs(diff):.4g}"


def _judge(gate: Gate, value: float, explanation: str, **extra: Any) -> GateResult:
    ok = gate.passes(value)
    status = "passed" if ok else ("failed" if gate.severity == "error" else "warning")
    text = f"{gate.metric} = {value:.4g} {'meets' if ok else 'fails'} {gate.comparison} {gate.threshold:g}"
    if not ok:
        text += f" ({_distance(gate, value)})"
    return GateResult(gate, status, value, text + (f"; {explanation}" if explanation else ""), **extra)


def _missing(gate: Gate, why: str) -> GateResult:
    return GateResult(gate, "missing" if gate.severity == "error" else "warning", None, why)


def judge_gate(gate: Gate, evaluation: Evaluation | None, run_metrics: dict[str, float], run_id: str | None,
               default_group: str | None, evaluation_error: str | None = None) -> GateResult:
    """One gate's result; a metric that cannot be had is ``missing`` (and blocks when the gate is an error)."""
    if gate.metric.startswith(RUN_PREFIX):
        name = gate.metric[len(RUN_PREFIX):]
        if name not in run_metrics:
            return _missing(gate, f"metric {name!r} is not logged in the version's run {run_id or '(none)'}")
        return _judge(gate, float(run_metrics[name]), f"from MLflow run {run_id}")
    if evaluation is None:
        return _missing(gate, f"{gate.metric} needs the evaluation set: {evaluation_error}")
    spec = gate.spec
    assert spec is not None
    if not spec.needs_group:
        value = evaluation.scalars[gate.metric]
        if math.isnan(value):
            return _missing(gate, f"{gate.metric} cannot be computed on this evaluation set")
        return _judge(gate, value, "")
    column = gate.group or default_group
    if not column:
        return _missing(gate, f"{gate.metric} needs a group column: set group: in the gate or the version tag "
                        f"{GROUP_TAG}")
    try:
        stats = evaluation.group_stats(column)
    except KeyError:
        return _missing(gate, f"the evaluation set has no column {column!r}")
    if spec.per_group:
        rates = {g: getattr(s, gate.metric) for g, s in stats.items()}
        values = {g: r.value for g, r in rates.items() if not math.isnan(r.value)}
        failing = tuple(g for g, v in values.items() if not gate.passes(v))
        worst = max(values.values(), default=math.nan) if gate.comparison in ("<=", "<") else \
            min(values.values(), default=math.nan)
        parts = [f"{g} {rates[g].value:.3f} (95% CI {rates[g].low:.3f}-{rates[g].high:.3f}, n={rates[g].n})"
                 for g in (failing or tuple(values))]
        label = "failing groups" if failing else "groups"
        result = _judge(gate, worst, f"{label} of {column}: " + ", ".join(parts), groups=values,
                        failing_groups=failing)
        return result
    gap = {"fpr_gap": fairness.fpr_gap, "tpr_gap": fairness.tpr_gap,
           "demographic_parity_difference": fairness.demographic_parity_difference}[gate.metric](stats)
    low, high = evaluation.gap_interval(column, gate.metric) if gate.metric != "tpr_gap" else (math.nan, math.nan)
    interval = None if math.isnan(low) else (low, high)
    per_group = {"fpr_gap": "fpr", "tpr_gap": "tpr", "demographic_parity_difference": "positive_rate"}[gate.metric]
    values = {g: getattr(s, per_group).value for g, s in stats.items()}
    ci = f" (bootstrap 95% CI {low:.3f}-{high:.3f}, seed {evaluation.seed})" if interval else ""
    failing = tuple(g for g in (gap.high_group, gap.low_group) if g) if not gate.passes(gap.value) else ()
    return _judge(gate, gap.value, f"{per_group} by {column}: {gap.describe()}{ci}", groups=values,
                  failing_groups=failing, interval=interval)


def judge(policy: GatePolicy, environment: str | None, info: ModelVersionInfo, pinned: PinnedVersion,
          evaluation: Evaluation | None, evaluation_error: str | None = None) -> GateReport:
    default_group = info.tags.get(GROUP_TAG)
    results = tuple(judge_gate(g, evaluation, info.metrics, info.run_id, default_group, evaluation_error)
                    for g in policy.for_environment(environment))
    thresholds = evaluation.thresholds if evaluation is not None else attached_thresholds(info)
    return GateReport(pinned.name, str(pinned.version), pinned.digest, environment, policy, results,
                      thresholds.sha256 if thresholds else None,
                      evaluation.data.sha256 if evaluation is not None else None)


def needs_evaluation(policy: GatePolicy, environment: str | None) -> bool:
    return any(not g.from_run for g in policy.for_environment(environment))


# -- manifest -------------------------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_manifest(report: GateReport, pinned: PinnedVersion, evaluation: Evaluation | None,
                   now: datetime | None = None) -> dict[str, Any]:
    """Everything that makes the verdict reproducible (seed 000's manifest), plus the verdict itself."""
    policy = report.policy
    thresholds = evaluation.thresholds if evaluation is not None else None
    return {
        "format": MANIFEST_FORMAT,
        "evaluated_at": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": report.model, "version": report.version, "ref": pinned.ref, "digest": report.digest,
        "run_id": pinned.run_id, "registry": pinned.registry_uri, "environment": report.environment,
        "policy": {"path": str(policy.path), "name": policy.name, "version": policy.version, "sha256": policy.sha256,
                   "cost_ratio": policy.cost_ratio},
        "evaluation_data": evaluation.data.to_dict() if evaluation is not None else None,
        "thresholds": thresholds.to_dict() if thresholds else None,
        "thresholds_sha256": report.thresholds_sha256,
        "random_seed": policy.random_seed,
        "libraries": library_versions(),
        "platform": {"system": platform.system(), "machine": platform.machine()},
        "verdict": report.verdict,
        "gates": [r.to_dict() for r in report.results],
    }


def evaluation_or_reason(registry: Registry, info: ModelVersionInfo, pinned: PinnedVersion,
                         thresholds: GroupThresholds | None, policy: GatePolicy,
                         ) -> tuple[Evaluation | None, str | None]:
    """The evaluation, or (None, why not) when the version has no usable evaluation set or model."""
    try:
        data = load_evaluation_set(registry, info)
        return evaluate(pinned.path, data, thresholds, cost_ratio=policy.cost_ratio, seed=policy.random_seed), None
    except ModelfleetError as exc:
        return None, exc.message
