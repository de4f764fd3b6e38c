"""The agent stays small: no mlflow import; config validation; joblib and pickle releases load natively."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelfleet.agent.config import AgentConfig, load_config, read_token
from modelfleet.agent.release import load_release, warm_and_probe
from modelfleet.core.errors import BundleError, ConfigError
from tests.agent import modelkit
from tests.agent.conftest import Models, Node
from tests.conftest import REPO_ROOT


def test_agent_never_imports_mlflow_or_textual(node: Node) -> None:
    code = (
        "import sys\n"
        "import modelfleet.agent.main, modelfleet.agent.app\n"
        "from pathlib import Path\n"
        "from modelfleet.agent.release import load_release, warm_and_probe\n"
        f"r = load_release(Path({str(node.current)!r})); warm_and_probe(r)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'textual'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                         env={"PYTHONPATH": str(REPO_ROOT / "tui"), "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == "[]"


def test_config_file_round_trip_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[server]\naddress = "127.0.50.9"\nport = 9000\n[model]\ncurrent = "models/x/current"\n'
                   '[limits]\nmax_rows = 50\nrequest_timeout_s = 2\n[log]\npath = "log/a.log"\n')
    c = load_config(cfg)
    assert (c.address, c.port, c.max_rows, c.request_timeout_s) == ("127.0.50.9", 9000, 50, 2.0)
    assert c.current == tmp_path / "models/x/current" and c.log_path == tmp_path / "log/a.log"
    for text, needle in [
        ('[server]\naddress = "0.0.0.0"\n', "every interface"),
        ('[server]\naddress = "localhost-ish"\n', "not an IP"),
        ("[server]\nport = 70000\n", "out of range"),
        ('[limits]\nmax_rows = "ten"\n', "max_rows must be int"),
        ("[bogus]\nx = 1\n", "unknown section"),
        ("[server\n", "not valid TOML"),
    ]:
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=needle):
            load_config(cfg)
    cfg.write_text('[server]\naddress = "0.0.0.0"\nallow_wildcard = true\n')
    assert load_config(cfg).address == "0.0.0.0"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    assert AgentConfig().address == "127.0.0.1"


def test_token_files(tmp_path: Path) -> None:
    t = tmp_path / "t"
    t.write_text("  s3cret-token-value \n")
    assert read_token(t, "token") == "s3cret-token-value"
    t.write_text("short")
    with pytest.raises(ConfigError, match="no usable token"):
        read_token(t, "token")
    with pytest.raises(ConfigError, match="cannot be read"):
        read_token(tmp_path / "missing", "token")
    assert read_token(None, "token") is None


def test_joblib_and_pickle_releases(tmp_path: Path, models: Models) -> None:
    import warnings

    import mlflow.sklearn

    df = modelkit.make_frame(3, seed=8)
    rel = modelkit.write_release(tmp_path / "jl", None, "7", probe=modelkit.probe_for(models.model_v1, df),
                                 joblib_model=models.model_v1)
    r = load_release(rel)
    assert r.flavor == "joblib" and r.version == "7" and r.schema is None
    assert "probe ok" in warm_and_probe(r)
    assert r.profile is None and "without a reference sample" in (r.profile_error or "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(models.model_v1, str(tmp_path / "cp"), serialization_format="cloudpickle",
                                  pip_requirements=["scikit-learn"])
    r2 = load_release(tmp_path / "cp", default_name="credit-risk", default_version="9")
    assert (r2.flavor, r2.name, r2.version) == ("sklearn", "credit-risk", "9")
    rows = df.to_dict("records")
    assert r2.score({"dataframe_records": rows}) == [int(v) for v in models.model_v1.predict(df)]


def test_a_model_without_the_sklearn_flavour_is_refused_naming_its_flavour_and_the_fix(tmp_path: Path) -> None:
    """The agent serves scikit-learn models and never imports MLflow; a pyfunc-only model is refused up front.

    (Chosen over an ``mlflow-skinny`` extra: nodes install what the controller's wheelhouse holds, not extras.)
    """
    import warnings

    import mlflow.pyfunc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # a real MLflow model with the python_function flavour only
        mlflow.pyfunc.save_model(str(tmp_path / "pyfunc"), python_model=mlflow.pyfunc.PythonModel())
    with pytest.raises(BundleError) as err:
        load_release(tmp_path / "pyfunc")
    assert "no sklearn flavour (its flavours: python_function)" in str(err.value)
    assert "scikit-learn models only" in str(err.value)
    assert "mlflow.sklearn.log_model" in (err.value.hint or "")
    # the node-side check says the same and exits 1 (refused), without a traceback
    out = subprocess.run([sys.executable, "-m", "modelfleet.agent.main", "check-release", str(tmp_path / "pyfunc")],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                         env={"PYTHONPATH": str(REPO_ROOT / "tui"), "PATH": "/usr/bin:/bin"}, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "no sklearn flavour" in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_cold_start_is_measured(start_agent: Any) -> None:
    a = start_agent()
    # the 1.5 s budget is a benchmark figure (bench/agent_cold_start.py, docs/benchmarks.md), not a test's
    assert a.ready_seconds is not None and a.ready_seconds > 0


@pytest.mark.parametrize("loadable", [True, False])
def test_the_first_load_hands_back_to_serve_whether_it_loads_or_not(node: Node, tmp_path: Path,
                                                                    loadable: bool) -> None:
    """serve() pauses the garbage collector while the model's libraries import; the hook that resumes it must run
    after the startup load however it ended, or a refused release would leave a serving agent without one."""
    import asyncio

    from modelfleet.agent.app import Agent

    calls: list[bool] = []

    async def go() -> Agent:
        agent = Agent(AgentConfig(current=node.current if loadable else tmp_path / "missing"))
        agent.after_first_load = lambda: calls.append(agent.active is not None)
        await agent.startup()
        for _ in range(600):
            if calls:
                break
            await asyncio.sleep(0.05)
        await agent.shutdown()
        return agent

    agent = asyncio.run(go())
    assert calls == [loadable]
    assert (agent.active is not None) is loadable


def test_a_reload_that_replaces_the_first_release_thaws_what_startup_froze(node: Node) -> None:
    """serve() freezes the startup allocations, the first release with them; once a reload replaces that release,
    the freeze is lifted so the old release's cyclic garbage can be collected (else it would stay for good)."""
    import asyncio
    import gc

    from tests.agent.inproc import started_agent

    async def go() -> tuple[int, int]:
        agent = await started_agent(node.current)
        gc.freeze()  # what serve()'s _resume_gc does after the first load
        frozen = gc.get_freeze_count()
        node.switch("2")
        status, report = await agent.reload(source="test")
        assert status == 200 and report["status"] == "switched", report
        await agent.shutdown()
        return frozen, gc.get_freeze_count()

    try:
        frozen, after = asyncio.run(go())
    finally:
        gc.unfreeze()
    assert frozen > 0 and after == 0
