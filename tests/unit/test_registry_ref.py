"""Model references: the three accepted forms and a clear UsageError for everything else."""

from __future__ import annotations

import pytest

from modelfleet.core.errors import UsageError
from modelfleet.core.reference import ModelRef, parse_ref


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("credit-risk@champion", ModelRef("credit-risk", alias="champion"), "alias"),
        ("credit-risk/7", ModelRef("credit-risk", version=7), "version"),
        ("credit-risk@latest", ModelRef("credit-risk", alias="latest"), "latest"),
        ("models:/credit-risk/2", ModelRef("credit-risk", version=2), "version"),
        ("models:/credit-risk@challenger", ModelRef("credit-risk", alias="challenger"), "alias"),
        ("  fraud.v2_model@shadow-1 ", ModelRef("fraud.v2_model", alias="shadow-1"), "alias"),
    ],
)
def test_valid_references(text: str, expected: ModelRef, kind: str) -> None:
    ref = parse_ref(text)
    assert ref == expected
    assert ref.kind == kind
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("credit-risk@@x", "more than one '@'"),
        ("credit-risk@x@y", "more than one '@'"),
        ("", "empty model reference"),
        ("   ", "empty model reference"),
        ("credit-risk", "names no version or alias"),
        ("credit-risk@", "empty alias"),
        ("@champion", "no model name"),
        ("credit-risk/0", "not a positive whole number"),
        ("credit-risk/-1", "not a positive whole number"),
        ("credit-risk/x", "not a positive whole number"),
        ("credit-risk/1/2", "not a positive whole number"),
        ("credit-risk/²", "not a positive whole number"),
        ("credit risk@champion", "whitespace"),
        ("credit;rm@champion", "is not valid"),
        ("credit-risk@cham$pion", "is not valid"),
        ("credit-risk@1st", "is not valid"),
        ("-risk@champion", "is not valid"),
    ],
)
def test_malformed_references(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_ref(text)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message
    assert caught.value.hint and "credit-risk@champion" in caught.value.hint
    assert caught.value.exit_code == 2


def test_model_ref_needs_exactly_one_target() -> None:
    with pytest.raises(ValueError):
        ModelRef("m")
    with pytest.raises(ValueError):
        ModelRef("m", version=1, alias="a")
