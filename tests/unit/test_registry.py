"""Registry against the embedded SQLite registry (seeded once per session): list, versions, aliases, pinning,
the content-addressed cache, pagination, reference sample and input example, and CLI errors (exit 2)."""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.cli import main
from modelfleet.core.artifact_cache import tree_digest
from modelfleet.core.errors import ArtifactError, ModelNotFound, RegistryUnavailable, VersionNotFound
from modelfleet.core.registry import (
    REFERENCE_SAMPLE_TAG,
    Registry,
    input_example_frame,
    read_input_example,
    read_signature,
)
from modelfleet.demo import GROUP_COLUMN
from modelfleet.demo.data import INPUT_COLUMNS
from tests.unit.registry_support import make_settings, record_connects, seeded_project


@pytest.fixture(scope="module")
def project() -> Path:
    return seeded_project()[0]


@pytest.fixture
def registry(project: Path) -> Registry:
    return Registry(make_settings(project))


@pytest.fixture
def fresh_cache(project: Path, tmp_path: Path) -> Registry:
    """The seeded registry with an empty cache of its own."""
    return Registry(make_settings(project, MODELFLEET_REGISTRY_CACHE_DIR=str(tmp_path / "cache")))


def test_list_models(registry: Registry) -> None:
    models = {m.name: m for m in registry.list_models()}
    cr = models["credit-risk"]
    assert cr.aliases == {"champion": 2, "challenger": 3}
    assert cr.latest_version >= 3 if cr.latest_version else False
    assert "lending" in cr.description


def test_versions_carry_aliases_metrics_and_run_data(registry: Registry) -> None:
    versions = registry.list_versions("credit-risk")
    demo = {v.tags.get("modelfleet.demo"): v for v in versions}
    assert [demo[k].version for k in ("v1", "v2", "v3")] == [1, 2, 3]
    assert [v.version for v in versions] == sorted((v.version for v in versions), reverse=True)
    assert demo["v2"].aliases == ("champion",) and demo["v3"].aliases == ("challenger",)
    assert demo["v1"].aliases == ()
    for v in demo.values():
        assert {"auc", "accuracy", "ece", "fpr_gap", "demographic_parity_difference"} <= set(v.metrics)
        assert float(v.params["threshold"]) > 0 and v.params["cost_ratio_fn_fp"] == "5"
        assert v.run_id and v.status == "READY" and v.created is not None and v.source
        assert v.tags[REFERENCE_SAMPLE_TAG] == "reference/reference.csv"
    assert registry.list_versions("credit-risk", limit=2)[0].version == versions[0].version
    assert len(registry.list_versions("credit-risk", limit=2)) == 2


@pytest.mark.parametrize(("ref", "version"), [("credit-risk@champion", 2), ("credit-risk@challenger", 3),
                                              ("credit-risk/1", 1)])
def test_resolve(registry: Registry, ref: str, version: int) -> None:
    assert registry.resolve(ref).version == version


def test_latest_is_the_highest_version(registry: Registry) -> None:
    highest = max(v.version for v in registry.list_versions("credit-risk", with_runs=False))
    assert registry.resolve("credit-risk@latest").version == highest


def test_unknown_model_alias_and_version_name_what_exists(registry: Registry) -> None:
    with pytest.raises(ModelNotFound, match=r"'nope'.*known models: .*credit-risk"):
        registry.resolve("nope@champion")
    with pytest.raises(VersionNotFound, match=r"no alias 'gold'.*champion -> 2"):
        registry.resolve("credit-risk@gold")
    with pytest.raises(VersionNotFound, match="no version 99"):
        registry.resolve("credit-risk/99")


def test_pin_digest_matches_and_is_stable_across_downloads(fresh_cache: Registry, project: Path) -> None:
    first = fresh_cache.pin("credit-risk@champion")
    assert (first.name, first.version, first.aliases) == ("credit-risk", 2, ("champion",))
    assert not first.cached
    assert len(first.digest) == 64 and first.path == fresh_cache.cache.path_for(first.digest)
    assert tree_digest(first.path) == first.digest
    assert (first.path / "MLmodel").is_file()
    # The digest of the artifact as stored by MLflow equals the digest of the download.
    store = project / ".modelfleet" / "mlartifacts"
    stored = [p.parent for p in store.rglob("MLmodel")]
    assert first.digest in {tree_digest(p) for p in stored}

    again = fresh_cache.pin("credit-risk/2")
    assert again.cached and again.digest == first.digest  # same version: no second download

    shutil.rmtree(fresh_cache.cache.root)  # a different machine / an emptied cache
    third = fresh_cache.pin("credit-risk@champion")
    assert not third.cached and third.digest == first.digest


def test_second_pin_does_not_download(fresh_cache: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    original = fresh_cache._download_version

    def counting(name: str, version: int, files: Path | None = None) -> Any:
        fetch = original(name, version, files)

        def counted(tmp: Path) -> Path:
            calls.append((name, version))
            return fetch(tmp)

        return counted

    monkeypatch.setattr(fresh_cache, "_download_version", counting)
    fresh_cache.pin("credit-risk@challenger")
    fresh_cache.pin("credit-risk@challenger")
    fresh_cache.pin("credit-risk/3")
    assert [c for c in calls if c == ("credit-risk", 3)] == [("credit-risk", 3)]


def test_moving_an_alias_after_pinning_keeps_the_pin(registry: Registry) -> None:
    pinned = registry.pin("credit-risk@champion")
    try:
        registry.set_alias("credit-risk", "champion", 3)
        assert registry.resolve("credit-risk@champion").version == 3
        assert pinned.version == 2
        path = registry.fetch(pinned)
        assert tree_digest(path) == pinned.digest
        assert registry.pin("credit-risk@champion").digest != pinned.digest
    finally:
        registry.set_alias("credit-risk", "champion", 2)


def test_corrupt_cache_is_downloaded_again(fresh_cache: Registry) -> None:
    pinned = fresh_cache.pin("credit-risk/1")
    (pinned.path / "MLmodel").write_text("tampered\n")
    path = fresh_cache.fetch(pinned)
    assert tree_digest(path) == pinned.digest
    repinned = fresh_cache.pin("credit-risk/1")
    assert repinned.cached and repinned.digest == pinned.digest


def test_fetch_refuses_an_artifact_that_changed_since_pinning(fresh_cache: Registry) -> None:
    pinned = fresh_cache.pin("credit-risk/1")
    shutil.rmtree(pinned.path)
    forged = type(pinned)(**{**pinned.__dict__, "digest": "0" * 64})
    with pytest.raises(ArtifactError, match="was pinned"):
        fresh_cache.fetch(forged)


def test_pagination_over_thirty_versions(project: Path) -> None:
    settings = make_settings(project, MODELFLEET_REGISTRY_PAGE_SIZE="7")
    registry = Registry(settings)
    client = registry.client
    source = client.get_model_version_download_uri("credit-risk", "1")
    if "paged-model" not in {m.name for m in registry.list_models()}:
        client.create_registered_model("paged-model")
        for _ in range(30):
            client.create_model_version("paged-model", source=source)
    calls: list[int] = []
    search = client.search_model_versions

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["max_results"])
        return search(*args, **kwargs)

    client.search_model_versions = counting
    try:
        versions = registry.list_versions("paged-model", with_runs=False)
        assert [v.version for v in versions] == list(range(30, 0, -1))
        assert len(calls) >= 5 and max(calls) == 7
        calls.clear()
        assert [v.version for v in registry.list_versions("paged-model", limit=10)] == list(range(30, 20, -1))
        assert sum(calls) == 10
        assert registry.resolve("paged-model@latest").version == 30
    finally:
        del client.search_model_versions
    assert {"credit-risk", "paged-model"} <= {m.name for m in registry.list_models()}


def test_reference_sample_and_input_example(registry: Registry) -> None:
    sample = registry.load_reference_sample("credit-risk", 2)
    assert list(sample.columns) == list(INPUT_COLUMNS)
    assert len(sample) == 2000 and set(sample[GROUP_COLUMN]) == {"A", "B", "C", "D"}
    assert registry.reference_sample_path("credit-risk", 2).is_file()
    pinned = registry.pin("credit-risk@champion")
    example = read_input_example(pinned.path)
    assert example["columns"] == list(INPUT_COLUMNS) and len(example["data"]) == 5
    frame = input_example_frame(pinned.path)
    assert GROUP_COLUMN in frame.columns and len(frame) == 5
    signature = read_signature(pinned.path)
    assert signature is not None
    assert [c["name"] for c in signature["inputs"]] == list(INPUT_COLUMNS)


# -- CLI ---------------------------------------------------------------------------------------------------


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import os

    for key in list(os.environ):
        if key.startswith("MODELFLEET_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(project)
    yield project


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[0].startswith("modelfleet: ")
    assert all(line.startswith("  fix: ") for line in err[1:]) and len(err) <= 2
    assert "Traceback" not in "\n".join(err)
    return err[0]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["registry", "show", "nope@champion"], "no registered model named 'nope'"),
        (["registry", "versions", "nope"], "no registered model named 'nope'"),
        (["registry", "show", "credit-risk@gold"], "no alias 'gold'"),
        (["registry", "show", "credit-risk@@x"], "more than one '@'"),
        (["registry", "show", "credit-risk/42", "--pin"], "no version 42"),
        (["registry", "versions", "bad name!"], "is not valid"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    in_project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    assert main(argv) == 2
    assert fragment in _one_line_error(capsys)


def test_cli_unreachable_server_exits_2_after_one_bounded_attempt(
    in_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.60.2", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MODELFLEET_REGISTRY_TRACKING_URI", f"http://127.0.60.2:{port}")
    monkeypatch.setenv("MODELFLEET_REGISTRY_TIMEOUT_S", "2")
    connects = record_connects(monkeypatch)
    assert main(["registry", "list"]) == 2
    # fast = one connection attempt, bounded by registry.timeout_s, and no retries (MLflow's default retries
    # with backoff would take minutes); how fast in seconds is the machine's business, not the test's
    assert connects == [(("127.0.60.2", port), 2.0)]
    line = _one_line_error(capsys)
    assert f"127.0.60.2:{port}" in line and "unreachable" in line


def test_unreachable_is_registry_unavailable(project: Path) -> None:
    settings = make_settings(project, MODELFLEET_REGISTRY_TRACKING_URI="http://127.0.60.2:1")
    with pytest.raises(RegistryUnavailable, match=re.escape("127.0.60.2:1")):
        Registry(settings).list_models()


def test_cli_list_versions_show(in_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["registry", "list"]) == 0
    assert "credit-risk" in capsys.readouterr().out
    assert main(["registry", "versions", "credit-risk", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "champion" in out and "FPR_GAP" in out
    assert main(["registry", "show", "credit-risk@champion", "--json", "--pin"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["version"]["version"] == 2 and len(data["pin"]["digest"]) == 64
    assert main(["registry", "show", "credit-risk@challenger"]) == 0
    assert "challenger" in capsys.readouterr().out
