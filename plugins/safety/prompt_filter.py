"""PromptTermFilter: stops prompts that contain a listed term, before any compute.

Prompt and terms are brought to one canonical form (`normalize`), all terms are matched in one
pass with an Aho-Corasick automaton, and each raw match is then checked against word rules that
keep the separator-free matching from firing across ordinary words:

* A term that starts (ends) with a letter of a space-separated script must start (end) at a word
  boundary of the prompt, unless written with '*' there. So "ass" does not match "class" or
  "assassin", while "s e x", "s.e.x" and "ѕех" still match "sex". Chinese has no such boundaries:
  its terms match anywhere, and the allow list excuses harmless compounds ("角色情感").
* Separators the term does not have itself (insertions) are accepted when they are punctuation
  or symbols only ("nu.de", "s-e-x"), and inside Chinese terms. Whitespace insertions are
  accepted inside Latin-script words of 5 or more letters, and in shorter words only when every
  piece is a single character ("p o r n"), so that "Model S 3X" does not read as "s3x".
* A match lying inside a match of an allow-list entry ("oilseed rape", "magna cum laude") is
  excused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from paddiff.interfaces import SafetyFilter, Verdict
from paddiff.plugins.safety.automaton import Automaton
from paddiff.plugins.safety.normalize import (
    SPACE_GAP,
    Normalized,
    is_cjk,
    is_word_char,
    normalize,
)
from paddiff.plugins.safety.term_lists import (
    DEFAULT_TERM_FILES,
    Term,
    TermFileError,
    read_term_file,
)

# Shorter Latin words only match with insertions when they are spelled out letter by letter.
MIN_LETTERS_FOR_ANY_SPLIT = 5


@dataclass(frozen=True)
class _Pattern:
    """A term's canonical form and where the term itself has word gaps."""

    term: Term
    canonical: str
    own_gaps: frozenset[int]  # offsets k (0 < k < len) with a separator before character k


@dataclass(frozen=True)
class TermMatch:
    """A listed term found in a prompt; start/end index the original prompt string."""

    term: str
    category: str | None
    start: int
    end: int
    canonical_start: int
    canonical_end: int
    allow: bool = False


class PromptTermFilter(SafetyFilter):
    """Blocks prompts containing listed terms; allows every image."""

    name = "PromptTermFilter"
    checks = ("prompts",)  # what paddiff.safety runs it on

    def __init__(self, terms: Iterable[Term]):
        by_pattern: dict[str, list[_Pattern]] = {}
        for term in terms:
            pattern = _compile(term)
            by_pattern.setdefault(pattern.canonical, []).append(pattern)
        if not by_pattern:
            raise ValueError("PromptTermFilter needs at least one term")
        self._keys = list(by_pattern)
        self._patterns = [by_pattern[key] for key in self._keys]
        self._automaton = Automaton(self._keys)
        self.term_count = sum(len(p) for p in self._patterns)

    @classmethod
    def from_config(cls, config: dict) -> PromptTermFilter:
        """Options: `term_files` (list of paths; default: the shipped lists), `allow_files`
        (paths of allow-list files), `include_default_terms` (add the shipped lists to
        `term_files`; default false when `term_files` is given)."""
        unknown = set(config) - {"name", "term_files", "allow_files", "include_default_terms"}
        if unknown:
            raise ValueError(f"PromptTermFilter: unknown option(s) {sorted(unknown)}")
        term_files = [Path(p) for p in _as_list(config.get("term_files"))]
        if config.get("include_default_terms", not term_files):
            term_files = [*DEFAULT_TERM_FILES, *term_files]
        terms = [t for path in term_files for t in read_term_file(path)]
        for path in _as_list(config.get("allow_files")):
            terms += read_term_file(path, allow_only=True)
        return cls(terms)

    # -- matching ----------------------------------------------------------------------------

    def find(self, text: str) -> list[TermMatch]:
        """Every listed term in `text` that is not excused by an allow-list entry."""
        normalized = normalize(text)
        hits: list[TermMatch] = []
        for start, end, key in self._automaton.find(normalized.text):
            for pattern in self._patterns[key]:
                if _accepts(pattern, normalized, start, end):
                    hits.append(_match(pattern.term, normalized, start, end))
        allowed = [(h.canonical_start, h.canonical_end) for h in hits if h.allow]
        return [
            h
            for h in hits
            if not h.allow
            and not any(a <= h.canonical_start and h.canonical_end <= b for a, b in allowed)
        ]

    def check_prompt(self, text: str) -> Verdict:
        matches = self.find(text)
        if not matches:
            return Verdict(allowed=True, filter=self.name)
        # The longest term is the most specific ("naked child" over "naked").
        worst = max(matches, key=lambda m: (m.canonical_end - m.canonical_start, -m.start))
        return Verdict(
            allowed=False,
            reason=f"the prompt contains a term listed under category '{worst.category}'",
            category=worst.category,
            matched=worst.term,
            filter=self.name,
            details={
                "start": worst.start,
                "end": worst.end,
                "matches": [
                    {"term": m.term, "category": m.category, "start": m.start, "end": m.end}
                    for m in matches
                ],
            },
        )

    def check_images(self, images) -> list[Verdict]:
        return [Verdict(allowed=True, filter=self.name) for _ in images]


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, (str, Path)) else list(value)


def _compile(term: Term) -> _Pattern:
    normalized = normalize(term.text)
    if not normalized.text:
        raise TermFileError(f"{term.source}: term {term.text!r} has no letters left to match")
    own_gaps = frozenset(k for k in range(1, len(normalized.text)) if normalized.gap[k])
    return _Pattern(term, normalized.text, own_gaps)


def _match(term: Term, normalized: Normalized, start: int, end: int) -> TermMatch:
    first, last = normalized.span(start, end)
    return TermMatch(term.text, term.category, first, last, start, end, term.allow)


def _accepts(pattern: _Pattern, prompt: Normalized, start: int, end: int) -> bool:
    """Whether a raw automaton match satisfies the word rules in the module docstring."""
    term, word = pattern.term, pattern.canonical
    # Boundaries are those of the original prompt: a symbol the normalisation reads as a letter
    # ("@term", "term$") is not part of the word next to it (prompt.word).
    if not term.open_start and is_word_char(word[0]):
        if not (prompt.gap[start] or not prompt.word[start - 1]):
            return False
    if not term.open_end and is_word_char(word[-1]):
        if not (prompt.gap[end] or not prompt.word[end]):
            return False
    inserted = [k - start for k in range(start + 1, end) if prompt.gap[k] == SPACE_GAP]
    inserted = [k for k in inserted if k not in pattern.own_gaps]
    if not inserted:
        return True
    bounds = [0, *sorted(pattern.own_gaps), len(word)]
    for word_start, word_end in pairwise(bounds):
        cuts = [k for k in inserted if word_start < k < word_end]
        piece = word[word_start:word_end]
        if not cuts or len(piece) >= MIN_LETTERS_FOR_ANY_SPLIT or all(map(is_cjk, piece)):
            continue
        edges = [word_start, *cuts, word_end]
        if any(b - a > 1 for a, b in pairwise(edges)):
            return False
    return True
