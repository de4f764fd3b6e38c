"""``modelfleet demo seed``: the credit-risk demo model (3 versions, champion -> 2, challenger -> 3)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelfleet.core.config import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="demo data: the credit-risk model after the lending case",
        description="Demo data after the lending case: synthetic loan applications with a protected "
        "applicant_group, a high-risk flagging model and its fairness metrics.",
    )
    actions = parser.add_subparsers(dest="demo_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "seed",
        help="register 3 versions of credit-risk and set champion/challenger (idempotent)",
        description="Train and register credit-risk versions 1-3 in the configured MLflow registry, with "
        "metrics (auc, accuracy, ece, fpr_gap, demographic_parity_difference), a reference data sample and "
        "aliases champion -> 2, challenger -> 3. A seeded registry is left unchanged.",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_seed)


def run_seed(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json, print_table, progress
    from modelfleet.demo.seed import seed

    result = seed(settings, progress=progress)
    if args.json:
        print_json(result.to_dict())
        return 0
    aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(result.aliases.items())) or "none"
    if not result.changed:
        versions = ", ".join(str(v) for v in sorted(result.existing.values()))
        print(f"{result.model} is already seeded (versions {versions}; {aliases}): nothing changed")
        return 0
    if result.created:
        print_table(
            ["VERSION", "DEMO", "AUC", "ACCURACY", "ECE", "FPR_GAP", "DP_DIFF", "PREDICT_MS(2 rows)"],
            [
                (v, key, *(f"{result.metrics[key][k]:.3f}" for k in (
                    "auc", "accuracy", "ece", "fpr_gap", "demographic_parity_difference")),
                 f"{result.predict_ms.get(key, 0.0):.3f}")
                for key, v in sorted(result.created.items(), key=lambda kv: kv[1])
            ],
        )
    if result.created:
        print(f"seeded {result.model} in {result.tracking_uri} in {result.seconds:.1f}s; aliases: {aliases}")
    for key, table in result.thresholds.items():
        shown = ", ".join(f"{g} {t:.3f}" for g, t in sorted(table.items()))
        print(f"{result.model}/{result.created[key]} ({key}) released with equal-opportunity thresholds: {shown}")
    if result.identities_created:
        print(f"demo identities {', '.join(result.identities_created)} in {result.identity_dir}; act as one with "
              f"MODELFLEET_GOVERNANCE_IDENTITY={result.identity_dir}/<name>.key")
    return 0
