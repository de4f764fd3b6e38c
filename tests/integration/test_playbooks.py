"""Playbooks against a simulated fleet: real ansible-playbook over SSH (subprocess), real agents, real bundles.

Covers the acceptance of issue 4's Ansible part: provision twice (second changed=0), the same deploy twice
(second changed=0), a wrong probe answer on one node (that node back on its previous release within 10 s, exit
non-zero, the others untouched), tampered / foreign-key bundles refused before the switch, a concurrent deploy
refused naming the lock holder, and check mode leaving every node untouched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MODEL = "credit-risk"
FEATURES = ["income", "age", "debt_ratio"]
PROBE_ROWS = [[52000.0, 41, 0.31], [18000.0, 23, 1.2]]
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


# -- releases ---------------------------------------------------------------------------------------------------


def save_model(path: Path, c: float) -> Any:
    """A small scikit-learn model saved the MLflow way (the test process may import mlflow; nodes never do)."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    df = pd.DataFrame({"income": rng.lognormal(10.5, 0.5, 300), "age": rng.integers(18, 80, 300).astype("float64"),
                       "debt_ratio": rng.uniform(0, 1.5, 300)})
    y = (df["debt_ratio"] * 2 - np.log(df["income"]) / 5 > 0.0).astype("int64")
    model = LogisticRegression(C=c, max_iter=500).fit(df, y)
    if not path.exists():
        mlflow.sklearn.save_model(model, str(path), serialization_format="pickle")
    return model


def make_release(state_dir: Path, model: str, version: str, work: Path, *, private_key: Any = None,
                 expected: dict[str, Any] | None = None) -> Any:
    """Build and sign the bundle of ``model`` ``version`` with the controller key under ``state_dir/keys``."""
    import hashlib

    import pandas as pd

    from modelfleet.core.bundle import build_bundle

    art = work / f"{model}-{version}"
    fitted = save_model(art, c=0.5 + float(version))
    digest = hashlib.sha256(f"{model}:{version}:{art}".encode()).hexdigest()
    frame = pd.DataFrame(PROBE_ROWS, columns=FEATURES)
    request = {"dataframe_split": {"columns": FEATURES, "data": PROBE_ROWS}}
    answer = expected or {"predictions": [int(p) for p in fitted.predict(frame)]}
    return build_bundle(model=model, version=version, digest=digest, artifact_dir=art, state_dir=state_dir,
                        private_key=private_key, probe_request=request, probe_expected=answer,
                        created="2026-01-01T00:00:00Z")
