"""Custom text: prohibited words survive disguises, innocent words pass, customers get clear messages."""

import json
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.text import (
    _LEET,
    _REPEATS,
    ProhibitedWords,
    TextProblem,
    TextProblemCode,
    _finish,
    _runs,
    _shape,
    check_custom_text,
    normalise_for_matching,
)

SEED_DATA = Path(__file__).resolve().parents[2] / "db" / "seed_data"
WORDS = [
    line.strip()
    for line in (SEED_DATA / "prohibited_words.txt").read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
]
PROHIBITED = ProhibitedWords(WORDS)
CHARSETS = json.loads((SEED_DATA / "catalogue.json").read_text(encoding="utf-8"))["charsets"]
BASIC = CHARSETS["basic"]
BASIC_CHARACTERS = [chr(cp) for cp in range(0x20, 0x7F) if re.fullmatch(f"[{BASIC}]", chr(cp))]

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]
COMBINING_ACCENTS = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030a", "\u0327", "\u0328"]
LEET_FOR = {"a": "4@", "b": "8", "e": "3€", "g": "9", "i": "1!", "l": "|", "o": "0", "s": "5$", "t": "7+"}
CYRILLIC_FOR = {"a": "а", "c": "с", "e": "е", "i": "і", "o": "о", "p": "р", "s": "ѕ", "x": "х", "y": "у"}

PROPERTY = settings(max_examples=200, deadline=None)


def check(
    text: str, *, slot: str = "headline", max_chars: int = 30, allowed: str = BASIC
) -> list[TextProblem]:
    """Check text against the seed list in a 30-character "headline" slot unless told otherwise."""
    return check_custom_text(text, slot=slot, max_chars=max_chars, allowed=allowed, prohibited=PROHIBITED)


def codes(problems: list[TextProblem]) -> list[str]:
    return [problem.code for problem in problems]


def collapsed(text: str) -> str:
    return re.sub(r"(.)\1+", r"\1", text)


def test_the_seed_list_is_loaded_without_its_comments():
    assert "fuck" in WORDS and "nike" in WORDS
    assert not any(word.startswith("#") for word in WORDS)


# --- normalise_for_matching -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FuCk", "fuck"),
        ("fück", "fuck"),
        ("fu\u0308ck", "fuck"),
        ("ｆｕｃｋ", "fuck"),
        ("𝐟𝐮𝐜𝐤", "fuck"),
        ("fu\u200bck", "fuck"),
        ("s\u00adh\u2060i\ufefft\u200d", "shit"),
        ("sh1t", "shit"),
        ("$h!t", "shit"),
        ("|0+", "lot"),
        ("€8@9", "ebag"),
        ("ѕhіt", "shit"),  # Cyrillic ѕ and і
        ("ΝΙΚΕ", "nike"),  # Greek capitals
        ("f.u.c.k", "fuck"),
        ("f u c k", "fuck"),
        ("f_u-c*k", "fuck"),
        ("Straße", "strasse"),
        ("", ""),
    ],
)
def test_normalising_reduces_a_disguise_to_the_letters_a_reader_sees(text, expected):
    # given a disguised spelling / when normalised / then only the plain letters remain
    assert normalise_for_matching(text) == expected


# --- ProhibitedWords: caught ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "word"),
    [
        pytest.param("FuCk", "fuck", id="case"),
        pytest.param("fück", "fuck", id="accent"),
        pytest.param("ｆｕｃｋ", "fuck", id="full-width"),
        pytest.param("𝐟𝐮𝐜𝐤 this", "fuck", id="maths-bold"),
        pytest.param("fu\u200bck", "fuck", id="zero-width-space"),
        pytest.param("s\u00adh\u00adi\u00adt", "shit", id="soft-hyphens"),
        pytest.param("fu\u3164ck", "fuck", id="hangul-filler"),
        pytest.param("sh1t", "shit", id="leet-digit"),
        pytest.param("$h!t", "shit", id="leet-symbols"),
        pytest.param("b1tch", "bitch", id="leet-b1tch"),
        pytest.param("a$$hole", "asshole", id="leet-dollars"),
        pytest.param("ѕhіt", "shit", id="cyrillic-lookalikes"),
        pytest.param("Ν1ΚΕ", "nike", id="greek-lookalikes"),
        pytest.param("s h i t", "shit", id="spaced"),
        pytest.param("s.h.i.t", "shit", id="dotted"),
        pytest.param("s-h-i-t", "shit", id="hyphenated"),
        pytest.param("f.u.c.k", "fuck", id="dotted-fuck"),
        pytest.param("f_u-c*k", "fuck", id="mixed-punctuation"),
        pytest.param("f. u. c. k.", "fuck", id="dotted-and-spaced"),
        pytest.param("$ h ! t", "shit", id="spaced-leet"),
        pytest.param("⒡⒰⒞⒦", "fuck", id="parenthesised-letters"),
        pytest.param("fu ck", "fuck", id="split-in-two"),
        pytest.param("I love s h i t", "shit", id="spaced-inside-a-sentence"),
        pytest.param("fuuuck", "fuck", id="stretched"),
        pytest.param("shiiit", "shit", id="stretched-vowel"),
        pytest.param("shiit", "shit", id="doubled-vowel"),
        pytest.param("ashole", "asshole", id="double-letter-written-once"),
        pytest.param("Nikes", "nike", id="plural"),
        pytest.param("shits", "shit", id="plural-s"),
        pytest.param("bitches", "bitch", id="plural-es"),
        pytest.param("fucking", "fuck", id="suffix-ing"),
        pytest.param("shitty", "shit", id="suffix-with-doubled-consonant"),
        pytest.param("Nike's", "nike", id="possessive"),
        pytest.param("nike-shoes", "nike", id="part-of-a-hyphenated-token"),
        pytest.param("Gucci!", "gucci", id="trailing-punctuation"),
        pytest.param("Best Disney Dad", "disney", id="inside-a-sentence"),
    ],
)
def test_a_disguised_prohibited_word_is_caught(text, word):
    # given the seed list / when a disguised list word is checked / then the plain word is reported
    assert PROHIBITED.find(text) == word


# --- ProhibitedWords: not caught ------------------------------------------------------------------------

INNOCENT = [
    "Scunthorpe",  # contains "cunt"
    "Scunthorpe United",
    "classic",  # contains "ass"-like letters, nothing on the list
    "assassin",
    "Dick Van Dyke",  # "dick" is not on the seed list
    "cocktail",
    "shitake",  # the mushroom, misspelt: contains "shit" but is a different token
    "shiitake",
    "Matsushita",
    "Channel",  # a doubled consonant is a real spelling, not a stretched "Chanel"
    "Marvell",
    "Marvelous",  # "-ous" is not an inflection
    "Retardant",
    "Nazareth",
    "Bastion",
    "Penistone",
    "therapist",
    "Sussex and Essex",
    "Nikkei",
    "nickel",
    "Bitcoin",
    "Snitch",
    "Count",
    "Cunning",
    "Whoever",
    "Who're you?",  # apostrophes never fuse a contraction into "whore"
    "Hit it",
    "Push it",
    "Go to it",
    "I am so in it",
    "It is hit",
    "U.S.A.",
    "A.S.A.P.",
    "J.R.R. Tolkien",
    "Best Dad Ever",
    "Happy 50th Birthday!",
    "5 / 7 / 8 9",
]


@pytest.mark.parametrize("text", INNOCENT)
def test_an_innocent_phrase_is_not_caught(text):
    # given the seed list / when an innocent phrase is checked / then nothing is found
    assert PROHIBITED.find(text) is None


def test_dick_van_dyke_is_caught_only_when_the_list_says_so():
    # given a list that adds "dick" / when the name is checked / then the list decides, not the matcher
    assert ProhibitedWords([*WORDS, "dick"]).find("Dick Van Dyke") == "dick"


def test_compound_words_are_not_caught_until_they_are_listed():
    # given the seed list, then the same list with the compound added
    extended = ProhibitedWords([*WORDS, "bullshit"])
    # then the compound passes the seed list and is caught, disguised, once listed
    assert PROHIBITED.find("bullshit") is None
    assert extended.find("BuLL$h1t") == "bullshit"


def test_a_multi_word_entry_matches_consecutive_words_however_they_are_joined():
    # given a list with a two-word entry
    prohibited = ProhibitedWords(["Hate Speech"])
    # then it matches the words together, but neither alone
    for text in ["hate speech", "HATE   SPEECH!", "hate-speech", "hatespeech", "h a t e s p e e c h"]:
        assert prohibited.find(text) == "hate speech", text
    assert prohibited.find("I hate spinach") is None
    assert prohibited.find("free speech") is None


def test_list_entries_that_normalise_to_nothing_are_ignored():
    # given a list with blank and punctuation-only entries / when any text is checked / then nothing matches
    prohibited = ProhibitedWords(["", "   ", "...", "-"])
    assert prohibited.find("... - anything") is None


@pytest.mark.parametrize("text", ["", "   ", "?!", "\u200b\u200b", "...---..."])
def test_empty_or_punctuation_only_text_is_never_a_prohibited_word(text):
    assert PROHIBITED.find(text) is None


# --- check_custom_text ----------------------------------------------------------------------------------


def test_printable_text_within_the_limit_has_no_problems():
    assert check("Best Dad Ever!") == []


def test_too_long_text_says_the_limit_and_the_count():
    # given 34 characters for a 30-character slot / when checked / then the customer sees both numbers
    problems = check("A" * 34)
    assert problems == [
        TextProblem(
            code=TextProblemCode.TEXT_TOO_LONG, message='Keep "headline" to 30 characters (you have 34).'
        )
    ]


def test_text_exactly_at_the_limit_is_not_too_long():
    assert check("A" * 30) == []


def test_length_counts_an_accent_typed_as_two_code_points_once():
    # given 30 e-acutes typed as e + combining acute, in a slot that accepts é
    text = "e\u0301" * 30
    # when checked / then the length is 30 (after NFC), not 60
    assert TextProblemCode.TEXT_TOO_LONG not in codes(check(text, allowed="a-z\u00e9"))


def test_zero_width_characters_do_not_count_towards_length_but_are_refused():
    # given 30 letters with a zero-width space inside / when checked
    problems = check("A" * 15 + "\u200b" + "A" * 15)
    # then the length fits and the hidden character is named by its code point
    assert codes(problems) == [TextProblemCode.TEXT_CHARACTERS]
    assert "U+200B" in problems[0].message
    assert "\u200b" not in problems[0].message


def test_one_unprintable_character_is_named_in_the_message():
    problems = check("Best <Dad")
    assert problems == [
        TextProblem(
            code=TextProblemCode.TEXT_CHARACTERS, message='The character "<" can\'t be printed in "headline".'
        )
    ]


def test_several_unprintable_characters_are_each_named_once():
    problems = check("<Best> <Dad>")
    assert problems[0].message == 'The characters "<" and ">" can\'t be printed in "headline".'


def test_a_long_list_of_unprintable_characters_is_shortened():
    problems = check("<>[]{}~^")
    assert problems[0].message == (
        'The characters "<", ">", "[", "]", "{" and 3 more can\'t be printed in "headline".'
    )


def test_spaces_refused_by_the_charset_are_called_spaces():
    # given an initials slot (capitals only) / when a space is typed / then the message says "Spaces"
    problems = check("A B", slot="initials", max_chars=3, allowed=CHARSETS["initials"])
    assert problems[0].message == 'Spaces can\'t be printed in "initials".'


def test_control_and_zero_width_characters_are_refused_even_when_the_charset_admits_everything():
    # given a charset that admits every code point / when control and format characters are typed
    problems = check("Hi\x07there\u200d\n", allowed=r"\x00-\U0010FFFF")
    # then they are still refused, by code point
    assert codes(problems) == [TextProblemCode.TEXT_CHARACTERS]
    assert "U+0007" in problems[0].message and "U+200D" in problems[0].message
    assert "U+000A" in problems[0].message


def test_a_prohibited_word_is_refused_without_repeating_it():
    # given a prohibited word / when checked / then the message asks for a change without echoing the word
    problems = check("Sh1t happens")
    assert problems == [
        TextProblem(
            code=TextProblemCode.PROHIBITED_WORD,
            message='The text for "headline" contains a word we can\'t print. Please change it.',
        )
    ]
    assert "shit" not in problems[0].message.lower()


def test_every_problem_is_reported_at_once_in_a_stable_order():
    # given text that is too long, has an unprintable character and a prohibited word
    problems = check("<Nike> is the best brand in the whole world")
    # then all three are reported, length first
    assert codes(problems) == [
        TextProblemCode.TEXT_TOO_LONG,
        TextProblemCode.TEXT_CHARACTERS,
        TextProblemCode.PROHIBITED_WORD,
    ]


def test_problem_codes_are_the_strings_the_api_contract_names():
    assert [str(code) for code in TextProblemCode] == ["text_too_long", "text_characters", "prohibited_word"]


# --- properties -----------------------------------------------------------------------------------------


@st.composite
def with_zero_width_characters(draw, word: str) -> str:
    gap = st.text(alphabet=st.sampled_from(ZERO_WIDTH), max_size=3)
    gaps = [draw(gap) for _ in range(len(word) + 1)]
    return "".join(before + ch for before, ch in zip(gaps, word, strict=False)) + gaps[-1]


@st.composite
def disguised(draw, word: str) -> str:
    letters = []
    for ch in word:
        letter = draw(st.sampled_from([ch, *LEET_FOR.get(ch, ""), *CYRILLIC_FOR.get(ch, "")]))
        if draw(st.booleans()):
            letter = letter.upper()
        if draw(st.booleans()) and "!" <= letter <= "~":
            letter = chr(ord(letter) + 0xFEE0)  # full-width form
        letter += "".join(draw(st.lists(st.sampled_from(COMBINING_ACCENTS), max_size=2)))
        letters.append(letter)
    return "".join(letters)


@PROPERTY
@given(data=st.data(), word=st.sampled_from(WORDS))
def test_zero_width_characters_anywhere_never_hide_a_prohibited_word(data, word):
    # given a list word with zero-width characters inserted anywhere
    text = data.draw(with_zero_width_characters(word))
    # when checked alone or in a sentence / then the word is still found
    assert PROHIBITED.find(text) == word
    assert PROHIBITED.find(f"Best {text} ever") == word


@PROPERTY
@given(data=st.data(), word=st.sampled_from(WORDS))
def test_case_accents_and_leet_substitutions_never_hide_a_prohibited_word(data, word):
    # given a list word with each letter's case, accents, width, leet or look-alike changed
    text = data.draw(disguised(word))
    # when checked alone or in a sentence / then the word is still found
    assert PROHIBITED.find(text) == word
    assert PROHIBITED.find(f"Best {text} ever") == word


@PROPERTY
@given(text=st.text() | st.text(alphabet=st.sampled_from(
    [*ZERO_WIDTH, *COMBINING_ACCENTS, *"ᄀ하ᅡᆨ0134578 9@$!|+€ßİΗηАаǅ㎁ᾳ"]
)))
def test_normalising_twice_changes_nothing(text):
    once = normalise_for_matching(text)
    assert normalise_for_matching(once) == once


@PROPERTY
@given(text=st.text(alphabet=st.sampled_from(BASIC_CHARACTERS), max_size=30))
def test_allowed_text_within_the_limit_without_any_list_word_has_no_problems(text):
    # given printable text of at most 30 characters whose letters don't contain any list word
    letters = collapsed(normalise_for_matching(text))
    assume(not any(collapsed(word) in letters for word in WORDS))
    # when checked / then there is nothing to fix
    assert check(text, max_chars=30) == []


@PROPERTY
@given(text=st.text(max_size=200), max_chars=st.integers(min_value=0, max_value=100),
       charset=st.sampled_from(sorted(CHARSETS)))
def test_checking_arbitrary_unicode_text_never_raises(text, max_chars, charset):
    problems = check(text, max_chars=max_chars, allowed=CHARSETS[charset])
    assert all(isinstance(problem.code, TextProblemCode) and problem.message for problem in problems)
    assert len({problem.code for problem in problems}) == len(problems)


def test_a_lone_surrogate_is_refused_rather_than_crashing():
    problems = check("A\ud800B")
    assert codes(problems) == [TextProblemCode.TEXT_CHARACTERS]
    assert "U+D800" in problems[0].message
    assert unicodedata.category("\ud800") == "Cs"


@given(st.text())
def test_the_matchers_shortcut_to_a_tokens_shape_is_the_shape_of_its_letter_runs(text):
    # given any token / when its shape is taken in one substitution (repeated letters written once), as the
    # matcher does before it looks a stem up / then it is the shape of the letter runs the matcher compares
    assert _REPEATS.sub(r"\1", text) == _shape(_runs(text))


@given(st.text())
def test_finishing_a_token_keeps_exactly_its_letters_and_digits_after_leetspeak(text):
    # given any text / when it is finished for matching / then exactly the characters str.isalnum() keeps remain
    assert _finish(text) == "".join(ch for ch in text.translate(_LEET) if ch.isalnum())
