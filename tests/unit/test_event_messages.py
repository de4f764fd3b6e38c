"""The line a failed task shows (run summary, console, ledger) says what went wrong, not Ansible's "see below"."""

from __future__ import annotations

from modelfleet.runners.events import first_message


def test_a_failed_loop_shows_its_failed_items_error_not_one_or_more_items_failed() -> None:
    # the edge_runtime wheelhouse task (a command looped over architectures) as a CI run saw it: the summary
    # said only "One or more items failed"
    res = {"msg": "One or more items failed", "failed": True, "changed": False, "results": [
        {"item": "aarch64", "failed": False, "rc": 0, "stdout": "{}"},
        {"item": "x86_64", "failed": True, "rc": 1, "msg": "non-zero return code",
         "stderr": "wheelhouse: building the modelfleet wheel failed (exit 1): ERROR: Failed building wheel"},
    ]}
    assert first_message(res) == ("wheelhouse: building the modelfleet wheel failed (exit 1): ERROR: Failed "
                                  "building wheel")


def test_a_command_shows_its_stderr_and_falls_back_to_the_generic_words() -> None:
    assert first_message({"msg": "non-zero return code", "stderr": "no space left"}) == "no space left"
    assert first_message({"msg": "non-zero return code", "stderr": ""}) == "non-zero return code"
    assert first_message({"msg": "One or more items failed", "results": []}) == "One or more items failed"
    assert first_message({"msg": "the lock is held by run r1"}) == "the lock is held by run r1"
    assert first_message({}) is None
