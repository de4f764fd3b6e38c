"""Synthetic loan applications with a protected attribute (``applicant_group``) and a biased label.

The data mimic the lending case of the white paper: approved loans, their application details and whether the
loan was repaid. ``defaulted`` (1 = not repaid) depends on the financial features and, through historical bias,
also on the applicant group; ``region`` is a proxy of the group that carries no information of its own beyond it.
A model that uses ``region`` learns the group effect and shows a larger false-positive-rate gap between groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelfleet.demo import GROUP_COLUMN, TARGET_COLUMN

if TYPE_CHECKING:
    import pandas as pd

SEED = 20240611
NUMERIC_FEATURES = (
    "income",
    "loan_amount",
    "term_months",
    "credit_score",
    "debt_to_income",
    "employment_years",
)
CATEGORICAL_FEATURES = ("home_ownership", "purpose", "region")
# Every version's model takes the same request columns; each model uses a subset and drops the rest.
INPUT_COLUMNS = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, GROUP_COLUMN)
GROUPS = ("A", "B", "C", "D")
HOME_OWNERSHIP = ("rent", "mortgage", "own")
PURPOSES = ("debt_consolidation", "home_improvement", "car", "business", "education", "medical")
REGIONS = ("north", "south", "east", "west", "central")

_GROUP_SHARE = (0.45, 0.25, 0.18, 0.12)
# Mean shift of the log-income and of the credit score per group (structural differences in the data).
_GROUP_INCOME_SHIFT = (0.10, 0.0, -0.12, -0.22)
_GROUP_SCORE_SHIFT = (15.0, 0.0, -20.0, -35.0)
# Historical bias: extra log-odds of a recorded default that the financial features do not explain.
_GROUP_LABEL_BIAS = (-0.25, 0.0, 0.35, 0.8)
# Region is a proxy: each group lives mostly in one region.
_GROUP_HOME_REGION = (0, 1, 2, 3)


def make_loans(n: int = 20_000, seed: int = SEED) -> pd.DataFrame:
    """``n`` synthetic loan applications with the label column ``defaulted``; the same seed gives the same rows."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    gi = rng.choice(len(GROUPS), size=n, p=_GROUP_SHARE)
    income_shift = np.asarray(_GROUP_INCOME_SHIFT)[gi]
    score_shift = np.asarray(_GROUP_SCORE_SHIFT)[gi]

    income = np.round(np.exp(rng.normal(10.95 + income_shift, 0.45)), -2)
    employment_years = np.clip(np.round(rng.gamma(2.0, 3.0, n), 1), 0, 45)
    credit_score = np.clip(np.round(rng.normal(680 + score_shift + 2.0 * employment_years, 55)), 300, 850)
    term_months = rng.choice([12, 24, 36, 48, 60], size=n, p=[0.08, 0.17, 0.40, 0.15, 0.20])
    loan_amount = np.round(np.clip(income * rng.uniform(0.05, 0.6, n), 1_000, 250_000), -2)
    debt_to_income = np.clip(np.round(rng.beta(2.2, 5.5, n) + 0.08 * (loan_amount / income), 3), 0.0, 1.2)
    home = rng.choice(len(HOME_OWNERSHIP), size=n, p=[0.42, 0.40, 0.18])
    purpose = rng.choice(len(PURPOSES), size=n, p=[0.38, 0.17, 0.15, 0.12, 0.08, 0.10])
    home_region = np.asarray(_GROUP_HOME_REGION)[gi]
    region = np.where(rng.random(n) < 0.8, home_region, rng.integers(0, len(REGIONS), n))

    logit = (
        -1.75
        - 0.012 * (credit_score - 680)
        + 3.2 * (debt_to_income - 0.3)
        - 0.55 * (np.log(income) - 10.95)
        + 0.45 * (loan_amount / income - 0.3)
        + 0.012 * (term_months - 36)
        - 0.035 * employment_years
        + np.where(home == 0, 0.25, np.where(home == 2, -0.2, 0.0))
        + np.asarray([0.0, -0.15, 0.05, 0.6, 0.35, 0.2])[purpose]
        + 0.9 * (credit_score < 600)  # non-linear effects that tree models pick up better than linear ones
        + 4.0 * np.maximum(debt_to_income - 0.5, 0.0)
        + np.asarray(_GROUP_LABEL_BIAS)[gi]
    )
    defaulted = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)

    return pd.DataFrame(
        {
            "income": income,
            "loan_amount": loan_amount,
            "term_months": term_months.astype("int64"),
            "credit_score": credit_score,
            "debt_to_income": debt_to_income,
            "employment_years": employment_years,
            "home_ownership": np.asarray(HOME_OWNERSHIP, dtype=object)[home],
            "purpose": np.asarray(PURPOSES, dtype=object)[purpose],
            "region": np.asarray(REGIONS, dtype=object)[region],
            GROUP_COLUMN: np.asarray(GROUPS, dtype=object)[gi],
            TARGET_COLUMN: defaulted,
        }
    )


def split(frame: pd.DataFrame, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train / validation (threshold choice) / test (metrics) = 60 / 20 / 20, stratified by the label."""
    from sklearn.model_selection import train_test_split

    train, rest = train_test_split(frame, test_size=0.4, random_state=seed, stratify=frame[TARGET_COLUMN])
    valid, test = train_test_split(rest, test_size=0.5, random_state=seed, stratify=rest[TARGET_COLUMN])
    return train.reset_index(drop=True), valid.reset_index(drop=True), test.reset_index(drop=True)
