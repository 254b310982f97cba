"""Pure parts of the wire layer: fleet's page tokens and PATCH validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.api.schema import MachinePatchOp, PageToken, paginate, validate_patch
from fleet.errors import InvalidInput
from fleet.machines import MetadataChange


@pytest.mark.parametrize(
    ("token", "text"),
    [
        pytest.param(PageToken(100, 2), "ZAACAA==", id="fleet-second-page"),
        pytest.param(PageToken(19, 11852), "EwBMLg==", id="fleet-test-token"),
    ],
)
def test_token_bytes_match_fleet(token: PageToken, text: str) -> None:
    assert token.encode() == text
    assert PageToken.decode(text, token.limit) == token


@given(st.integers(1, 0xFFFF), st.integers(1, 0xFFFF), st.integers(0, 2**64 - 1))
def test_token_round_trips(limit: int, page: int, revision: int) -> None:
    token = PageToken(limit, page, revision)
    assert PageToken.decode(token.encode(), limit) == token


def test_token_with_a_revision_extends_fleets_bytes() -> None:
    # fleet's {Limit, Page}, then the etcd revision: 12 bytes, still URL-safe base64.
    token = PageToken(100, 2, 0x0102030405060708)
    assert token.encode() == "ZAACAAgHBgUEAwIB"
    assert token.next() == PageToken(100, 3, 0x0102030405060708)


@given(st.lists(st.integers(), max_size=30), st.integers(1, 7))
def test_pages_cover_the_list_exactly_once(items: list[int], limit: int) -> None:
    token, seen = PageToken(limit), []
    while True:
        page, next_text = paginate(items, token)
        seen += page
        if not next_text:
            break
        assert page, "a next token is only issued when more items exist"
        token = PageToken.decode(next_text, limit)
    assert seen == items


@pytest.mark.parametrize(
    "text", ["ZAACAA", "ZAAC+A==", "ZAAC/A==", "ZAACAA==ZA==", "ZAACAAAA", "\u00e9"]
)
def test_malformed_tokens_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        PageToken.decode(text, 100)


def test_patch_accepts_both_value_shapes() -> None:
    ops = [
        MachinePatchOp(op="add", path="/m1/metadata/a", value={"value": "1"}),  # type: ignore[arg-type]
        MachinePatchOp(op="replace", path="/m1/metadata/b.c-d_e", value="2"),
        MachinePatchOp(op="remove", path="/m2/metadata/a"),
    ]
    assert validate_patch(ops) == [
        MetadataChange("m1", "a", "1"),
        MetadataChange("m1", "b.c-d_e", "2"),
        MetadataChange("m2", "a", None),
    ]
