"""The query normalizer: a table of examples, then properties over all of Unicode."""

from __future__ import annotations

import hashlib
import random
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.normalize import MAX_QUERY_CHARS, NORMALIZATION_VERSION, normalize

EXAMPLES = [
    # (id, raw, normalized)
    ("lower", "Round Neck T-Shirts", "round neck t-shirts"),
    ("upper", "ROUND NECK T-SHIRTS", "round neck t-shirts"),
    ("whitespace", "  round  neck\tt-shirts \n", "round neck t-shirts"),
    ("nbsp", "round\u00a0neck t-shirts", "round neck t-shirts"),
    ("ideographic-space", "round\u3000neck", "round neck"),
    ("full-width", "ｔ－ｓｈｉｒｔ ＦＯＲ ｍｅｎ", "t-shirt for men"),
    ("trailing-bang", "casual watches!!!", "casual watches"),
    ("trailing-question", "casual watches??", "casual watches"),
    ("trailing-dot", "jealous 21 top.", "jealous 21 top"),
    ("hyphen-kept", "t-shirt", "t-shirt"),
    ("hyphen-collapsed", "t--shirt", "t-shirt"),
    ("en-dash", "t\u2013shirt", "t-shirt"),
    ("edge-dashes", "--sale--", "sale"),
    ("lone-dash", "shoes - nike", "shoes nike"),
    ("decimal", "3.5 inch drawer pull", "3.5 inch drawer pull"),
    ("leading-decimal", ".5 inch", ".5 inch"),
    ("ellipsis", "shoes...nike", "shoes nike"),
    ("ellipsis-char", "shoes\u2026nike", "shoes nike"),
    ("feet", "5'x8' rug", "5'x8' rug"),
    ("inches", 'fawkes 36" blue vanity', 'fawkes 36" blue vanity'),
    ("double-prime", "24\u2033 vanity", '24" vanity'),
    ("two-apostrophes-inch", "24'' vanity", '24" vanity'),
    ("possessive", "women's top", "women's top"),
    ("curly-possessive", "Women\u2019s Top", "women's top"),
    ("percent", "100% cotton", "100% cotton"),
    ("ampersand-inner", "H&M jeans", "h&m jeans"),
    ("ampersand-lone", "Town & Country living curtains", "town & country living curtains"),
    ("ampersand-edge", "& more", "more"),
    ("plus", "c++ mug", "c++ mug"),
    ("fraction", "3 1/2 inch", "3 1/2 inch"),
    ("fraction-char", "\u00bd inch", "1/2 inch"),
    ("mixed-fraction", "wisdom stone river 3-3/4", "wisdom stone river 3-3/4"),
    ("slash", "beige/black area rug", "beige/black area rug"),
    ("brand-dot", "S.Oliver top", "s.oliver top"),
    ("thousands", "1,000 thread count", "1,000 thread count"),
    ("comma", "decor floral, multicolored", "decor floral multicolored"),
    ("brackets", "teal (prints)", "teal prints"),
    ("quotes", '"nike" shoes', "nike shoes"),
    ("curly-quotes", "\u201cnike\u201d shoes", "nike shoes"),
    ("currency", "shoes under $50", "shoes under $50"),
    ("sharp-s", "Straße", "strasse"),
    ("combining", "cafe\u0301", "caf\u00e9"),
    ("soft-hyphen", "t-sh\u00adirt", "t-shirt"),
    ("zero-width-joiner", "\U0001f469\u200d\U0001f4bb mug", "\U0001f469\U0001f4bb mug"),
    ("variation-selector", "\u2764\ufe0f dress", "\u2764 dress"),
    ("control", "red\x00shoes\x07", "red shoes"),
    ("lone-surrogate", "\ud800red shoes", "red shoes"),
    ("only-punctuation", "?!...", ""),
    ("empty", "", ""),
]


@pytest.mark.parametrize(("raw", "expected"), [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES])
def test_examples(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "cap", "expected"),
    [
        ("town & country", 6, "town"),  # the cut leaves "town &"; the lone '&' must go too
        ("abc-def", 4, "abc"),  # the cut leaves "abc-"
        ("red shoes", 4, "red"),  # the cut leaves "red "
        ("cafe\u0301s", 4, "caf\u00e9"),
        ("ka\u0915\u093e", 3, "ka"),  # a Devanagari vowel sign is not cut from its consonant
        ("anything", 0, ""),
    ],
    ids=["lone-ampersand", "dangling-hyphen", "trailing-space", "composed", "mark", "zero"],
)
def test_cap_cuts_at_a_clean_boundary(raw: str, cap: int, expected: str) -> None:
    out = normalize(raw, max_chars=cap)
    assert out == expected
    assert normalize(out, max_chars=cap) == out


def test_default_cap() -> None:
    assert normalize("ab " * 1000) == ("ab " * 1000)[:MAX_QUERY_CHARS].rstrip()
    assert len(normalize("x" * 10_000)) == MAX_QUERY_CHARS


def test_negative_cap_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        normalize("x", max_chars=-1)


def _pin_corpus() -> list[str]:
    rng = random.Random(20240601)
    alphabet = [chr(c) for c in range(0x20, 0x2500)] + [*"'\"-./&+%,:!? "] * 40
    return [raw for _, raw, _ in EXAMPLES] + ["".join(rng.choices(alphabet, k=rng.randint(1, 24))) for _ in range(3000)]


# The digest of normalize() over a fixed corpus, per NORMALIZATION_VERSION.
VERSION_PINS = {1: "3f0b985882c06d12ca7d089cb7daf4282b0e87254fd410e5e5d58ac3c9449ac0"}


def test_output_change_requires_a_version_bump() -> None:
    digest = hashlib.sha256("\n".join(normalize(raw) for raw in _pin_corpus()).encode("utf-8", "surrogatepass"))
    assert digest.hexdigest() == VERSION_PINS.get(NORMALIZATION_VERSION), (
        "normalize() output changed: bump NORMALIZATION_VERSION (cache keys embed it) and pin the new digest"
    )


# Every code point, surrogates included, plus characters that exercise the rules.
any_text = st.text(st.characters(codec=None, categories=None), max_size=60)
rule_text = st.text(
    st.one_of(
        st.sampled_from([*"aZ5 -'.\"&+%/_,:!?()", "\u00a0", "\u0301", "\u200d", "\u2019", "\u2033", "ß", "ﬁ", "İ"]),
        st.characters(codec=None),
    ),
    max_size=60,
)
texts = st.one_of(any_text, rule_text)
caps = st.one_of(st.just(MAX_QUERY_CHARS), st.integers(0, 12))


@settings(max_examples=400, deadline=None)
@given(texts, caps)
def test_idempotent_and_total(text: str, cap: int) -> None:
    once = normalize(text, max_chars=cap)
    assert normalize(once, max_chars=cap) == once


@settings(max_examples=300, deadline=None)
@given(texts, caps)
def test_output_shape(text: str, cap: int) -> None:
    out = normalize(text, max_chars=cap)
    assert len(out) <= cap
    assert out == out.strip()
    assert "  " not in out
    assert not any(c.isspace() and c != " " for c in out)


ascii_words = st.text(st.sampled_from(string.ascii_letters + string.digits + " -'.&!?"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ascii_words)
def test_stable_under_case_and_width(text: str) -> None:
    # U+FF01..U+FF5E are the full-width forms of ASCII '!'..'~'.
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)
    expected = normalize(text)
    assert normalize(text.upper()) == expected
    assert normalize(text.lower()) == expected
    assert normalize(full_width) == expected
    assert normalize(text.replace(" ", "\u00a0 ")) == expected


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
STREAM = SHARED_DATA / "myntra_fashion" / "query_stream_dev.txt"
WANDS = SHARED_DATA / "wands_queries" / "queries_dev.tsv"


@pytest.mark.skipif(not STREAM.is_file(), reason="shared data not present")
def test_query_stream_folds_to_half_the_distinct_strings() -> None:
    # The stream's README: 25,401 distinct raw lines; an NFKC + casefold +
    # whitespace + trailing-punctuation normalizer leaves 12,252.
    lines = STREAM.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == 100_000
    assert len(set(lines)) == 25_401
    assert len({normalize(line) for line in lines}) == 12_252


@pytest.mark.skipif(not WANDS.is_file(), reason="shared data not present")
def test_real_queries_keep_their_meaningful_punctuation() -> None:
    queries = [line.split("\t")[1] for line in WANDS.read_text(encoding="utf-8").splitlines()[1:]]
    changed = {q: normalize(q) for q in queries if normalize(q) != " ".join(q.lower().split())}
    # Only decorative punctuation goes: `36"`, `3-3/4`, `beige/black`, `town & country` stay.
    assert changed == {
        "bedroom wall decor floral, multicolored with some teal (prints)":
            "bedroom wall decor floral multicolored with some teal prints",
    }
