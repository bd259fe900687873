"""Reading the operator's term lists (plain UTF-8 text; the format is in docs/safety.md).

    # comment lines start with '#'
    # category: violence        every term below belongs to this category
    beheading
    gore
    !al gore                    '!' makes an allow-list entry: it excuses the terms it contains
    nazi*                       '*' at an end: the term may continue into a longer word there
    porn<TAB>sexual             a tab gives the category of this line only

A separate allow-list file holds one allow entry per line ('!' optional there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CATEGORY_LINE = re.compile(r"#\s*category\s*:(.*)$", re.IGNORECASE)
CATEGORY_NAME = re.compile(r"[A-Za-z0-9_-]+")
TERMS_DIR = Path(__file__).resolve().parent / "terms"
DEFAULT_TERM_FILES = (TERMS_DIR / "default_en.txt", TERMS_DIR / "default_zh.txt")


class TermFileError(ValueError):
    """A term list could not be read; the message names the file and line."""


@dataclass(frozen=True)
class Term:
    """One entry of a term list."""

    text: str  # as written, without the '!' and '*' markers
    category: str | None  # None for allow-list entries
    allow: bool = False
    open_start: bool = False  # written '*term': may be preceded by more letters
    open_end: bool = False  # written 'term*': may be followed by more letters
    source: str = ""  # "file:line", for error messages


def parse_terms(text: str, source: str, allow_only: bool = False) -> list[Term]:
    """Entries of one term list; `allow_only` reads every line as an allow-list entry."""
    terms: list[Term] = []
    category: str | None = None
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        where = f"{source}:{number}"
        line = raw.rstrip("\r\n").rstrip(" ")
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            found = CATEGORY_LINE.match(line.strip())
            if found:
                category = _category(found.group(1).strip(), where)
            continue
        allow = allow_only or line.startswith("!")
        body = line[1:] if line.startswith("!") else line
        line_category = category
        if "\t" in body:
            if allow:
                raise TermFileError(f"{where}: an allow-list entry takes no category")
            body, _, given = body.partition("\t")
            line_category = _category(given.strip(), where)
        terms.append(_term(body.strip(), None if allow else line_category, allow, where))
    return terms


def read_term_file(path: str | Path, allow_only: bool = False) -> list[Term]:
    path = Path(path)
    if not path.is_file():
        raise TermFileError(f"term list not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TermFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_terms(text, str(path), allow_only=allow_only)


def _category(name: str, where: str) -> str:
    if not CATEGORY_NAME.fullmatch(name):
        raise TermFileError(
            f"{where}: category {name!r} is not a name (letters, digits, '_' or '-')"
        )
    return name


def _term(body: str, category: str | None, allow: bool, where: str) -> Term:
    open_start, open_end = body.startswith("*"), body.endswith("*")
    text = body.strip("*").strip()
    if not text:
        raise TermFileError(f"{where}: empty term")
    if "*" in text:
        raise TermFileError(f"{where}: '*' may only stand at the start or end of {body!r}")
    if "\t" in text:
        raise TermFileError(f"{where}: more than one tab in {body!r}")
    if not allow and category is None:
        raise TermFileError(
            f"{where}: term {text!r} has no category; put a '# category: NAME' line above it "
            "or write 'term<TAB>category'"
        )
    return Term(text, category, allow, open_start, open_end, where)
