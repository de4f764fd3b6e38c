"""``modelfleet demo seed``: register three versions of ``credit-risk`` and set ``champion`` / ``challenger``.

Each version is an MLflow run (params, metrics, the model with signature and input example, a reference data
sample, a labelled evaluation set) and a registered version tagged ``modelfleet.demo = v1|v2|v3``. The tag makes
seeding idempotent: a registry that already holds all three versions is left untouched, and aliases are only set
where missing, so an operator's later alias moves survive a re-seed.

Governance (docs/governance.md): the evaluation set is 10,000 fresh loans from the same generator (its own
seed), with the label and ``applicant_group``, named by the version tags ``modelfleet.evaluation_set`` and
``modelfleet.label_column``. The champion is released with equal-opportunity thresholds per applicant group
(seed 003), searched on the validation split by the same code as ``modelfleet fairness`` and attached as the
tag ``modelfleet.thresholds`` (a ``thresholds_attach`` ledger event). The seed also creates one demo identity
per person of ``policy/roles.yaml`` (private keys under ``<state_dir>/demo/identities/``, mode 0600).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.demo import GROUP_COLUMN, MODEL_NAME, TARGET_COLUMN
from modelfleet.demo.data import INPUT_COLUMNS

if TYPE_CHECKING:
    from modelfleet.core.config import Settings
    from modelfleet.core.fairness import GroupThresholds
    from modelfleet.core.registry import Registry
    from modelfleet.demo.train import TrainedVersion, VersionSpec

DEMO_TAG = "modelfleet.demo"
EXPERIMENT = "modelfleet-demo"
ALIASES = {"champion": "v2", "challenger": "v3"}
REFERENCE_ROWS = 2_000
DEFAULT_ROWS = 20_000
REFERENCE_ARTIFACT = "reference/reference.csv"
EVALUATION_ARTIFACT = "evaluation/evaluation.csv"
EVALUATION_ROWS = 10_000
EVALUATION_SEED = 20240612  # not the training data's seed: fresh loans
DEMO_PEOPLE = ("dana", "mona", "quinn", "sam", "omar")  # as in policy/roles.yaml
IDENTITY_DIR = Path("demo") / "identities"  # under the state dir
MODEL_DESCRIPTION = (
    "Demo after the lending case: flags approved loans as high-risk (1) for a secondary manual review. "
    "Threshold from a 5:1 false-negative to false-positive cost ratio; fairness by Equal Opportunity "
    "(fpr_gap = largest difference of false-positive rates between applicant groups)."
)


@dataclass
class SeedResult:
    model: str
    tracking_uri: str
    created: dict[str, int] = field(default_factory=dict)  # demo key -> version created now
    existing: dict[str, int] = field(default_factory=dict)  # demo key -> version found
    aliases_set: dict[str, int] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)  # final aliases of the model
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # demo key -> metrics (created only)
    predict_ms: dict[str, float] = field(default_factory=dict)  # demo key -> median predict, 2 rows
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)  # demo key -> group -> threshold
    identities_created: list[str] = field(default_factory=list)
    identity_dir: str = ""
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.aliases_set or self.identities_created)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


def _existing(registry: Registry) -> dict[str, int]:
    from modelfleet.core.errors import ModelNotFound

    try:
        versions = registry.list_versions(MODEL_NAME, with_runs=False)
    except ModelNotFound:
        return {}
    found: dict[str, int] = {}
    for info in sorted(versions, key=lambda v: v.version):
        key = info.tags.get(DEMO_TAG)
        if key and key not in found:
            found[key] = info.version
    return found


@contextlib.contextmanager
def _mlflow_target(registry: Registry) -> Iterator[None]:
    """Point MLflow's fluent API at the registry for the block, then restore the previous URIs."""
    import mlflow

    registry.client  # noqa: B018 - reachability check and environment before the fluent API runs
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.registry_uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


def _pip_requirements() -> list[str]:
    import cloudpickle
    import numpy
    import pandas
    import sklearn

    return [
        f"scikit-learn=={sklearn.__version__}",
        f"numpy=={numpy.__version__}",
        f"pandas=={pandas.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
    ]


def _log_version(
    registry: Registry, experiment_id: str, trained: TrainedVersion, reference: Any, example: Any,
    evaluation: Any, thresholds: GroupThresholds | None,
) -> int:
    """One run with params, metrics, model, reference sample and evaluation set; then the registered version."""
    import cloudpickle
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    import modelfleet.demo.compact as compact

    spec = trained.spec
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"credit-risk-{spec.key}") as run:
        mlflow.set_tags({DEMO_TAG: spec.key, "modelfleet.learner": spec.learner})
        mlflow.log_params(trained.params)
        metrics = dict(trained.metrics)
        metrics.update({f"fpr_group_{g}": v for g, v in trained.fpr_by_group.items()})
        mlflow.log_metrics(metrics)
        signature = infer_signature(example, trained.model.predict(example))
        # The compact estimator travels inside the pickle, so nodes need no modelfleet code to load it.
        cloudpickle.register_pickle_by_value(compact)
        try:
            info = mlflow.sklearn.log_model(
                trained.model,
                name="model",
                signature=signature,
                input_example=example,
                pip_requirements=_pip_requirements(),
                serialization_format="cloudpickle",
            )
        finally:
            cloudpickle.unregister_pickle_by_value(compact)
        with tempfile.TemporaryDirectory() as tmp:
            for frame, artifact in ((reference, REFERENCE_ARTIFACT), (evaluation, EVALUATION_ARTIFACT)):
                path = Path(tmp) / Path(artifact).name
                frame.to_csv(path, index=False)
                mlflow.log_artifact(str(path), artifact_path=str(Path(artifact).parent))
        run_id = run.info.run_id
    return _register(registry, trained.spec, info, run_id, thresholds)


def _register(registry: Registry, spec: VersionSpec, info: Any, run_id: str,
              thresholds: GroupThresholds | None) -> int:
    from modelfleet.core.errors import ModelNotFound
    from modelfleet.core.evaluation import EVALUATION_SET_TAG, LABEL_TAG, THRESHOLDS_TAG
    from modelfleet.core.registry import REFERENCE_SAMPLE_TAG

    client = registry.client
    try:
        registry.get_model(MODEL_NAME)
    except ModelNotFound:
        client.create_registered_model(
            MODEL_NAME, description=MODEL_DESCRIPTION, tags={"modelfleet.demo": "credit-risk"}
        )
    mv = client.create_model_version(
        MODEL_NAME,
        source=info.model_uri,
        run_id=run_id,
        tags={
            DEMO_TAG: spec.key,
            REFERENCE_SAMPLE_TAG: REFERENCE_ARTIFACT,
            EVALUATION_SET_TAG: EVALUATION_ARTIFACT,
            LABEL_TAG: TARGET_COLUMN,
            "modelfleet.learner": spec.learner,
            "modelfleet.group_column": GROUP_COLUMN,
            **({THRESHOLDS_TAG: thresholds.to_json()} if thresholds is not None else {}),
        },
        description=spec.description,
        model_id=getattr(info, "model_id", None),
    )
    return int(mv.version)


def seed(
    settings: Settings, progress: Callable[[str], None] | None = None, *, rows: int = DEFAULT_ROWS
) -> SeedResult:
    """Seed the demo model into the registry of ``settings``; a second call changes nothing.

    ``rows`` is the number of synthetic loans (tests use fewer to stay fast)."""
    from modelfleet.core.registry import Registry

    say = progress or (lambda _msg: None)
    started = time.monotonic()
    registry = Registry(settings)
    result = SeedResult(model=MODEL_NAME, tracking_uri=registry.tracking_uri)
    with registry._guard("seeding the demo model"):
        result.existing = _existing(registry)
        from modelfleet.demo.train import VERSIONS

        missing = [spec for spec in VERSIONS if spec.key not in result.existing]
        if missing:
            _create(registry, missing, result, say, rows)
            _record_thresholds(settings, result)
        _set_aliases(registry, result, say)
        result.aliases = registry.get_model(MODEL_NAME).aliases
    identity_dir = settings.state_dir / IDENTITY_DIR
    result.identity_dir = str(identity_dir)
    result.identities_created = demo_identities(identity_dir)
    if result.identities_created:
        say(f"demo identities {', '.join(result.identities_created)} in {identity_dir} (see policy/roles.yaml)")
    result.seconds = round(time.monotonic() - started, 2)
    return result


def demo_identities(folder: Path) -> list[str]:
    """A private key (mode 0600) and its public line per demo person; returns the names created now."""
    from modelfleet.core.identity import new_identity

    created = []
    for name in DEMO_PEOPLE:
        _, public, made = new_identity(folder / f"{name}.key")
        pub = folder / f"{name}.pub"
        if made or not pub.exists() or pub.read_text(encoding="ascii").strip() != public:
            pub.write_text(public + "\n", encoding="ascii")
        if made:
            created.append(name)
    return created


def _record_thresholds(settings: Settings, result: SeedResult) -> None:
    """A ``thresholds_attach`` ledger event per version the seed released with thresholds."""
    from modelfleet.core.ledger import Ledger

    if not result.thresholds:
        return
    with Ledger.from_settings(settings) as ledger:
        for key, table in result.thresholds.items():
            ledger.append("thresholds_attach", actor="modelfleet demo seed", model=MODEL_NAME,
                          version=str(result.created[key]), outcome="changed",
                          details={"thresholds": table, "source": "demo seed: equal-opportunity search on the "
                                   "validation split (modelfleet.core.fairness.search_thresholds)"})


def _create(
    registry: Registry, missing: list[VersionSpec], result: SeedResult, say: Callable[[str], None], rows: int
) -> None:
    from modelfleet.demo.data import make_loans, split
    from modelfleet.demo.train import predict_latency_ms, train_version

    say(f"generating synthetic loans and training {len(missing)} version(s) of {MODEL_NAME}")
    train, valid, test = split(make_loans(rows))
    n_reference = min(REFERENCE_ROWS, len(train))
    reference = train[list(INPUT_COLUMNS)].sample(n=n_reference, random_state=7).reset_index(drop=True)
    example = test[list(INPUT_COLUMNS)].head(5).reset_index(drop=True)
    evaluation = make_loans(EVALUATION_ROWS, seed=EVALUATION_SEED)[[*INPUT_COLUMNS, TARGET_COLUMN]]
    with _mlflow_target(registry):
        experiment_id = registry.ensure_experiment(EXPERIMENT)
        for spec in missing:
            trained = train_version(spec, train, valid, test)
            result.predict_ms[spec.key] = round(predict_latency_ms(trained.model, example.head(2), 50), 3)
            thresholds = fair_thresholds(trained, valid) if spec.key == ALIASES["champion"] else None
            if thresholds is not None:
                result.thresholds[spec.key] = thresholds.thresholds
            version = _log_version(registry, experiment_id, trained, reference, example, evaluation, thresholds)
            result.created[spec.key] = version
            result.metrics[spec.key] = {k: round(v, 4) for k, v in trained.metrics.items()}
            say(
                f"registered {MODEL_NAME}/{version} ({spec.key}, {spec.learner}): "
                f"auc {trained.metrics['auc']:.3f}, fpr_gap {trained.metrics['fpr_gap']:.3f}, "
                f"threshold {trained.threshold:.3f}"
            )


def fair_thresholds(trained: TrainedVersion, valid: Any) -> GroupThresholds:
    """Equal-opportunity thresholds per applicant group at the 5:1 cost (seed 003), searched on validation data."""
    from modelfleet.core.fairness import search_thresholds
    from modelfleet.demo.train import COST_RATIO

    proba = trained.model.predict_proba(valid[list(INPUT_COLUMNS)])[:, 1]
    return search_thresholds(valid[TARGET_COLUMN].to_numpy(), proba, valid[GROUP_COLUMN].to_numpy(),
                             column=GROUP_COLUMN, cost_ratio=COST_RATIO).thresholds


def _set_aliases(registry: Registry, result: SeedResult, say: Callable[[str], None]) -> None:
    current = registry.get_model(MODEL_NAME).aliases
    versions = {**result.existing, **result.created}
    for alias, key in ALIASES.items():
        if alias in current or key not in versions:
            continue
        registry.client.set_registered_model_alias(MODEL_NAME, alias, str(versions[key]))
        result.aliases_set[alias] = versions[key]
        say(f"alias {MODEL_NAME}@{alias} -> {versions[key]}")
