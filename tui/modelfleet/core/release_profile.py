"""The reference profile a release carries, built on the controller when the version is bundled.

A version registered with a reference sample (the run artifact named by the version tag
``modelfleet.reference_sample``) gets a :class:`~modelfleet.core.drift.ReferenceProfile` in its bundle
(``profile.json``): the frozen bins every agent counts live traffic on. The profile covers the model's input
columns (the signature's names when the model has a column signature, else every column of the sample), the
model's own predictions on the sample (with the release's per-group thresholds when it carries some, as the agents
apply them), and, when the version names one with the tag ``modelfleet.group_column``,
the group column whose positive shares are compared per group.

Nothing here stops a deploy: a version without a sample, or whose model cannot score its sample on the
controller, is bundled without a profile (or without predictions in it) and the reason is returned as a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelfleet.core.errors import ArtifactError, ModelfleetError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from modelfleet.core.fairness import GroupThresholds
    from modelfleet.core.registry import PinnedVersion, Registry

GROUP_COLUMN_TAG = "modelfleet.group_column"
NUMERIC_BINS = 10
TOP_K = 32


def has_reference_sample(registry: Registry, pinned: PinnedVersion) -> bool:
    """True when the version names a reference sample (tag ``modelfleet.reference_sample``)."""
    from modelfleet.core.registry import REFERENCE_SAMPLE_TAG

    return REFERENCE_SAMPLE_TAG in registry.get_version(pinned.name, pinned.version).tags


def _input_columns(model_dir: Any, sample: pd.DataFrame) -> list[str]:
    import json

    from modelfleet.core.bundle import read_model_signature

    signature = read_model_signature(model_dir) or {}
    try:
        inputs = json.loads(signature.get("inputs") or "[]")
    except (TypeError, ValueError):
        inputs = []
    names = [str(s["name"]) for s in inputs if isinstance(s, dict) and s.get("name")]
    present = [n for n in names if n in sample.columns]
    return present or [str(c) for c in sample.columns]


def _predictions(model_dir: Any, frame: pd.DataFrame, thresholds: GroupThresholds | None) -> Any:
    """The model's predictions on the sample, as the agents will make them: with the release's per-group
    thresholds when it has some (the agents apply them), by MLflow's loader (lazily)."""
    if thresholds is not None:
        import mlflow.sklearn

        from modelfleet.core.fairness import ThresholdedClassifier

        return ThresholdedClassifier(mlflow.sklearn.load_model(str(model_dir)), thresholds).predict(frame)
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(model_dir)).predict(frame)


def reference_profile(
    registry: Registry, pinned: PinnedVersion, say: Callable[[str], None],
    *, thresholds: GroupThresholds | None = None,
    predict: Callable[[Any, pd.DataFrame, GroupThresholds | None], Any] = _predictions,
) -> tuple[dict[str, Any] | None, list[str]]:
    """``(profile as a dict, warnings)`` for ``pinned``; ``(None, [why])`` when it cannot have one."""
    from modelfleet.core.drift import ReferenceProfile

    ref = f"{pinned.name}/{pinned.version}"
    try:
        sample = registry.load_reference_sample(pinned.name, pinned.version)
    except (ArtifactError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, ModelfleetError) else str(exc)
        return None, [f"{ref}: no reference profile, so agents will not count drift: {message}"]
    tags = registry.get_version(pinned.name, pinned.version).tags
    warnings: list[str] = []
    columns = _input_columns(pinned.path, sample)
    frame = sample[columns]
    group = tags.get(GROUP_COLUMN_TAG) or None
    if group is not None and group not in columns:
        warnings.append(f"{ref}: group column {group!r} (tag {GROUP_COLUMN_TAG}) is not a model input in the "
                        "reference sample; predictions are not counted per group")
        group = None
    try:
        predictions = predict(pinned.path, frame, thresholds)
    except Exception as exc:  # the model's own failure on its sample: profile the inputs only, say why
        predictions = None
        warnings.append(f"{ref}: the model could not score its reference sample on the controller "
                        f"({type(exc).__name__}: {str(exc)[:200]}); prediction drift is not counted")
    profile = ReferenceProfile.build(frame, predictions, group_column=group, numeric_bins=NUMERIC_BINS,
                                     top_k=TOP_K, model=pinned.name, version=str(pinned.version))
    say(f"reference profile: {len(profile.features)} features from {profile.rows} reference rows"
        + (f", predictions by {group}" if group and predictions is not None else ""))
    return profile.to_dict(), warnings
