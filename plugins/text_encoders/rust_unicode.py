"""Unicode as transformers' tokenizers (the Rust `tokenizers` library, 0.23) see it, where that
differs from Python 3.11's `str` methods and `unicodedata` (Unicode 14.0).

Each table below was measured over every code point against tokenizers 0.23.3 (the measuring
script is tests/fixtures/unicode_fuzz/measure_tables.py); the fuzz test
tests/encoders/test_unicode_fuzz.py checks the result on random strings over the whole range.

* Whitespace is Unicode's White_Space property (the regex `\\s` of its Oniguruma patterns).
  Python's `str.isspace()` also counts U+001C-U+001F (the information separators), which are
  not White_Space: there they are punctuation.
* Its regular expressions classify letters and numbers (`\\p{L}`, `\\p{N}`) with Unicode 16.0
  tables: NEWER_LETTERS / NEWER_NUMBERS are what Unicode 15.0-16.0 added. (The `regex` module
  is no substitute: it follows the newest Unicode, 17.0 in late 2026, which adds more letters
  that the reference still treats as punctuation.)
* Its `Lowercase` normalizer lower-cases character by character (so a capital sigma at the end
  of a word becomes σ, never the final ς that `str.lower()` gives) with Unicode 16.0 case
  mappings (NEWER_LOWERCASE).
* Its NFC uses older canonical combining classes: the marks in NFC_STARTERS (ccc != 0 for
  Python) are starters there, so they block composition and are never reordered; and it does
  not compose U+11935 U+11930 into U+11938 (Unicode 13.0 gave that letter a decomposition).
* Its grapheme clusters (which XLM-R's normalizer replaces whole when short) follow Unicode 16.0;
  `regex`'s `\\X` follows the newest Unicode. GRAPHEME_NEWER are the marks newer than 16.0 that
  `regex` joins to the character before them and the reference does not (`graphemes`).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right

import regex

# fmt: off
NEWER_LETTERS = (
    (0x1C8A, 0x1C8A), (0xA7CD, 0xA7CD), (0xA7DB, 0xA7DB), (0x105C0, 0x105F3),
    (0x10D4A, 0x10D4F), (0x10D6F, 0x10D85), (0x10EC2, 0x10EC4), (0x1123F, 0x11240),
    (0x11380, 0x11389), (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5),
    (0x113B7, 0x113B7), (0x113D1, 0x113D1), (0x113D3, 0x113D3), (0x11BC0, 0x11BE0),
    (0x11F02, 0x11F02), (0x11F04, 0x11F10), (0x11F12, 0x11F33), (0x1342F, 0x1342F),
    (0x13441, 0x13446), (0x13460, 0x143FA), (0x16100, 0x1611D), (0x16D40, 0x16D6C),
    (0x18CFF, 0x18CFF), (0x1B132, 0x1B132), (0x1B155, 0x1B155), (0x1DF25, 0x1DF2A),
    (0x1E030, 0x1E06D), (0x1E4D0, 0x1E4EB), (0x1E5D0, 0x1E5ED), (0x1E5F0, 0x1E5F0),
    (0x2B739, 0x2B739), (0x2EBF0, 0x2EE5D), (0x31350, 0x323AF),
)
NEWER_NUMBERS = (
    (0x10D40, 0x10D49), (0x116D0, 0x116E3), (0x11BF0, 0x11BF9), (0x11F50, 0x11F59),
    (0x16130, 0x16139), (0x16D70, 0x16D79), (0x1CCF0, 0x1CCF9), (0x1D2C0, 0x1D2D3),
    (0x1E4F0, 0x1E4F9), (0x1E5F1, 0x1E5FA),
)
NEWER_LOWERCASE = {
    0x1C89: 0x1C8A, 0xA7CB: 0x0264, 0xA7CC: 0xA7CD, 0xA7CE: 0xA7CF, 0xA7D2: 0xA7D3,
    0xA7D4: 0xA7D5, 0xA7DA: 0xA7DB, 0xA7DC: 0x019B,
    **{c: c + 0x20 for c in range(0x10D50, 0x10D66)},  # Garay
    **{c: c + 0x1B for c in range(0x16EA0, 0x16EB9)},  # Beria Erfe
}
NFC_STARTERS = (
    (0x7FD, 0x7FD), (0x898, 0x89F), (0x8CA, 0x8D3), (0x9FE, 0x9FE), (0xC3C, 0xC3C),
    (0xD3B, 0xD3C), (0xEBA, 0xEBA), (0x1715, 0x1715), (0x1ABF, 0x1ACE), (0x1DF6, 0x1DFA),
    (0xA82C, 0xA82C), (0x10D24, 0x10D27), (0x10EAB, 0x10EAC), (0x10F46, 0x10F50),
    (0x10F82, 0x10F85), (0x11070, 0x11070), (0x1133B, 0x1133B), (0x1145E, 0x1145E),
    (0x11839, 0x1183A), (0x1193D, 0x1193E), (0x11943, 0x11943), (0x119E0, 0x119E0),
    (0x11A34, 0x11A34), (0x11A47, 0x11A47), (0x11A99, 0x11A99), (0x11D42, 0x11D42),
    (0x11D44, 0x11D45), (0x11D97, 0x11D97), (0x16FF0, 0x16FF1), (0x1E130, 0x1E136),
    (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF),
)
GRAPHEME_NEWER = (0x5C8, 0x5C9, 0xB53, 0xB54, 0x1ADE, 0x1ADF, 0x1AEC, 0x1AED, 0x1AEE, 0x1AEF, 0x1AF0)
# fmt: on
# The information separators U+001C-U+001F: str.isspace() says yes, White_Space says no.
_NOT_WHITE_SPACE = frozenset("\x1c\x1d\x1e\x1f")
_LOWER_TABLE = {code: chr(lower) for code, lower in NEWER_LOWERCASE.items()}


def _ranges_test(ranges):
    starts = [low for low, _ in ranges]

    def contains(char: str) -> bool:
        code = ord(char)
        at = bisect_right(starts, code) - 1
        return at >= 0 and code <= ranges[at][1]

    return contains


_is_newer_letter = _ranges_test(NEWER_LETTERS)
_is_newer_number = _ranges_test(NEWER_NUMBERS)
# Split points for NFC: each such starter, and U+11930 (which must not join U+11935).
_NFC_BREAK = re.compile(
    "([" + "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in NFC_STARTERS) + "\U00011930])"
)


_GRAPHEME_BREAK = re.compile("(?=[" + "".join(map(chr, GRAPHEME_NEWER)) + "])")


def graphemes(text: str) -> list[str]:
    """Extended grapheme clusters as the reference finds them: `regex`'s, broken again before
    the marks its Unicode 16.0 tables do not know."""
    return [
        part
        for cluster in regex.findall(r"\X", text)
        for part in _GRAPHEME_BREAK.split(cluster)
        if part
    ]


def is_whitespace(char: str) -> bool:
    """Unicode White_Space, the regex `\\s` of the reference's patterns."""
    return char.isspace() and char not in _NOT_WHITE_SPACE


def kind(char: str) -> str:
    """'S' whitespace, 'L' letter, 'N' number, 'P' anything else, as `\\s`, `\\p{L}`, `\\p{N}`
    classify it in the reference."""
    if is_whitespace(char):
        return "S"
    category = unicodedata.category(char)[0]
    if category in "LN":
        return category
    if category == "C":  # the code points Unicode 15.0-16.0 assigned are unassigned here
        if _is_newer_letter(char):
            return "L"
        if _is_newer_number(char):
            return "N"
    return "P"


def lowercase(text: str) -> str:
    """Character by character, as Rust's `char::to_lowercase` (no final-sigma rule)."""
    return "".join(_LOWER_TABLE.get(ord(c)) or c.lower() for c in text)


def nfc(text: str) -> str:
    """NFC as the reference's normalizer computes it (see the module docstring)."""
    if text.isascii():
        return text
    return "".join(unicodedata.normalize("NFC", part) for part in _NFC_BREAK.split(text))
