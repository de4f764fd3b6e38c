"""A logistic-regression risk scorer that serves a two-row request in well under a millisecond.

scikit-learn's general machinery (``ColumnTransformer``, ``OneHotEncoder``, input validation) costs several
milliseconds per call on small batches, which dominates an edge agent's request time. This estimator fits the
same model as ``StandardScaler`` + ``OneHotEncoder`` + ``LogisticRegression`` on the chosen columns of a
DataFrame, then folds scaling and encoding into plain weight tables and scores with numpy only. Columns it
does not use (such as the protected ``applicant_group``) are ignored.

The demo registers it with cloudpickle *by value* (see :func:`modelfleet.demo.seed`), so a node can load the
model without modelfleet installed; hence this module imports only numpy and scikit-learn's base classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class CompactLogisticRisk(ClassifierMixin, BaseEstimator):
    """Logistic regression over standardized ``numeric`` and one-hot ``categorical`` DataFrame columns.

    Unknown categories score as the all-zero one-hot row (like ``handle_unknown="ignore"``).
    """

    def __init__(
        self,
        numeric: tuple[str, ...] = (),
        categorical: tuple[str, ...] = (),
        C: float = 1.0,
        max_iter: int = 1000,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.C = C
        self.max_iter = max_iter

    # -- fitting -------------------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> CompactLogisticRisk:
        from sklearn.linear_model import LogisticRegression

        numeric = self._numeric_matrix(X)
        mean = numeric.mean(axis=0)
        scale = numeric.std(axis=0)
        scale[scale == 0] = 1.0
        blocks = [(numeric - mean) / scale]
        categories: list[tuple[str, list[Any]]] = []
        for col in self.categorical:
            values = np.asarray(X[col], dtype=object)
            levels = sorted({v for v in values.tolist()}, key=str)
            categories.append((col, levels))
            blocks.append(np.column_stack([(values == level).astype(float) for level in levels]))
        design = np.hstack(blocks) if blocks else np.empty((len(numeric), 0))
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(design, np.asarray(y))
        coef = lr.coef_[0]
        n_num = numeric.shape[1]
        # Fold the scaler into the weights: w·(x - m)/s + b = (w/s)·x + (b - Σ w·m/s).
        self.num_coef_ = coef[:n_num] / scale
        self.intercept_ = float(lr.intercept_[0] - np.sum(coef[:n_num] * mean / scale))
        offset = n_num
        self.cat_weights_: list[tuple[str, dict[Any, float]]] = []
        for col, levels in categories:
            table = {level: float(w) for level, w in zip(levels, coef[offset:offset + len(levels)], strict=True)}
            self.cat_weights_.append((col, table))
            offset += len(levels)
        self.classes_ = lr.classes_
        self.n_features_in_ = len(self.numeric) + len(self.categorical)
        return self

    # -- scoring -------------------------------------------------------------------------------------------

    def _columns(self, X: Any) -> tuple[np.ndarray, list[np.ndarray]]:
        """The numeric matrix and the categorical columns of ``X``, in one conversion for a DataFrame."""
        if isinstance(X, np.ndarray) or not hasattr(X, "__getitem__"):
            raise TypeError("CompactLogisticRisk expects a DataFrame (or a mapping of columns) as input")
        columns = getattr(X, "columns", None)
        if columns is not None and hasattr(X, "to_numpy"):
            # One object-array conversion is much cheaper than one Series per column on small batches.
            try:
                num_idx = [columns.get_loc(c) for c in self.numeric]
                cat_idx = [columns.get_loc(c) for c in self.categorical]
            except KeyError as exc:
                raise KeyError(f"input has no column {exc.args[0]!r}") from None
            if all(isinstance(i, int) for i in num_idx + cat_idx):
                values = X.to_numpy()
                numeric = values[:, num_idx].astype(float) if num_idx else np.empty((len(values), 0))
                return numeric, [values[:, i] for i in cat_idx]
        numeric = (
            np.column_stack([np.asarray(X[c], dtype=float) for c in self.numeric])
            if self.numeric
            else np.empty((len(X[self.categorical[0]]) if self.categorical else 0, 0))
        )
        return numeric, [np.asarray(X[c], dtype=object) for c in self.categorical]

    def _numeric_matrix(self, X: Any) -> np.ndarray:
        return self._columns(X)[0]

    def decision_function(self, X: Any) -> np.ndarray:
        numeric, cats = self._columns(X)
        z = numeric @ self.num_coef_ + self.intercept_
        for (_, table), values in zip(self.cat_weights_, cats, strict=True):
            z = z + np.fromiter((table.get(v, 0.0) for v in values), dtype=float, count=len(z))
        return z

    def predict_proba(self, X: Any) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[(self.decision_function(X) >= 0.0).astype(int)]
