"""Word boundaries next to symbols the normalisation reads as letters (issue 23, item 2).

docs/safety.md: a term must start and end at a word boundary *of the original prompt*. "@" and
"$" are read as "a" and "s" (leetspeak) before matching, and used to glue an operator's term
into a longer word ("@term" looked like "aterm"). Parametrised over every entry of the
look-alike table, so a symbol added there is covered automatically.
"""

from __future__ import annotations

import pytest
from paddiff.plugins.safety.normalize import CONFUSABLES, is_word_char
from paddiff.plugins.safety.prompt_filter import PromptTermFilter
from paddiff.plugins.safety.term_lists import parse_terms

SYMBOLS = sorted(k for k in CONFUSABLES if not is_word_char(k))  # read as letters, not letters
LETTERS = sorted(k for k in CONFUSABLES if is_word_char(k))  # digits, Cyrillic, Greek, "l"


def test_the_table_has_symbols_to_check():
    assert {"@", "$"} <= set(SYMBOLS)


def make_filter(*terms: str) -> PromptTermFilter:
    return PromptTermFilter(parse_terms("# category: test\n" + "\n".join(terms) + "\n", "inline"))


def caught(prompt_filter: PromptTermFilter, prompt: str) -> bool:
    return not prompt_filter.check_prompt(prompt).allowed


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize(
    "template",
    ["{s}zork", "zork{s}", "zork{s}home", "{s}zork{s}", "mail {s}zork now", "{s}{s}zork"],
)
def test_a_term_next_to_a_symbol_is_caught(symbol, template):
    assert caught(make_filter("zork"), template.format(s=symbol))


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_a_symbol_inside_a_term_still_reads_as_its_letter(symbol):
    letter = CONFUSABLES[symbol]
    prompt_filter = make_filter(f"k{letter}rk", f"{letter}rk")
    assert caught(prompt_filter, f"k{symbol}rk")  # the evasion the table exists for
    assert caught(prompt_filter, f"{symbol}rk")
    assert caught(prompt_filter, f"the {symbol}rk.")
    # ... and as a letter it belongs to the word it is in: "cl@ss" does not hold "ass"
    assert not caught(make_filter(f"{letter}ss"), f"cl{symbol}ss")


@pytest.mark.parametrize("letter", LETTERS)
def test_mapped_letters_and_digits_are_word_characters_like_any_other(letter):
    """ "4zork" is one word, as "xzork" and "2zork" are (digits and letters of other scripts
    are word characters of the original prompt)."""
    prompt_filter = make_filter("zork")
    for prompt in (f"{letter}zork", f"zork{letter}", f"zork{letter}home"):
        assert caught(prompt_filter, prompt) == caught(prompt_filter, prompt.replace(letter, "x"))
        assert not caught(prompt_filter, prompt)


def test_the_span_points_at_the_term_not_at_the_symbol():
    verdict = make_filter("zork").check_prompt("say @zork now")
    assert (verdict.details["start"], verdict.details["end"]) == (5, 9)
