"""Query normalization: one pure, versioned function that turns raw query text
into the string the caches are keyed on and the encoder sees.

The output depends on ``NORMALIZATION_VERSION`` and on the Unicode database of
the interpreter (``unicodedata.unidata_version``; Python 3.11 ships 14.0.0, and
the project pins 3.11). Bump the version whenever ``normalize`` can return
something different for any input: cache keys embed it, so stale entries are
simply never read again.

What it does, in order (the whole pass is repeated until it is stable, see
``normalize``):

1. Unicode quote, dash and fraction-slash variants map to ASCII (’ ‘ ′ ʼ → ',
   “ ” ″ « » → ", – — ‐ − → -, ⁄ → /). This runs before NFKC as well, because
   NFKC turns ″ into two primes and ´ into a space plus a combining accent.
2. NFKC, then ``str.casefold``, then NFKC again (casefolding can un-normalize a
   few characters; this is Unicode's NFKC_Casefold recipe).
3. Control and whitespace characters (Cc, Zs, Zl, Zp) become a space. Format
   characters (Cf: soft hyphen, BOM, bidi marks, zero-width joiner), lone
   surrogates (Cs), private-use (Co) and unassigned (Cn) code points and
   variation selectors are dropped without a space, so an invisible character
   inside a word does not split it. Decision on the zero-width joiner: it is
   dropped, so an emoji ZWJ sequence (👩‍💻) becomes its component emoji (👩💻).
   The encoder's WordPiece vocabulary has no entry for such sequences anyway,
   and keeping an invisible character would split cache keys for no gain.
4. Punctuation policy, per whitespace-separated token (see ``_resolve``):
   punctuation that carries meaning is kept -- a single joiner between two
   word characters (``t-shirt``, ``3.5``, ``women's``, ``s.oliver``, ``h&m``,
   ``beige/black``, ``1/2``), ``,`` and ``:`` between digits (``1,000``),
   a unit mark after a digit (``5'x8'``, ``24"``, ``100%``; ``5''`` → ``5"``),
   ``+`` after a word character (``c++``, ``18+``), a leading decimal point
   before a digit (``.5``) and a lone ``&`` between two words (``town &
   country``). Everything else becomes a space: trailing ``!!!`` and ``?``,
   quotes, brackets, commas, leading or trailing dashes and dots, ``...``.
   Repeated joiners collapse (``t--shirt`` → ``t-shirt``). Word characters are
   letters, marks, digits and non-ASCII symbols (``₹``, emoji, ``×``), plus
   ``$``; all other ASCII punctuation is subject to the rules above.
5. Whitespace collapses to single spaces; the ends are stripped.
6. The result is cut to ``max_chars`` code points, never between a base
   character and its combining marks, and the pass is re-run on the cut text:
   a cut can expose a trailing separator (``town &``) that must go too.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_QUERY_CHARS", "NORMALIZATION_VERSION", "normalize"]

NORMALIZATION_VERSION: int = 1
MAX_QUERY_CHARS: int = 512

# Variants people (and keyboards) type for ' " - /. Mapped before NFKC as well as
# after, since NFKC maps some of them to yet other variants (″ → ′′).
_VARIANTS = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2035\u02bc\u02b9\u0060\u00b4\uff07", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u2036\u02ba\u00ab\u00bb\uff02", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\uff0d", "-"),
        **dict.fromkeys("\u2044\u2215", "/"),
    }
)

_SPACE_CATEGORIES = frozenset({"Cc", "Zs", "Zl", "Zp"})
_DROP_CATEGORIES = frozenset({"Cf", "Cs", "Co", "Cn"})
# Joiners kept (collapsed to one) between two word characters.
_COLLAPSING_JOINERS = frozenset("-_/&'")
_UNIT_MARKS = frozenset("'\"%")
# A clean string is normally stable after one extra pass; the bound only guards
# against a pathological Unicode interaction we have not found (see normalize).
_MAX_PASSES = 8


def normalize(text: str, *, max_chars: int = MAX_QUERY_CHARS) -> str:
    """Return the normalized form of ``text``, at most ``max_chars`` characters.

    Total over ``str`` (lone surrogates included) and idempotent:
    ``normalize(normalize(x)) == normalize(x)`` for the same ``max_chars``.
    Raises ValueError only for a negative ``max_chars``.
    """
    if max_chars < 0:
        raise ValueError(f"max_chars must be >= 0, got {max_chars}")
    out = _pass(text)
    # Iterate to a fixed point of "cut, then clean": that fixed point is what
    # makes the function idempotent even when NFKC/casefold interact or the
    # cut leaves an edge separator behind.
    for _ in range(_MAX_PASSES):
        again = _pass(_truncate(out, max_chars))
        if again == out:
            return out
        out = again
    # Unreachable in practice (no input found needs more than three passes);
    # "" is a fixed point, so idempotence holds even here.
    return ""


def _pass(text: str) -> str:
    text = unicodedata.normalize("NFKC", text.translate(_VARIANTS))
    text = unicodedata.normalize("NFKC", text.casefold()).translate(_VARIANTS)
    text = "".join(_map_char(c) for c in text)
    tokens = [_clean_token(token) for token in text.split()]
    return " ".join(_keep_lone_ampersands(" ".join(tokens).split()))


def _map_char(c: str) -> str:
    if c.isascii():
        return " " if c.isspace() or not c.isprintable() else c
    category = unicodedata.category(c)
    if category in _SPACE_CATEGORIES:
        return " "
    if category in _DROP_CATEGORIES or _is_variation_selector(c):
        return ""
    return c


def _is_variation_selector(c: str) -> bool:
    code = ord(c)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


def _is_word(c: str) -> bool:
    if c.isascii():
        return c.isalnum() or c == "$"
    category = unicodedata.category(c)
    return category[0] in "LMN" or category in ("So", "Sc", "Sm")


def _clean_token(token: str) -> str:
    """Apply the punctuation policy to one token (no whitespace inside)."""
    out: list[str] = []
    i, n = 0, len(token)
    while i < n:
        if _is_word(token[i]):
            out.append(token[i])
            i += 1
            continue
        j = i + 1
        while j < n and not _is_word(token[j]):
            j += 1
        run, prev, nxt = token[i:j], token[i - 1] if i > 0 else None, token[j] if j < n else None
        if prev is None and nxt is None and set(run) == {"&"}:
            out.append("&")  # a token of only '&': _keep_lone_ampersands decides
        else:
            out.append(_resolve(run, prev, nxt))
        i = j
    return "".join(out)


def _resolve(run: str, prev: str | None, nxt: str | None) -> str:
    """What a maximal run of non-word characters becomes, given its neighbours
    (``None`` at a token edge). Returns the kept text or a single space."""
    if prev is not None and prev.isdecimal() and run[0] in _UNIT_MARKS:
        mark, rest = ('"', run[2:]) if run.startswith("''") else (run[0], run[1:])
        return mark + (" " if rest else "")
    if prev is not None and run[0] == "+":
        rest = run.lstrip("+")
        return run[: len(run) - len(rest)] + (" " if rest else "")
    if prev is not None and nxt is not None:
        first = run[0]
        if first in _COLLAPSING_JOINERS and run == first * len(run):
            return first
        if run == "." or (run in (",", ":") and prev.isdecimal() and nxt.isdecimal()):
            return run
        return " "
    if prev is None and nxt is not None and run == "." and nxt.isdecimal():
        return "."
    return " "


def _keep_lone_ampersands(tokens: list[str]) -> list[str]:
    """Keep a standalone '&' only between two words (``black & white``)."""
    kept: list[str] = []
    for i, token in enumerate(tokens):
        if token != "&":
            kept.append(token)
        elif kept and kept[-1] != "&" and i + 1 < len(tokens) and tokens[i + 1] != "&":
            kept.append(token)
    return kept


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = max_chars
    # Back off so that a base character is not separated from its marks.
    while cut > 0 and unicodedata.category(text[cut])[0] == "M":
        cut -= 1
    return text[: cut or max_chars].rstrip()
