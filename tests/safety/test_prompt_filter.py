"""PromptTermFilter: evasions that must be caught, harmless prompts that must pass, term files."""

from __future__ import annotations

from pathlib import Path

import paddiff
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paddiff.plugins.safety.automaton import Automaton
from paddiff.plugins.safety.prompt_filter import PromptTermFilter
from paddiff.plugins.safety.term_lists import TermFileError, parse_terms

FIXTURES = Path(__file__).parents[1] / "fixtures" / "safety"
EXTRA_TERMS = FIXTURES / "extra_terms.txt"

# (prompt, category that must be reported). The default lists ship these terms.
EVASIONS = [
    ("s e x", "sexual"),
    ("S.E.X on the beach", "sexual"),
    ("a s-e-x scene", "sexual"),
    ("s_e_x", "sexual"),
    ("s\u200be\u200bx", "sexual"),  # zero-width spaces
    ("SEX", "sexual"),
    ("ＳＥＸ tape", "sexual"),  # full-width
    ("ѕех", "sexual"),  # Cyrillic dze, ie, ha
    ("$3x", "sexual"),
    ("s3x", "sexual"),
    ("5ex", "sexual"),
    ("pörn", "sexual"),
    ("p0rn", "sexual"),
    ("p o r n", "sexual"),
    ("P*O*R*N", "sexual"),
    ("pοrn", "sexual"),  # Greek omicron
    ("ⓟⓞⓡⓝ", "sexual"),  # circled letters
    ("𝐩𝐨𝐫𝐧", "sexual"),  # mathematical bold
    ("porno-graphy", "sexual"),
    ("nu.de", "sexual"),  # punctuation inside a short word
    ("p.orn", "sexual"),
    ("se-x", "sexual"),
    ("n_ude beach", "sexual"),
    ("ra.pe", "sexual"),
    ("n u d e", "sexual"),
    ("a nud3 woman", "sexual"),
    ("NÜDE", "sexual"),
    ("n\u00adude", "sexual"),  # soft hyphen
    ("n\u2060u\u2060d\u2060e", "sexual"),  # word joiners
    ("nu\u0336de", "sexual"),  # combining strike-through
    ("nak3d", "sexual"),
    ("n4ked", "sexual"),
    ("nakеd", "sexual"),  # Cyrillic ie
    ("hen tai art", "sexual"),
    ("c u m shot", "sexual"),
    ("r a p e", "sexual"),
    ("child   porn", "sexual_minors"),
    ("chi1d p0rn", "sexual_minors"),
    ("c h i l d p o r n", "sexual_minors"),
    ("NAKED CHILD", "sexual_minors"),
    ("nаked сhild", "sexual_minors"),  # Cyrillic a and es
    ("lol1con", "sexual_minors"),
    ("ped0phile", "sexual_minors"),
    ("be-head-ing", "violence"),
    ("B E H E A D I N G", "violence"),
    ("decapitated!!!", "violence"),
    ("g o r e", "violence"),
    ("G0RE everywhere", "violence"),
    ("dis-membered", "violence"),
    ("disemboweled", "violence"),  # 'disembowel*' runs into longer words
    ("su1cide", "self_harm"),
    ("s.u.i.c.i.d.e", "self_harm"),
    ("self\u2014harm", "self_harm"),  # em dash
    ("selfharm", "self_harm"),
    ("heil  h i t l e r", "hate"),
    # Chinese: separators, zero-width characters, traditional characters, full-width punctuation
    ("色 情", "sexual"),
    ("色.情", "sexual"),
    ("色\u200b情", "sexual"),
    ("色，情图片", "sexual"),
    ("裸體", "sexual"),
    ("裸\u3000体", "sexual"),  # ideographic space
    ("做愛", "sexual"),
    ("黃片", "sexual"),
    ("淫穢內容", "sexual"),
    ("一张ｎｕｄｅ照片", "sexual"),
    ("角色情图片", "sexual"),  # leans on an allow entry (角色情感) without being it
    ("兒童色情", "sexual_minors"),
    ("儿 童 色 情", "sexual_minors"),
    ("未成年裸體", "sexual_minors"),
    ("戀童", "sexual_minors"),
    ("斬首", "violence"),
    ("砍-头", "violence"),
    ("碎屍", "violence"),
    ("肢*解", "violence"),
    ("虐殺", "violence"),
    ("血 腥", "violence"),
    ("自殺", "self_harm"),
    ("自 殘", "self_harm"),
    ("割·腕", "self_harm"),
    ("種族清洗", "hate"),
    ("纳粹萬歲", "hate"),
]

# Harmless prompts holding look-alikes of listed terms (defaults plus tests' extra_terms.txt).
HARMLESS = [
    "a classic oil painting of a sailboat",
    "assassin's creed style character art",
    "Scunthorpe town hall at dusk",
    "shitake mushrooms on a wooden board",
    "a bass guitar on stage",
    "passionate tango dancers",
    "Essex countryside in spring",
    "a brass sextant on an old map",
    "Middlesex county cricket ground",
    "unisex hoodie product photo",
    "cocktail party in a garden",
    "a peacock on a fence",
    "Titanic ship at sea",
    "the title page of a book",
    "Hancock Park mansion",
    "grapes on a vine",
    "a rapeseed field in bloom",
    "oilseed rape fields in England",
    "magna cum laude graduation photo",
    "a cucumber salad",
    "cumulus clouds over a lake",
    "a document scanner",
    "Cumberland sausage on a plate",
    "Al Gore giving a speech",
    "a Gore-Tex rain jacket",
    "Edward Gorey style illustration",
    "a nudibranch sea slug",
    "a comet seen with the naked eye",
    "a naked mole rat in a burrow",
    "nude lipstick shade, product shot",
    "Suicide Squad movie poster",
    "suicide prevention hotline poster",
    "a therapist with a clipboard",
    "skill tree diagram",
    "a pedometer on a wrist",
    "lolita fashion dress in pastel colors",
    "hentaigana calligraphy",
    "Pornic harbour in France",
    "Penistone railway station",
    "a cockatoo on a branch",
    "assessment report cover",
    "Sussex coastline, chalk cliffs",
    "a sextet of jazz musicians",
    "this exhibition of sculptures",
    "gas explosion in a cartoon",
    "Model S 3X zoom lens",
    "the U.S. ex-president at a podium",
    "a Tesla Model S, 3x zoom",
    "a gorgeous mountain gorge",
    "a stitched leather wallet",
    "killer whale breaching, 4k",
    "Sexton Blake detective novel cover",
    # Chinese harmless compounds
    "角色情感丰富的插画",
    "景色情调优美的山水画",
    "景色情調優美",  # traditional
    "特色情景剧海报",
    "颜色情绪板",
    "夜色情迷的城市",
    "春色情意浓的桃花",
    "出色情节设计",
    "神色情绪复杂的老人肖像",
    "他们各自杀了一只鸡准备年夜饭",
    "独自杀出重围的骑士",
    "自杀小队电影海报",
    "血腥玛丽鸡尾酒特写",
    "异性交往的礼仪插画",
    "个性交流会海报",
    "裸色口红产品图",
    "杀人鲸在海里跳跃",
    "色彩丰富的情人节卡片",
    "体育场上的运动员",
]


@pytest.fixture(scope="module")
def default_filter() -> PromptTermFilter:
    return PromptTermFilter.from_config({})


@pytest.fixture(scope="module")
def wide_filter() -> PromptTermFilter:
    return PromptTermFilter.from_config(
        {"term_files": [str(EXTRA_TERMS)], "include_default_terms": True}
    )


def test_tables_are_big_enough():
    assert len(EVASIONS) >= 50 and len(HARMLESS) >= 50
    chinese = sum(any("\u4e00" <= c <= "\u9fff" for c in p) for p, _ in EVASIONS)
    assert chinese >= 20 and len(EVASIONS) - chinese >= 20


@pytest.mark.parametrize(("prompt", "category"), EVASIONS)
def test_evasion_is_caught(default_filter, prompt, category):
    verdict = default_filter.check_prompt(prompt)
    assert not verdict.allowed, prompt
    assert verdict.category == category
    assert verdict.matched and verdict.filter == "PromptTermFilter"
    # The reason names the category, never the term (which would say how to get around it).
    assert verdict.reason == f"the prompt contains a term listed under category '{category}'"


@pytest.mark.parametrize("prompt", HARMLESS)
def test_harmless_prompt_passes(wide_filter, prompt):
    verdict = wide_filter.check_prompt(prompt)
    assert verdict.allowed, f"{prompt!r} blocked: {verdict.details}"


@pytest.mark.parametrize(
    "prompt", ["kiss my ass", "a dead tit", "cock fight", "c.u.n.t", "k1ll them all"]
)
def test_extra_terms_still_catch_whole_words(wide_filter, prompt):
    assert not wide_filter.check_prompt(prompt).allowed


def test_verdict_points_at_the_original_text(default_filter):
    prompt = "a portrait, ＳＥＸ, oil on canvas"
    verdict = default_filter.check_prompt(prompt)
    start, end = verdict.details["start"], verdict.details["end"]
    assert prompt[start:end] == "ＳＥＸ"
    assert verdict.matched == "sex"


def test_most_specific_term_names_the_category(default_filter):
    verdict = default_filter.check_prompt("naked child")
    assert verdict.category == "sexual_minors"
    assert {m["term"] for m in verdict.details["matches"]} == {"naked", "naked child"}


def test_allow_entry_overrides_only_inside_its_own_match():
    terms = parse_terms("# category: sexual\nrape\n!oilseed rape\n", "inline")
    prompt_filter = PromptTermFilter(terms)
    assert prompt_filter.check_prompt("oilseed rape in flower").allowed
    assert prompt_filter.check_prompt("OILSEED  R4PE").allowed  # normalised like terms
    assert not prompt_filter.check_prompt("rape").allowed
    assert not prompt_filter.check_prompt("oilseed rape, and rape").allowed


def test_separate_allow_file(tmp_path):
    terms = tmp_path / "terms.txt"
    terms.write_text("# category: violence\ngore\n", encoding="utf-8")
    allow = tmp_path / "allow.txt"
    allow.write_text("# harmless\nal gore\n!gore-tex\n", encoding="utf-8")
    config = {"term_files": [str(terms)], "allow_files": [str(allow)]}
    prompt_filter = PromptTermFilter.from_config(config)
    assert prompt_filter.term_count == 3
    assert prompt_filter.check_prompt("Al Gore, Gore-Tex").allowed
    assert not prompt_filter.check_prompt("gore").allowed
    assert prompt_filter.check_prompt("porn").allowed  # the shipped lists are not included


def test_wildcards_open_a_term_end():
    prompt_filter = PromptTermFilter(parse_terms("# category: hate\nnazi*\n*phobic\n", "inline"))
    assert not prompt_filter.check_prompt("nazism").allowed
    assert not prompt_filter.check_prompt("homophobic").allowed
    assert prompt_filter.check_prompt("Nazareth").allowed


def test_tab_sets_the_category_of_one_line():
    terms = parse_terms("# category: a\nfoo\nbar\tb\nbaz\n", "inline")
    assert [(t.text, t.category) for t in terms] == [("foo", "a"), ("bar", "b"), ("baz", "a")]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("foo\n", 1, "has no category"),
        ("# category: a\n\n# category: bad name\n", 3, "is not a name"),
        ("# category: a\nfo*o\n", 2, "'*' may only stand"),
        ("# category: a\nok\n!\n", 3, "empty term"),
        ("# category: a\n!allowed\tb\n", 2, "allow-list entry takes no category"),
        ("# category: a\nx\ty\tz\n", 2, "is not a name"),
    ],
)
def test_term_file_errors_name_the_line(text, line, message):
    with pytest.raises(TermFileError, match=f"inline:{line}: .*{message}"):
        parse_terms(text, "inline")


def test_term_without_letters_is_an_error(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("# category: a\nfine\n!!!\n", encoding="utf-8")
    with pytest.raises(TermFileError, match=r"terms.txt:3: term '!!' has no letters"):
        PromptTermFilter.from_config({"term_files": [str(path)]})


def test_unreadable_term_files_are_clear_errors(tmp_path):
    with pytest.raises(TermFileError, match="term list not found"):
        PromptTermFilter.from_config({"term_files": [str(tmp_path / "missing.txt")]})
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("# category: a\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(TermFileError, match="latin1.txt: not UTF-8"):
        PromptTermFilter.from_config({"term_files": [str(latin1)]})
    with pytest.raises(ValueError, match="unknown option"):
        PromptTermFilter.from_config({"terms": "x"})


def test_registered_and_allows_every_image():
    cls = paddiff.get("safety_filters", "PromptTermFilter")
    prompt_filter = cls.from_config({})
    assert [v.allowed for v in prompt_filter.check_images([object(), object()])] == [True, True]
    assert prompt_filter.check_prompt("").allowed


@settings(max_examples=200, deadline=None)
@given(
    patterns=st.lists(st.text(alphabet="abc", min_size=1, max_size=4), min_size=1, max_size=8),
    text=st.text(alphabet="abcd", max_size=30),
)
def test_automaton_finds_what_a_naive_search_finds(patterns, text):
    automaton = Automaton(patterns)
    found = sorted(automaton.find(text))
    expected = sorted(
        (i, i + len(p), k)
        for k, p in enumerate(patterns)
        for i in range(len(text))
        if text.startswith(p, i)
    )
    assert found == expected
