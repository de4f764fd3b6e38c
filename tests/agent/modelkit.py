"""Builds small sklearn models and release directories for the agent tests (the test process may import mlflow)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["income", "age", "debt_ratio", "employment", "applicant_group"]


def make_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "income": rng.lognormal(10.5, 0.5, n).round(2),
        "age": rng.integers(18, 80, n).astype("int64"),
        "debt_ratio": rng.uniform(0, 1.5, n).round(4),
        "employment": rng.choice(["salaried", "self-employed", "unemployed", "retired"], n),
        "applicant_group": rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2]),
    })
    df["employment"] = df["employment"].astype(object)
    df["applicant_group"] = df["applicant_group"].astype(object)
    return df


def make_target(df: pd.DataFrame, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    score = (df["debt_ratio"] * 2 - np.log(df["income"]) / 5 + (df["employment"] == "unemployed") * 1.0
             + rng.normal(0, 0.3, len(df)))
    return (score > np.median(score)).astype("int64").to_numpy()


def build_pipeline(c: float = 1.0) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer([
        ("num", StandardScaler(), ["income", "age", "debt_ratio"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["employment", "applicant_group"]),
    ])
    return Pipeline([("pre", pre), ("clf", LogisticRegression(C=c, max_iter=500))])


def save_mlflow_model(path: Path, c: float = 1.0, seed: int = 0) -> Any:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    df = make_frame(600, seed)
    y = make_target(df, seed + 1)
    model = build_pipeline(c).fit(df, y)
    signature = infer_signature(df, model.predict(df))
    if path.exists():
        shutil.rmtree(path)
    # Requirements named, not inferred: MLflow's inference imports the model in a subprocess (~5 s a model).
    mlflow.sklearn.save_model(model, str(path), signature=signature, input_example=df.head(3),
                              pip_requirements=["scikit-learn"])
    return model


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_release(root: Path, model_dir: Path | None, version: str, *, probe: dict[str, Any] | None,
                  profile: dict[str, Any] | None = None, joblib_model: Any = None,
                  name: str = "credit-risk") -> Path:
    """Lay out ``root`` as a release: manifest.json (+ dummy manifest.sig), model/ or model.joblib, profile."""
    root.mkdir(parents=True, exist_ok=True)
    if model_dir is not None:
        shutil.copytree(model_dir, root / "model", dirs_exist_ok=True)
    if joblib_model is not None:
        import joblib

        joblib.dump(joblib_model, root / "model.joblib")
    if profile is not None:
        (root / "profile.json").write_text(json.dumps(profile))
    files = {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    manifest = {
        "format": "modelfleet-release/1", "model": name, "version": version, "digest": digest,
        "files": files, "probe": probe, "profile": "profile.json" if profile is not None else None,
        "requires": {"arch": ["x86_64", "aarch64"], "accelerator": None},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (root / "manifest.sig").write_text("unsigned-test-release\n")
    return root


def probe_for(model: Any, df: pd.DataFrame) -> dict[str, Any]:
    return {
        "request": {"dataframe_split": {"columns": list(df.columns), "data": df.values.tolist()}},
        "expected": {"predictions": [int(v) for v in model.predict(df)]},
    }
