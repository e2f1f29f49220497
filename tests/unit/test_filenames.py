"""Upload filenames: the check and the OpenAPI document's pattern say the same thing."""

from __future__ import annotations

import re
import unicodedata

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_jobs.filenames import (
    FILENAME_PATTERN,
    MAX_FILENAME_BYTES,
    REFUSED_CHARACTERS,
    filename_problem,
)

PATTERN = re.compile(FILENAME_PATTERN)
ECMA = jsonschema_rs.validator_for({"type": "string", "pattern": FILENAME_PATTERN})


@pytest.mark.parametrize(
    "name",
    ["a", "notes.txt", "données 1.csv", "report (final).pdf", "x" * 200, "😀.png", "outer"],
)
def test_ordinary_names_are_accepted_by_both(name: str) -> None:
    # Given an ordinary filename, When checked, Then the validator and the pattern accept it
    assert filename_problem(name) is None
    assert PATTERN.search(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "out",
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        ".env",
        "-rf",
        "a ",
        " a",
        "a.",
        "a\n",
        "a\x00",
        "x" * 201,
        "a\u202eb",
        "a\u200bb",
        "a\ufeff",
        "a\U000e0041",
        "a\U000f0000",
        "a\u2028b",
    ],
)
def test_hostile_names_are_refused_by_both(name: str) -> None:
    # Given a hostile filename, When checked, Then both refuse it, and so does the pattern as
    # a JSON Schema validator (ECMA-262 dialect) reads it
    assert filename_problem(name) is not None
    assert not PATTERN.search(name)
    assert not ECMA.is_valid(name)


def test_the_pattern_is_a_json_schema_regex() -> None:
    # Given the OpenAPI document's pattern, When a JSON Schema validator compiles it, Then it
    # accepts ordinary names (it did not fall back to ignoring the pattern)
    assert ECMA.is_valid("données 1.csv") and ECMA.is_valid("😀.png")


@settings(max_examples=300)
@given(st.from_regex(PATTERN))
def test_every_name_the_pattern_allows_is_accepted_within_the_byte_limit(name: str) -> None:
    # Given any name the document's pattern allows (what a fuzzer sends)
    # When it is checked
    # Then it is accepted, unless it is over the byte limit no pattern can state
    if len(name.encode("utf-8", "surrogatepass")) <= MAX_FILENAME_BYTES:
        assert filename_problem(name) is None, name


def test_the_refused_ranges_are_this_unicode_versions_categories() -> None:
    # Given the categories the rules refuse
    refused = re.compile(f"[{REFUSED_CHARACTERS}]")
    categories = {"Cc", "Cf", "Co", "Zl", "Zp"}
    # When every code point but the surrogates is classified, Then the spelled-out ranges are
    # exactly them (a newer Python's Unicode may add some: refresh the ranges then)
    wrong = [
        cp
        for cp in range(0x110000)
        if not 0xD800 <= cp <= 0xDFFF
        and (unicodedata.category(chr(cp)) in categories) != bool(refused.match(chr(cp)))
    ]
    assert wrong == [], f"refresh REFUSED_CHARACTERS (Unicode {unicodedata.unidata_version})"
