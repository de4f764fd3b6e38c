"""``modelfleet registry list|versions|show``: browse the MLflow registry; ``show --pin`` pins and downloads."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modelfleet.commands._args import whole_number

if TYPE_CHECKING:
    from modelfleet.core.config import Settings
    from modelfleet.core.registry import ModelVersionInfo

TABLE_METRICS = ("auc", "accuracy", "ece", "fpr_gap", "demographic_parity_difference")
DEFAULT_LIMIT = 50


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "registry",
        help="browse registered models, versions and aliases (MLflow)",
        description="Browse the MLflow model registry named by registry.tracking_uri.",
    )
    actions = parser.add_subparsers(dest="registry_command", metavar="ACTION", required=True)

    p = actions.add_parser("list", help="registered models with their aliases")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_list)

    p = actions.add_parser("versions", help="versions of a model, newest first, with aliases and metrics")
    p.add_argument("model", help="registered model name, e.g. credit-risk")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--limit", type=whole_number(1), default=DEFAULT_LIMIT, metavar="N",
        help=f"show at most N versions (default {DEFAULT_LIMIT})",
    )
    p.set_defaults(func=run_versions)

    p = actions.add_parser(
        "show", help="one version: NAME@ALIAS, NAME/VERSION or NAME@latest",
        description="Show one version. --pin resolves the reference once, downloads the artifact into the "
        "content-addressed cache and prints its digest.",
    )
    p.add_argument("ref", help="model reference, e.g. credit-risk@champion, credit-risk/2, credit-risk@latest")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--pin", action="store_true", help="download the artifact and print its sha256 digest")
    p.set_defaults(func=run_show)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json, print_table
    from modelfleet.core.registry import Registry

    models = Registry(settings).list_models()
    if args.json:
        print_json([m.to_dict() for m in models])
        return 0
    if not models:
        print(f"no registered models in {settings.effective_registry_uri}; try: modelfleet demo seed")
        return 0
    print_table(
        ["MODEL", "LATEST", "ALIASES", "UPDATED", "DESCRIPTION"],
        [
            (
                m.name,
                m.latest_version,
                ", ".join(f"{a}->{v}" for a, v in sorted(m.aliases.items())) or None,
                _when(m.updated),
                (m.description[:60] + "...") if len(m.description) > 63 else m.description or None,
            )
            for m in models
        ],
    )
    return 0


def _version_row(v: ModelVersionInfo) -> list[Any]:
    return [
        v.version,
        ",".join(v.aliases) or None,
        v.status,
        _when(v.created),
        *(_num(v.metrics.get(k)) for k in TABLE_METRICS),
        v.params.get("threshold", "-")[:6],
        (v.run_id or "-")[:8],
    ]


def run_versions(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json, print_table
    from modelfleet.core.registry import Registry

    versions = Registry(settings).list_versions(args.model, limit=args.limit)
    if args.json:
        print_json([v.to_dict() for v in versions])
        return 0
    if not versions:
        print(f"model {args.model} has no versions")
        return 0
    print_table(
        ["VERSION", "ALIASES", "STATUS", "CREATED", "AUC", "ACC", "ECE", "FPR_GAP", "DP_DIFF", "THRESH", "RUN"],
        [_version_row(v) for v in versions],
    )
    if len(versions) == args.limit:
        print(f"(first {args.limit}; use --limit to see more)")
    return 0


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json
    from modelfleet.core.reference import parse_ref
    from modelfleet.core.registry import Registry

    ref = parse_ref(args.ref)
    registry = Registry(settings)
    pinned = registry.pin(ref) if args.pin else None
    info = registry.get_version(ref.name, pinned.version) if pinned else registry.resolve(ref)
    if args.json:
        print_json({"ref": args.ref, "version": info.to_dict(), "pin": pinned.to_dict() if pinned else None})
        return 0
    lines = [
        ("model", info.name),
        ("version", str(info.version)),
        ("resolved from", args.ref),
        ("aliases", ", ".join(info.aliases) or "-"),
        ("status", info.status),
        ("created", _when(info.created)),
        ("run", info.run_id or "-"),
        ("source", info.source),
        ("description", info.description or "-"),
    ]
    if pinned:
        lines += [
            ("digest", f"sha256:{pinned.digest}"),
            ("cache", f"{pinned.path}{' (cached)' if pinned.cached else ' (downloaded)'}"),
        ]
    width = max(len(k) for k in [*(k for k, _ in lines), *info.metrics, *info.params, *info.tags]) + 2
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    for title, mapping in (("metrics", info.metrics), ("params", info.params), ("tags", info.tags)):
        if mapping:
            print(f"{title}:")
            for key in sorted(mapping):
                value = mapping[key]
                shown = f"{value:.4f}" if isinstance(value, float) else value
                print(f"  {key:<{width - 2}}  {shown}")
    return 0
