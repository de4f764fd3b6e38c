"""``modelfleet gate MODEL@REF``: judge a version against the policy gates; exit 0 passed, 1 failed, 2 bad input.

Standard library only at import time; the work is in ``core/governance.py`` (run_gate) and ``core/evaluation.py``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.core.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.evaluation import GateResult

EPILOG = """\
examples:
  modelfleet gate credit-risk@champion --env prod
  modelfleet gate credit-risk@challenger --env prod --explain-failures
  modelfleet gate credit-risk/3 --policy policy/ci.yaml --json --manifest gate.manifest.json

The policy (default: <governance.policy_dir>/gates.yaml) lists gates with name, metric, threshold, comparison
(>= <= > < ==), severity (error fails, warning is reported), optional environments and group. Metrics are
computed by modelfleet on the version's labelled evaluation set (auc accuracy ece expected_cost flag_rate fpr
tpr positive_rate fpr_gap tpr_gap demographic_parity_difference), or run.<name> for a metric of its MLflow run.
The verdict is written to the ledger (action gate) and as the MLflow version tag modelfleet.gate.<env>.
Exit codes: 0 every error gate passed, 1 one failed, 2 bad policy (file and line named) or bad reference.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "gate", help="judge a model version against the policy gates (exit 0 pass, 1 fail, 2 bad input)",
        description="Pin MODEL@ALIAS or MODEL/VERSION once and judge it against the policy gates for an "
        "environment: metrics of its MLflow run and metrics modelfleet computes on its evaluation set.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ref", metavar="MODEL@ALIAS|MODEL/VERSION", help="the version to judge")
    p.add_argument("--policy", type=Path, metavar="FILE", help="gates file (default: <policy_dir>/gates.yaml)")
    p.add_argument("--env", metavar="ENV", help="environment: its gates plus those without environments "
                   "(default: only gates without environments)")
    p.add_argument("--explain-failures", action="store_true",
                   help="for each failed or warning gate: value, threshold, how far, and which groups")
    p.add_argument("--json", action="store_true", help="print the manifest with the verdict as JSON")
    p.add_argument("--manifest", type=Path, metavar="FILE",
                   help="write the reproducibility manifest (digests, libraries, seed, verdict) to FILE")
    p.add_argument("--no-record", action="store_true",
                   help="judge only: write nothing to the ledger or MLflow tags")
    p.set_defaults(func=cmd_gate)


def _value(result: GateResult) -> str:
    return "-" if result.value is None or math.isnan(result.value) else f"{result.value:.4g}"


def cmd_gate(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json, print_table, progress
    from modelfleet.core.governance import GATE_TAG, run_gate, tag_key

    if args.manifest is not None and args.manifest.is_dir():
        raise UsageError(f"--manifest {args.manifest} is a folder", hint="name a file, e.g. gate.manifest.json")
    run = run_gate(settings, args.ref, policy_path=args.policy, environment=args.env, record=not args.no_record,
                   progress=progress)
    report, manifest = run.report, run.manifest
    if args.manifest is not None:
        try:
            args.manifest.parent.mkdir(parents=True, exist_ok=True)
            args.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--manifest {args.manifest}: cannot write: {exc.strerror}") from None
    code = EXIT_OK if report.passed else EXIT_CHECK_FAILED
    if args.json:
        print_json(manifest)
        return code
    print(f"{args.ref} -> {report.model}/{report.version} ({report.digest[:12]}); policy {report.policy.path} "
          f"(sha256 {report.policy.sha256[:12]}); environment {report.environment or '(any)'}")
    if not report.results:
        print("no gate applies to this environment")
    print_table(["GATE", "METRIC", "VALUE", "RULE", "SEVERITY", "RESULT"],
                [(r.gate.name, r.gate.metric + (f" by {r.gate.group}" if r.gate.group else ""), _value(r),
                  f"{r.gate.comparison} {r.gate.threshold:g}", r.gate.severity, r.status.upper())
                 for r in report.results])
    shown = [r for r in report.results if r.status != "passed"]
    if args.explain_failures:
        for r in shown:
            print(f"\n{r.status.upper()}: {r.gate.name} ({r.gate.severity}, {report.policy.path.name} line "
                  f"{r.gate.line})\n  {r.explanation}")
            if r.groups:
                print("  per group: " + ", ".join(f"{g} {v:.3f}" for g, v in sorted(r.groups.items())))
    recorded = (f"; ledger #{run.event.seq}; MLflow tag {tag_key(GATE_TAG, report.environment)} = "
                f"{report.verdict}") if run.event else " (not recorded)"
    print(f"\nverdict: {report.verdict.upper()} ({len(report.failed)} error gate(s) failed, "
          f"{len(report.warnings)} warning(s)){recorded}")
    if shown and not args.explain_failures:
        print("add --explain-failures for the values, thresholds and groups")
    return code
