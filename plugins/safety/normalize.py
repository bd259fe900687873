"""Canonical form of prompts and listed terms, so that common evasions match the plain term.

Each character of the input maps, on its own, to zero or more canonical characters:

1. NFKC folds full-width forms, circled and mathematical letters and ligatures to plain ones
   ("ｓ", "ⓢ", "𝐬" -> "s"; "ﬁ" -> "fi"); casefold removes case ("ß" -> "ss").
2. NFKD followed by dropping combining marks strips accents and "Zalgo" marks ("é" -> "e").
3. A small confusables table maps Cyrillic and Greek look-alikes and leetspeak digits and symbols
   to one Latin letter ("е" (Cyrillic), "3" -> "e"; "0" -> "o"; "$", "5" -> "s"). Letters that
   are easily swapped for each other share one class: "l", "1" and "i" all become "i". ("!" and
   "|" stay punctuation: read as letters they would glue a term to the end of a sentence.)
   Symbols read as letters ("@", "$") still end words for the word-boundary rules, which look
   at the original prompt (`Normalized.word`).
4. Traditional Chinese characters map to simplified ones (data/trad_to_simp.txt).
5. Separators are dropped but leave a *gap* mark, of one of two kinds: whitespace, which ends
   words, and punctuation or symbols only ("p.o.r.n", "s-e-x"); invisible characters (zero-width spaces and joiners, soft hyphens, variation selectors) are dropped
   without a trace.

Terms and prompts go through the same mapping, so a class that merges two letters cannot stop a
term from matching; it can only make a match slightly more likely. Each canonical character keeps
the index of the original character it came from, so a verdict can point at the prompt text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

# Look-alikes and leetspeak, applied after NFKC + casefold + accent stripping. Kept small and
# explicit on purpose: every entry widens what a term matches. Digits map only where the
# substitution is a common evasion.
CONFUSABLES = {
    # Latin letters that swap for each other in evasions
    "l": "i", "1": "i",
    "0": "o", "3": "e", "4": "a", "@": "a", "5": "s", "$": "s", "7": "t",
    # Cyrillic (lowercase; casefold has already run)
    "а": "a", "в": "b", "е": "e", "ё": "e", "з": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j",
    "ӏ": "i", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ү": "y", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "s", "σ": "o", "μ": "u",
}  # fmt: skip

# Characters that render as nothing (or as blank letters) and are inserted to split words.
INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u180e", "\u034f"}

# Gap kinds, in increasing strength; canonical() emits them in place of dropped separators.
NO_GAP, MARK_GAP, SPACE_GAP = 0, 1, 2


@lru_cache(maxsize=1)
def trad_to_simp() -> dict[str, str]:
    """Traditional -> simplified character table (one character each way)."""
    table = {}
    for line in (DATA / "trad_to_simp.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            trad, simp = line.split("\t")
            table[trad] = simp
    return table


def is_cjk(char: str) -> bool:
    """Han, kana and the CJK symbol blocks: scripts written without spaces between words."""
    code = ord(char)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3FFFF


def is_word_char(char: str) -> bool:
    """A letter or digit of a script that separates words with spaces (Latin, Cyrillic, ...)."""
    return char.isalnum() and not is_cjk(char)


@lru_cache(maxsize=65536)
def canonical(char: str) -> tuple[tuple[str, bool] | int, ...]:
    """The canonical characters for one input character, each as (character, is_word): whether
    it was a word character before the look-alike table (False for symbols read as letters,
    "@" -> "a"); an int stands for a dropped separator (SPACE_GAP for whitespace, MARK_GAP for
    punctuation and symbols)."""
    if char in INVISIBLE:
        return ()
    out: list[tuple[str, bool] | int] = []
    folded = unicodedata.normalize("NFKC", char).casefold()
    for piece in unicodedata.normalize("NFKD", folded):
        category = unicodedata.category(piece)
        if category in ("Mn", "Me", "Cf") or piece in INVISIBLE:
            continue  # combining marks and zero-width characters: invisible, no gap
        mapped = CONFUSABLES.get(piece, piece)
        mapped = trad_to_simp().get(mapped, mapped)
        if mapped.isalnum():
            out.append((mapped, is_word_char(piece) and is_word_char(mapped)))
        else:  # spaces, punctuation, symbols, controls
            out.append(SPACE_GAP if mapped.isspace() else MARK_GAP)
    return tuple(out)


@dataclass
class Normalized:
    """Canonical text with a way back to the original.

    text:   canonical characters, separators removed.
    origin: origin[k] is the index in the original string of canonical character k.
    gap:    gap[k] is the strongest separator just before canonical character k: NO_GAP,
            MARK_GAP or SPACE_GAP; the start and the end (gap[len(text)]) count as SPACE_GAP.
    word:   word[k] says whether canonical character k came from a word character (a letter
            or digit of a space-separated script) of the original prompt: False for CJK and for
            symbols the look-alike table reads as letters ("@", "$"). Word boundaries are
            judged on these, so "@term" and "term@home" have one where the canonical text
            ("aterm", "termahome") has none.
    """

    text: str
    origin: list[int]
    gap: list[int]
    word: list[bool]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original [start, end) covering canonical characters [start, end)."""
        return self.origin[start], self.origin[end - 1] + 1


def normalize(text: str) -> Normalized:
    chars: list[str] = []
    origin: list[int] = []
    gap: list[int] = []
    word: list[bool] = []
    pending_gap = SPACE_GAP
    for index, char in enumerate(text):
        for piece in canonical(char):
            if isinstance(piece, int):
                pending_gap = max(pending_gap, piece)
            else:
                chars.append(piece[0])
                word.append(piece[1])
                origin.append(index)
                gap.append(pending_gap)
                pending_gap = NO_GAP
    gap.append(SPACE_GAP)
    return Normalized("".join(chars), origin, gap, word)
