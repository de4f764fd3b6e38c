"""The three demo versions of ``credit-risk``: fit, choose the cost-based threshold, score.

Every model takes the same request columns (:data:`INPUT_COLUMNS`, including ``applicant_group``) so that any
version can replace any other on a node; a ``ColumnTransformer`` keeps the features a version uses and drops the
rest, ``applicant_group`` always among the dropped. The threshold is applied inside the model with
``FixedThresholdClassifier``: ``predict`` returns the flag (1 = high risk, goes to manual review) and
``predict_proba`` still gives the score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelfleet.core import fairness as f
from modelfleet.demo import GROUP_COLUMN, TARGET_COLUMN
from modelfleet.demo.data import INPUT_COLUMNS, NUMERIC_FEATURES

if TYPE_CHECKING:
    import pandas as pd


COST_RATIO = f.DEFAULT_COST_RATIO  # a missed default costs five needless reviews (seed 003)


@dataclass(frozen=True)
class VersionSpec:
    """One demo version: which learner and which features."""

    key: str  # "v1", "v2", "v3": the demo tag that makes seeding idempotent
    learner: str  # "logreg" or "hgb"
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    description: str


VERSIONS: tuple[VersionSpec, ...] = (
    VersionSpec(
        "v1", "logreg", ("credit_score", "debt_to_income", "income"), (),
        "baseline: logistic regression on credit score, debt-to-income and income",
    ),
    VersionSpec(
        "v2", "logreg", NUMERIC_FEATURES, ("home_ownership", "purpose"),
        "champion: logistic regression on all financial features and loan purpose",
    ),
    VersionSpec(
        "v3", "hgb", NUMERIC_FEATURES, ("home_ownership", "purpose", "region"),
        "challenger: gradient boosting that also uses region (a proxy of applicant_group)",
    ),
)


@dataclass
class TrainedVersion:
    spec: VersionSpec
    model: Any  # a fitted FixedThresholdClassifier
    threshold: float
    metrics: dict[str, float]
    params: dict[str, str]
    fpr_by_group: dict[str, float] = field(default_factory=dict)


def build_estimator(spec: VersionSpec, seed: int = 0) -> Any:
    """An unfitted estimator over the request columns that never uses ``applicant_group``.

    Logistic versions use :class:`CompactLogisticRisk` (the same model as StandardScaler + OneHotEncoder +
    LogisticRegression, scored with numpy only, for sub-millisecond requests). The gradient-boosting version is
    a stock pipeline: ``ColumnTransformer`` (unused columns dropped) -> ``HistGradientBoostingClassifier``.
    """
    assert GROUP_COLUMN not in spec.numeric + spec.categorical, "the protected attribute is never a feature"
    if spec.learner == "logreg":
        from modelfleet.demo.compact import CompactLogisticRisk

        return CompactLogisticRisk(numeric=spec.numeric, categorical=spec.categorical, C=1.0, max_iter=1000)
    if spec.learner != "hgb":  # pragma: no cover - specs are fixed above
        raise ValueError(spec.learner)
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    parts: list[tuple[str, Any, list[str]]] = [("num", "passthrough", list(spec.numeric))]
    if spec.categorical:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, dtype=float)
        parts.append(("cat", encoder, list(spec.categorical)))
    n_num = len(spec.numeric)
    learner = HistGradientBoostingClassifier(
        max_iter=60, max_depth=3, learning_rate=0.12, min_samples_leaf=40, early_stopping=False,
        random_state=seed,
        categorical_features=[n_num + i for i in range(len(spec.categorical))] or None,
    )
    columns = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("columns", columns), ("model", learner)])


def evaluate(model: Any, frame: pd.DataFrame) -> tuple[dict[str, float], dict[str, float]]:
    """Metrics of a thresholded model on labelled data, plus the false-positive rate per group."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    y = frame[TARGET_COLUMN].to_numpy()
    proba = model.predict_proba(frame[list(INPUT_COLUMNS)])[:, 1]
    flagged = model.predict(frame[list(INPUT_COLUMNS)])
    stats = f.group_stats(y, flagged, frame[GROUP_COLUMN].to_numpy())
    result = {
        "auc": float(roc_auc_score(y, proba)),
        "accuracy": float(accuracy_score(y, flagged)),
        "ece": f.expected_calibration_error(y, proba, bins=10),
        "fpr_gap": f.fpr_gap(stats).value,
        "demographic_parity_difference": f.demographic_parity_difference(stats).value,
        "expected_cost": f.expected_cost(y, flagged, COST_RATIO),
        "flag_rate": float(flagged.mean()),
    }
    return result, {g: s.fpr.value for g, s in stats.items() if s.counts.negatives}


def train_version(
    spec: VersionSpec, train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, seed: int = 0
) -> TrainedVersion:
    """Fit on ``train``, choose the 5:1 cost threshold on ``valid``, score on ``test``."""
    from sklearn.model_selection import FixedThresholdClassifier
    from threadpoolctl import threadpool_limits

    x_cols = list(INPUT_COLUMNS)
    # Fit once; FixedThresholdClassifier reads ``threshold`` at predict time, so it is set after the choice.
    model = FixedThresholdClassifier(build_estimator(spec, seed=seed), threshold=0.5, response_method="predict_proba")
    # One thread: OpenMP spinning costs far more than it saves on a shared machine at this data size.
    with threadpool_limits(1):
        model.fit(train[x_cols], train[TARGET_COLUMN])
        valid_proba = model.predict_proba(valid[x_cols])[:, 1]
        threshold = f.choose_threshold(valid[TARGET_COLUMN].to_numpy(), valid_proba, COST_RATIO)
        model.set_params(threshold=threshold)
        metrics, fpr = evaluate(model, test)
    params = {
        "learner": spec.learner,
        "features": ",".join(spec.numeric + spec.categorical),
        "threshold": f"{threshold:.6f}",
        "cost_ratio_fn_fp": f"{COST_RATIO:g}",
        "train_rows": str(len(train)),
        "seed": str(seed),
    }
    return TrainedVersion(spec, model, threshold, metrics, params, fpr)


def predict_latency_ms(model: Any, rows: pd.DataFrame, repeat: int = 300) -> float:
    """Median wall time of ``model.predict`` on ``rows`` in milliseconds, on one thread (as an edge agent
    should run: OMP_NUM_THREADS=1; OpenMP thread start-up dominates small batches otherwise)."""
    from threadpoolctl import threadpool_limits

    samples = []
    with threadpool_limits(1):
        model.predict(rows)  # warm-up
        for _ in range(repeat):
            start = time.perf_counter()
            model.predict(rows)
            samples.append(time.perf_counter() - start)
    samples.sort()
    return samples[len(samples) // 2] * 1000.0
