"""Demo data after the lending case: synthetic loans, a credit-risk model in three versions, fairness metrics.

``data`` makes the loans, ``train`` fits and scores the models, ``seed`` registers them in MLflow. Only ``seed``
imports MLflow; ``data`` and ``train`` need numpy, pandas and scikit-learn.
"""

from __future__ import annotations

MODEL_NAME = "credit-risk"
GROUP_COLUMN = "applicant_group"
TARGET_COLUMN = "defaulted"
