"""Terraform's machine-readable UI lines -> typed events (runners/terraform_events.py); lines as both engines
print them (terraform 1.11 binary, the embedded 1.15)."""

from __future__ import annotations

import json

from modelfleet.runners.terraform_events import (
    ChangeSummary,
    Diagnostic,
    LogLine,
    OutputValues,
    PlannedChange,
    ProvisionerOutput,
    ResourceProgress,
    parse_ui_line,
)

RES = {"addr": 'terraform_data.node["edge-cpu-01"]', "module": "", "resource_type": "terraform_data"}


def line(kind: str, **extra: object) -> dict[str, object]:
    return {"@level": "info", "@message": f"a {kind} line", "@module": "terraform.ui",
            "@timestamp": "2026-12-04T15:48:27.029110Z", "type": kind, **extra}


def test_planned_change_and_drift() -> None:
    event = parse_ui_line(line("planned_change", change={"resource": RES, "action": "create"}), "plan")
    assert event == PlannedChange(step="plan", at=event.at, address=RES["addr"], action="create", drift=False)
    assert event.at.year == 2026 and event.at.tzinfo is not None
    drift = parse_ui_line(line("resource_drift", change={"resource": RES, "action": "update"}))
    assert isinstance(drift, PlannedChange) and drift.drift and "drifted" in drift.text


def test_apply_hooks_become_resource_progress() -> None:
    start = parse_ui_line(line("apply_start", hook={"resource": RES, "action": "create"}), "apply")
    done = parse_ui_line(line("apply_complete", hook={"resource": RES, "action": "create", "id_value": "abc",
                                                      "elapsed_seconds": 3}), "apply")
    failed = parse_ui_line(line("apply_errored", hook={"resource": RES, "action": "delete", "elapsed_seconds": 1}))
    refresh = parse_ui_line(line("refresh_complete", hook={"resource": RES}))
    assert isinstance(start, ResourceProgress) and (start.phase, start.action) == ("start", "create")
    assert isinstance(done, ResourceProgress)
    assert (done.phase, done.id_value, done.elapsed_s) == ("complete", "abc", 3.0)
    assert isinstance(failed, ResourceProgress) and failed.phase == "errored"
    assert isinstance(refresh, ResourceProgress) and refresh.action == "refresh"


def test_provisioner_output() -> None:
    event = parse_ui_line(line("provision_progress", hook={"resource": RES, "provisioner": "local-exec",
                                                            "output": "edge-cpu-01 is up"}))
    assert isinstance(event, ProvisionerOutput)
    assert (event.provisioner, event.phase, event.output) == ("local-exec", "progress", "edge-cpu-01 is up")


def test_change_summary_and_outputs() -> None:
    summary = parse_ui_line(line("change_summary", changes={"add": 2, "change": 1, "import": 0, "remove": 3,
                                                             "operation": "apply"}))
    assert summary == ChangeSummary(step="", at=summary.at, operation="apply", add=2, change=1, remove=3)
    outputs = parse_ui_line(line("outputs", outputs={
        "nodes": {"sensitive": False, "value": [{"name": "edge-cpu-01"}]},
        "token": {"sensitive": True, "value": "secret"},
        "planned": {"sensitive": False, "action": "create"},
    }))
    assert isinstance(outputs, OutputValues)
    assert outputs.names == ("nodes", "token", "planned")
    assert outputs.values == {"nodes": [{"name": "edge-cpu-01"}]}  # sensitive and unknown values never kept


def test_diagnostic_names_file_and_line() -> None:
    raw = json.loads('{"@level":"error","@message":"Error: No value for required variable","@module":"terraform.ui",'
                     '"diagnostic":{"severity":"error","summary":"No value for required variable","detail":"The '
                     'root module input variable \\"region\\" is not set","range":{"filename":"variables.tf",'
                     '"start":{"line":1,"column":1,"byte":0}}},"type":"diagnostic"}')
    event = parse_ui_line(raw, "plan")
    assert isinstance(event, Diagnostic)
    assert (event.severity, event.summary, event.filename, event.line) == (
        "error", "No value for required variable", "variables.tf", 1)
    assert event.text.startswith("error: No value for required variable (variables.tf:1)")


def test_unknown_and_malformed_lines_never_raise() -> None:
    assert isinstance(parse_ui_line(line("something_new_in_2030")), LogLine)
    assert isinstance(parse_ui_line({"type": "change_summary", "changes": {"add": "many"}}), LogLine)
    assert isinstance(parse_ui_line({"type": "apply_start", "hook": "not a dict"}), LogLine)
    version = parse_ui_line({"type": "version", "@message": "Terraform 1.15.5", "terraform": "1.15.5"})
    assert isinstance(version, LogLine) and version.text == "Terraform 1.15.5"
