"""What the monitoring loop decides with: thresholds, tests, SLOs and the action, per model and per feature.

Defaults come from ``[monitor]`` (and the SLO budgets from ``[console] slo_*_ms``); any model may override them
in the policy file (``monitor.policy_file``, default ``policy/monitoring.yaml``) or in ``[monitor.models.<model>]``
tables of modelfleet.toml (the file's entries win over the table's, key by key)::

    models:
      credit-risk:
        alpha: 0.005                 # significance level of every p-value
        min_rows: 30                 # fewer live rows in the window: INSUFFICIENT_DATA
        dataset_drift_share: 0.5     # dataset drift when at least this share of the decided features drift
        numeric_test: wasserstein    # instead of Evidently's choice (ks / wasserstein / chisquare / jensenshannon)
        categorical_test: psi
        positive_class: "1"          # the prediction whose share is compared per group
        min_group_rows: 30
        min_rate_shift: 0.05         # smallest change of a group's positive share that counts (effect size)
        min_requests: 50             # fewer requests: the latency verdict is INSUFFICIENT_DATA
        slo_p95_ms: 80
        action: notify               # notify | rollback | command
        command: ["scripts/retrain.sh", "--model", "credit-risk"]   # for action: command (evidence on stdin)
        cooldown: 1h                 # the same breach acts at most once per cooldown
        features:
          income: {test: psi, threshold: 0.2}
          region: {ignore: true}

Every bad key or value is a :class:`ConfigError` naming the model, the key and where it was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings

ACTIONS = ("notify", "rollback", "command")
_FLOAT_KEYS = ("alpha", "dataset_drift_share", "min_rate_shift", "slo_p50_ms", "slo_p95_ms", "slo_p99_ms")
_INT_KEYS = ("min_rows", "min_group_rows", "min_requests")
_STR_KEYS = ("numeric_test", "categorical_test", "positive_class", "action", "cooldown")
MODEL_KEYS = frozenset((*_FLOAT_KEYS, *_INT_KEYS, *_STR_KEYS, "command", "features"))
FEATURE_KEYS = frozenset(("test", "threshold", "ignore"))


@dataclass(frozen=True)
class FeaturePolicy:
    test: str | None = None  # a registered test name; None: Evidently's choice
    threshold: float | None = None  # None: the test's default (alpha for p-value tests)
    ignore: bool = False


@dataclass(frozen=True)
class DriftPolicy:
    alpha: float = 0.005
    min_rows: int = 30
    dataset_drift_share: float = 0.5
    numeric_test: str | None = None
    categorical_test: str | None = None
    positive_class: str | None = None
    min_group_rows: int = 30
    min_rate_shift: float = 0.05
    features: Mapping[str, FeaturePolicy] = field(default_factory=dict)

    def feature(self, name: str) -> FeaturePolicy:
        return self.features.get(name, FeaturePolicy())


@dataclass(frozen=True)
class ActionPolicy:
    kind: str = "notify"
    command: tuple[str, ...] = ()
    cooldown_s: float = 3600.0


@dataclass(frozen=True)
class ModelPolicy:
    drift: DriftPolicy = field(default_factory=DriftPolicy)
    slo_ms: Mapping[str, float] = field(default_factory=lambda: {"p50": 20.0, "p95": 50.0, "p99": 100.0})
    min_requests: int = 50
    action: ActionPolicy = field(default_factory=ActionPolicy)


@dataclass(frozen=True)
class MonitorPolicy:
    defaults: ModelPolicy
    models: Mapping[str, ModelPolicy]

    def for_model(self, model: str) -> ModelPolicy:
        return self.models.get(model, self.defaults)


def _bad(origin: str, message: str, hint: str) -> ConfigError:
    return ConfigError(f"{origin}: {message}", hint=hint)


def _number(origin: str, key: str, value: Any, kind: type) -> Any:
    whole = isinstance(value, (int, float)) and float(value).is_integer()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not whole):
        raise _bad(origin, f"{key} = {value!r} is not {'an integer' if kind is int else 'a number'}",
                   f"write {key} as a number")
    out = kind(value)
    if out <= 0:
        raise _bad(origin, f"{key} = {value!r} must be greater than 0", f"set {key} to a positive value")
    if key in ("alpha", "dataset_drift_share", "min_rate_shift") and not out < 1:
        raise _bad(origin, f"{key} = {value!r} must be below 1", f"set {key} to a fraction such as 0.05")
    return out


def _check_test(origin: str, key: str, name: Any, kind: str | None) -> str:
    from modelfleet.core.stattests import REGISTRY

    if not isinstance(name, str) or name not in REGISTRY:
        raise _bad(origin, f"{key} = {name!r} is not a drift test", f"use one of {', '.join(sorted(REGISTRY))}")
    if kind is not None and kind not in REGISTRY[name].kinds:
        raise _bad(origin, f"{key} = {name!r} does not apply to {kind} features",
                   f"use one of {', '.join(n for n, t in sorted(REGISTRY.items()) if kind in t.kinds)}")
    return name


def _features(origin: str, raw: Any) -> dict[str, FeaturePolicy]:
    if not isinstance(raw, dict):
        raise _bad(origin, "features must be a table of feature name -> {test, threshold, ignore}",
                   "write features: {income: {test: psi, threshold: 0.2}}")
    out: dict[str, FeaturePolicy] = {}
    for name, spec in raw.items():
        where = f"{origin} features.{name}"
        if not isinstance(spec, dict):
            raise _bad(where, "must be a table with test, threshold or ignore", "e.g. {test: psi, threshold: 0.2}")
        unknown = sorted(set(spec) - FEATURE_KEYS)
        if unknown:
            raise _bad(where, f"unknown key {unknown[0]!r}", f"use {', '.join(sorted(FEATURE_KEYS))}")
        test = _check_test(where, "test", spec["test"], None) if "test" in spec else None
        threshold = _number(where, "threshold", spec["threshold"], float) if "threshold" in spec else None
        ignore = spec.get("ignore", False)
        if not isinstance(ignore, bool):
            raise _bad(where, f"ignore = {ignore!r} is not true or false", "write ignore: true")
        out[str(name)] = FeaturePolicy(test, threshold, ignore)
    return out


def _model(origin: str, raw: Mapping[str, Any], base: ModelPolicy) -> ModelPolicy:
    from modelfleet.core.config import parse_duration

    unknown = sorted(set(raw) - MODEL_KEYS)
    if unknown:
        raise _bad(origin, f"unknown key {unknown[0]!r}", f"use {', '.join(sorted(MODEL_KEYS))}")
    drift: dict[str, Any] = {}
    slo = dict(base.slo_ms)
    min_requests = base.min_requests
    action = base.action
    for key, value in raw.items():
        if key in _FLOAT_KEYS or key in _INT_KEYS:
            number = _number(origin, key, value, int if key in _INT_KEYS else float)
            if key.startswith("slo_"):
                slo[key[4:-3]] = number
            elif key == "min_requests":
                min_requests = number
            else:
                drift[key] = number
        elif key in ("numeric_test", "categorical_test"):
            drift[key] = _check_test(origin, key, value, "numeric" if key == "numeric_test" else "categorical")
        elif key == "positive_class":
            drift[key] = str(value)
        elif key == "features":
            drift[key] = {**base.drift.features, **_features(origin, value)}
        elif key == "action":
            if value not in ACTIONS:
                raise _bad(origin, f"action = {value!r} is not an action", f"use one of {', '.join(ACTIONS)}")
            action = replace(action, kind=str(value))
        elif key == "cooldown":
            action = replace(action, cooldown_s=parse_duration(value, origin=f"{origin} cooldown"))
        elif key == "command":
            argv = [value] if isinstance(value, str) else value
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
                raise _bad(origin, "command must be a program and its arguments",
                           'write command: ["scripts/retrain.sh", "--model", "credit-risk"]')
            action = replace(action, command=tuple(argv))
    if not slo["p50"] <= slo["p95"] <= slo["p99"]:
        raise _bad(origin, "SLO budgets must satisfy slo_p50_ms <= slo_p95_ms <= slo_p99_ms",
                   "order the three latency objectives")
    if action.kind == "command" and not action.command:
        raise _bad(origin, "action: command needs a command", 'add command: ["path/to/hook", "arg"]')
    return ModelPolicy(replace(base.drift, **drift), slo, min_requests, action)


def check_models(models: Mapping[str, Any], *, origin: str) -> None:
    """Validate ``[monitor.models]`` tables (at settings load time)."""
    for name, raw in models.items():
        _model(f"{origin} {name}", raw, ModelPolicy())


def _read_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", hint=f"fix the syntax in {path}") from None
    if not isinstance(data, dict) or set(data) - {"models"}:
        raise ConfigError(f"{path}: a monitoring policy holds one key, models", hint="see docs/monitoring.md")
    models = data.get("models") or {}
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ConfigError(f"{path}: models must map model names to tables", hint="see docs/monitoring.md")
    return models


def load_policy(settings: Settings) -> MonitorPolicy:
    """The effective policy: [monitor] defaults, then [monitor.models.*], then the policy file's models."""
    m = settings.monitor
    c = settings.console
    from modelfleet.core.config import parse_duration

    defaults = ModelPolicy(
        drift=DriftPolicy(alpha=m.alpha, min_rows=m.min_rows, dataset_drift_share=m.dataset_drift_share,
                          min_group_rows=m.min_group_rows, min_rate_shift=m.min_rate_shift),
        slo_ms={"p50": c.slo_p50_ms, "p95": c.slo_p95_ms, "p99": c.slo_p99_ms},
        min_requests=m.min_requests,
        action=ActionPolicy(kind=m.action, cooldown_s=parse_duration(m.cooldown, origin="monitor.cooldown")),
    )
    if defaults.action.kind not in ACTIONS:
        raise ConfigError(f"{settings.source}: monitor.action = {m.action!r} is not an action",
                          hint=f"use one of {', '.join(ACTIONS)}")
    models: dict[str, ModelPolicy] = {}
    for name, raw in m.models.items():
        models[name] = _model(f"{settings.source}: [monitor.models.{name}]", raw, defaults)
    path = m.policy_file
    if path.is_file():
        for name, raw in _read_file(path).items():
            models[name] = _model(f"{path}: models.{name}", raw, models.get(name, defaults))
    return MonitorPolicy(defaults, models)
