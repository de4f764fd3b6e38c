"""``modelfleet fairness MODEL@REF``: per-group FPRs, the equal-opportunity gap and cost; thresholds that fix them.

Standard library only at import time; the work is in ``core/fairness.py`` and ``core/governance.py``.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any

from modelfleet.core.errors import EXIT_CHECK_FAILED, EXIT_OK

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.fairness import Rate

EPILOG = """\
examples:
  modelfleet fairness credit-risk@challenger --group applicant_group --cost-ratio 5
  modelfleet fairness credit-risk@challenger --group applicant_group --attach

Equal opportunity (seed 003): a false positive (a repaid loan flagged as high risk) is punitive, so each group's
false-positive rate is compared (95% Wilson intervals) and the largest difference is the FPR gap. The search
picks one probability threshold per group (flag when P(positive) >= threshold) so that every group's FPR lies
within --tolerance of the others, at the least expected cost with false negatives --cost-ratio times as costly
as false positives. --attach stores them on the version (MLflow tag modelfleet.thresholds, ledger event
thresholds_attach): its releases then carry them, the agent applies them and the probe checks them. Gate
verdicts and approvals bind the thresholds, so attaching new ones needs a new gate run and new approvals.
Exit codes: 0 thresholds within the tolerance found, 1 not reachable on this data, 2 bad input.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fairness", help="per-group FPRs, FPR gap, parity and cost; search (and attach) per-group thresholds",
        description="Measure a version's fairness and cost on its evaluation set, and search per-group "
        "probability thresholds that equalise false-positive rates at the least expected cost.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ref", metavar="MODEL@ALIAS|MODEL/VERSION")
    p.add_argument("--group", metavar="COLUMN", help="the group column (default: the version tag "
                   "modelfleet.group_column)")
    p.add_argument("--cost-ratio", type=float, default=5.0, metavar="R",
                   help="cost of a false negative over a false positive (default 5, the lending case)")
    p.add_argument("--tolerance", type=float, default=0.02, metavar="GAP",
                   help="largest FPR difference allowed between groups (default 0.02)")
    p.add_argument("--attach", action="store_true", help="attach the thresholds to the version (its releases "
                   "apply them)")
    p.add_argument("--json", action="store_true", help="print JSON (before, after, thresholds)")
    p.set_defaults(func=cmd_fairness)


def _rate(rate: Rate) -> str:
    if math.isnan(rate.value):
        return "-"
    return f"{rate.value:.3f} ({rate.low:.3f}-{rate.high:.3f})"


def cmd_fairness(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json, print_table, progress
    from modelfleet.core.governance import attach_thresholds, run_fairness
    from modelfleet.core.ledger import Ledger
    from modelfleet.core.registry import Registry

    registry = Registry(settings)
    run, _pinned = run_fairness(settings, args.ref, column=args.group, cost_ratio=args.cost_ratio,
                                tolerance=args.tolerance, registry=registry, progress=progress)
    search = run.search
    event = None
    if args.attach and search.feasible:
        with Ledger.from_settings(settings) as ledger:
            event = attach_thresholds(run, registry=registry, ledger=ledger)
    code = EXIT_OK if search.feasible else EXIT_CHECK_FAILED
    if args.json:
        print_json({**run.to_dict(), "attached": event is not None,
                    "ledger_seq": event.seq if event is not None else None})
        return code
    after = search.after
    before_kind = "attached thresholds" if run.before_thresholds else "the model's own threshold"
    print(f"{run.model}/{run.version} ({run.digest[:12]}): groups by {run.column}, cost ratio {args.cost_ratio:g}:1 "
          f"(FN:FP); before = {before_kind}")
    th = search.thresholds
    print_table(["GROUP", "N", "FPR BEFORE (95% CI)", "FPR AFTER (95% CI)", "FLAG RATE BEFORE", "FLAG RATE AFTER",
                 "THRESHOLD"],
                [(g, s.counts.n, _rate(s.fpr), _rate(after.groups[g].fpr), f"{s.positive_rate.value:.3f}",
                  f"{after.groups[g].positive_rate.value:.3f}", f"{th.thresholds.get(g, th.default):.4f}")
                 for g, s in run.before.groups.items()])
    print(f"FPR gap (equal opportunity): {run.before.fpr_gap.value:.3f} ({run.before.fpr_gap.describe()}) -> "
          f"{after.fpr_gap.value:.3f} (tolerance {search.tolerance:g})")
    print(f"demographic parity difference: {run.before.parity.value:.3f} -> {after.parity.value:.3f}")
    print(f"expected cost per decision: {run.before.cost:.4f} -> {after.cost:.4f}")
    print(f"thresholds sha256 {th.sha256[:12]}; default {th.default:.4f} for groups not listed")
    if not search.feasible:
        print(f"no thresholds bring every group within {search.tolerance:g} on this data (groups too small?); "
              "nothing attached")
    elif event is not None:
        print(f"attached to {run.model}/{run.version} (ledger #{event.seq}): its next release applies them; run the "
              f"gate again (modelfleet gate {run.model}/{run.version} --env ENV) and request approval anew")
    else:
        print(f"to use them: modelfleet fairness {args.ref} --group {run.column} --cost-ratio {args.cost_ratio:g} "
              "--attach")
    return code
