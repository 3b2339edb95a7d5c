"""Validate a customer's custom text for a template slot: length, printable characters, prohibited words."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

# Letters that render as nothing, so they hide a word as well as a zero-width space does.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")  # Hangul fillers

# Capitals whose look differs from their lower case (Greek Η looks like H, η like n), mapped before casefold.
_UPPER_CONFUSABLES = str.maketrans({
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
    "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t",
    "Х": "x", "У": "y", "Ѕ": "s", "І": "i", "Ј": "j", "Ԁ": "d", "Ԛ": "q", "Ԝ": "w", "Һ": "h", "Ӏ": "l",
})

# Lower-case letters of other scripts, and Latin letters NFKD cannot strip, that pass for a Latin letter.
_LOWER_CONFUSABLES = str.maketrans({
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    "ω": "w", "γ": "y",
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "х": "x", "у": "y", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "ø": "o", "đ": "d", "ħ": "h", "ł": "l", "ı": "i", "ŧ": "t", "ƀ": "b", "ɑ": "a", "ɡ": "g",
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k",
    "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v",
    "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
})

_LEET_TABLE = {
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "¢": "c",
}
_LEET = str.maketrans(_LEET_TABLE)
_LEET_CHARS = frozenset(_LEET_TABLE)

# Tokens are split here: whitespace, and apostrophes so contractions ("who're") never fuse into one word.
_TOKEN_BREAK = re.compile(r"[\s'\u2018\u2019`]+")

# Endings that inflect a list word without changing what it means ("nikes", "bitches", "fucking").
_SUFFIXES = ("s", "es", "z", "ez", "ed", "er", "ers", "in", "ing", "ings", "y")
_LONGEST_SUFFIX = max(map(len, _SUFFIXES))

# Doubling a vowel is never a real spelling of a list word; doubling a consonant often is ("channel" vs
# "Chanel", "Marvell" vs "Marvel"), so only a vowel or a run of three or more counts as stretching.
_VOWELS = frozenset("aeiou")

# Longest piece a spacing trick is made of ("s h i t", "fu ck"); longer neighbouring words are never fused.
_SHORT_PIECE = 2

_Runs = tuple[tuple[str, int], ...]


class TextProblemCode(StrEnum):
    """What is wrong with a custom text; stored and sent to the API as the problem code."""

    TEXT_TOO_LONG = "text_too_long"
    TEXT_CHARACTERS = "text_characters"
    PROHIBITED_WORD = "prohibited_word"


@dataclass(frozen=True, slots=True, kw_only=True)
class TextProblem:
    """One reason a custom text can't be printed, worded for the customer who typed it."""

    code: TextProblemCode
    message: str


def _is_hidden(ch: str) -> bool:
    """True for characters that change nothing a reader sees: marks left after NFKD, format chars, fillers."""
    return unicodedata.category(ch) in ("Mn", "Me", "Cf") or ch in _INVISIBLE_LETTERS


def _prepare(text: str) -> str:
    """Fold every way of writing the same-looking letter to one form, keeping separators for tokenising."""
    text = unicodedata.normalize("NFKC", text).translate(_UPPER_CONFUSABLES).casefold()
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not _is_hidden(ch))
    return text.translate(_LOWER_CONFUSABLES)


_NOT_ALNUM = re.compile(r"[\W_]+")  # \w is str.isalnum() or "_", in Unicode as in ASCII


def _finish(prepared: str) -> str:
    """Read leetspeak as letters and drop everything else, so "$h.!.t" and "shit" compare equal."""
    return _NOT_ALNUM.sub("", prepared.translate(_LEET))


def normalise_for_matching(text: str) -> str:
    """Reduce text to the letters a reader sees, so obfuscations of a word compare equal to the word.

    NFKC, casefold, accents and invisible format characters removed, look-alike Cyrillic/Greek letters
    and leetspeak mapped to Latin letters, then everything but letters and digits dropped.
    """
    return _finish(_prepare(text))


def _strip_edges(token: str) -> str:
    """Drop punctuation around a token, so a trailing "!" is read as punctuation rather than an "i"."""
    start, end = 0, len(token)
    while start < end and not token[start].isalnum():
        start += 1
    while end > start and not token[end - 1].isalnum():
        end -= 1
    return token[start:end]


def _pieces(token: str) -> list[str]:
    """Split a token at punctuation that isn't leetspeak, so "nike-shoes" yields "nike" on its own."""
    pieces, current = [], []
    for ch in token:
        if ch.isalnum() or ch in _LEET_CHARS:
            current.append(ch)
        elif current:
            pieces.append("".join(current))
            current = []
    if current:
        pieces.append("".join(current))
    return pieces


_REPEATS = re.compile(r"(.)\1+", re.DOTALL)
"""A letter written more than once in a row: replacing each with one copy gives `_shape(_runs(word))`."""


def _runs(word: str) -> _Runs:
    """Group repeated letters, so "fuuuck" is f, u×3, c, k and compares with f, u, c, k."""
    return tuple((m.group(1), len(m.group(0))) for m in re.finditer(r"(.)\1*", word, re.DOTALL))


def _shape(runs: _Runs) -> str:
    return "".join(ch for ch, _ in runs)


def _stretches(text: _Runs, word: _Runs, *, inflected: bool) -> bool:
    """True when text is the word with letters repeated or shortened the way people disguise a word.

    A suffix often doubles the final consonant ("shitty"), so an inflected stem may stretch its last run.
    """
    last = len(word) - 1
    for index, ((ch, seen), (_, wanted)) in enumerate(zip(text, word, strict=True)):
        if seen <= wanted or seen >= 3 or ch in _VOWELS or (inflected and index == last):
            continue
        return False
    return True


def _same_word(text: _Runs, word: _Runs) -> bool:
    return _shape(text) == _shape(word) and _stretches(text, word, inflected=False)


class ProhibitedWords:
    """A prohibited word list, indexed once so each check is a few dictionary look-ups per token.

    A text is flagged when one of its tokens *is* a list word, however it is disguised; a word merely
    appearing inside a longer token is not flagged, which is what keeps "Scunthorpe", "classic",
    "assassin", "cocktail", "Matsushita" and "shitake" printable. In detail, a token matches a word when:

    - after ``normalise_for_matching`` (case, accents, full-width, zero-width characters, look-alike
      letters, leetspeak, inner punctuation: "FuCk", "fück", "ｆｕｃｋ", "$h!t", "s.h.i.t", "f_u-c*k");
    - with letters stretched ("fuuuck", "shiiit") or a double letter written once ("ashole"); a consonant
      written twice is a real spelling, not a disguise ("channel" is not "Chanel", "Marvell" not "Marvel");
    - or followed by an inflection (-s, -es, -z, -ez, -ed, -er, -ers, -in, -ing, -ings, -y): "nikes", "shits",
      "fucking", "shitty". Inflections share the word's meaning, so they are caught even where an innocent
      sense exists ("marvels", "marvelled"), exactly as the bare word is;
    - either as a whole whitespace token, or as a piece of one split at punctuation ("nike-shoes",
      "Nike's"), with punctuation around it ignored ("shit!");
    - or spelled out over consecutive pieces of one or two characters ("s h i t", "f. u. c. k.", "fu ck").

    Compounds ("bullshit", "Disneyland") are not caught: telling them from innocent words needs a
    dictionary, so put the ones that matter on the list. Multi-word entries match consecutive tokens.
    """

    def __init__(self, words: Iterable[str]) -> None:
        self._by_shape: dict[str, list[tuple[str, _Runs]]] = {}
        self._phrases: dict[str, list[tuple[str, tuple[_Runs, ...]]]] = {}  # by the first word's shape
        self._longest = 0
        for word in words:
            parts = [part for token in _TOKEN_BREAK.split(_prepare(word))
                     for part in map(_finish, _pieces(token)) if part]
            if not parts:
                continue
            display = " ".join(parts)
            self._index(display, "".join(parts))
            if len(parts) > 1:
                runs = tuple(_runs(part) for part in parts)
                self._phrases.setdefault(_shape(runs[0]), []).append((display, runs))

    def _index(self, display: str, joined: str) -> None:
        runs = _runs(joined)
        self._by_shape.setdefault(_shape(runs), []).append((display, runs))
        self._longest = max(self._longest, len(runs))

    def find(self, text: str) -> str | None:
        """Return the normalised list word the text contains, or None when it is printable.

        Returns the word rather than a bool so staff tools can say why; never show it to the customer.
        """
        stream: list[tuple[str, str]] = []  # each piece as written, and without punctuation around it
        for token in _TOKEN_BREAK.split(_prepare(text)):
            pieces = _pieces(token)
            candidates = [token, _strip_edges(token)]
            candidates += pieces + [_strip_edges(piece) for piece in pieces]
            for candidate in dict.fromkeys(map(_finish, candidates)):  # most tokens are their own pieces
                if found := self._match(candidate):
                    return found
            stream += [(_finish(piece), _finish(_strip_edges(piece))) for piece in pieces if _finish(piece)]
        return self._find_phrase(stream) or self._find_spelled_out([piece for piece, _ in stream])

    def _match(self, candidate: str) -> str | None:
        """The list word this one token is, plain or inflected, or None."""
        if not candidate:
            return None
        if found := self._match_stem(candidate, inflected=False):
            return found
        for suffix in _SUFFIXES:
            stem = candidate.removesuffix(suffix)
            if stem and stem != candidate and (found := self._match_stem(stem, inflected=True)):
                return found
        return None

    def _match_stem(self, stem: str, *, inflected: bool) -> str | None:
        words = self._by_shape.get(_REPEATS.sub(r"\1", stem))  # its shape, without the runs most stems never need
        if not words:
            return None
        runs = _runs(stem)
        for display, word in words:
            if _stretches(runs, word, inflected=inflected):
                return display
        return None

    def _find_phrase(self, stream: list[tuple[str, str]]) -> str | None:
        """Multi-word entries, matched against consecutive pieces ("hate speech", "hate-speech!")."""
        if not self._phrases:
            return None
        forms = [(_runs(piece), _runs(bare)) for piece, bare in stream]
        for start, first in enumerate(forms):
            shapes = dict.fromkeys(_shape(runs) for runs in first)
            phrases = dict.fromkeys(phrase for shape in shapes for phrase in self._phrases.get(shape, ()))
            for display, parts in phrases:
                window = forms[start:start + len(parts)]
                if len(window) == len(parts) and all(
                    any(_same_word(runs, part) for runs in piece)
                    for piece, part in zip(window, parts, strict=True)
                ):
                    return display
        return None

    def _find_spelled_out(self, stream: list[str]) -> str | None:
        """Words spread over runs of tiny pieces, the spacing trick: "s h i t", "f.u.c.k", "fu ck".

        Only pieces of one or two characters are joined, so ordinary neighbouring words never fuse.
        """
        for start, first in enumerate(stream):
            if len(first) > _SHORT_PIECE:
                continue
            joined = first
            for piece in stream[start + 1:]:
                if len(piece) > _SHORT_PIECE:
                    break
                joined += piece
                if len(_runs(joined)) > self._longest + _LONGEST_SUFFIX:
                    break
                if found := self._match(joined):
                    return found
        return None


def _visible_length(text: str) -> int:
    """Characters a customer sees and counts: NFC code points, leaving out invisible format characters.

    Letters with accents typed as two code points count once; a character that has no precomposed form
    (q + combining tilde) counts twice, which no catalogue charset allows anyway.
    """
    return sum(1 for ch in unicodedata.normalize("NFC", text) if unicodedata.category(ch) != "Cf")


def _never_printable(ch: str) -> bool:
    """Controls, format, unassigned and line separators can't be printed, whatever the charset says."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") or ch in _INVISIBLE_LETTERS


def _listed(items: list[str], *, limit: int = 5) -> str:
    """Join items as a customer reads them: "a", "a and b", "a, b and c", "a, b, c, d, e and 3 more"."""
    shown = items[:limit]
    if len(items) > limit:
        return f"{', '.join(shown)} and {len(items) - limit} more"
    if len(shown) == 1:
        return shown[0]
    return f"{', '.join(shown[:-1])} and {shown[-1]}"


def _characters_message(offending: list[str], slot: str) -> str:
    """Name the characters to remove; invisible ones by code point, since quoting them shows nothing."""
    sentences = []
    visible = [ch for ch in offending if ch != " " and unicodedata.category(ch)[0] in "LMNPS"]
    hidden = [ch for ch in offending if ch != " " and ch not in visible]
    if visible:
        noun = "character" if len(visible) == 1 else "characters"
        quoted = _listed([f'"{ch}"' for ch in visible])
        sentences.append(f'The {noun} {quoted} can\'t be printed in "{slot}".')
    if " " in offending:
        sentences.append(f'Spaces can\'t be printed in "{slot}".')
    if hidden:
        noun = "a hidden character" if len(hidden) == 1 else "hidden characters"
        codes = _listed([f"U+{ord(ch):04X}" for ch in hidden])
        sentences.append(
            f'The text for "{slot}" contains {noun} ({codes}) that can\'t be printed; please retype it.'
        )
    return " ".join(sentences)


def check_custom_text(
    text: str, *, slot: str, max_chars: int, allowed: str, prohibited: ProhibitedWords
) -> list[TextProblem]:
    """Return every reason the text can't be printed in the slot, so the customer fixes them all at once.

    Args:
        text: what the customer typed.
        slot: the template text slot's name, used in the messages.
        max_chars: most visible characters the slot fits (see ``_visible_length``).
        allowed: a regex character-class body from the catalogue's charsets, e.g. ``"A-Za-z0-9 .,'!?&#-"``.
            Control and zero-width characters are refused even when the class would admit them.
        prohibited: the prohibited word list.

    Returns:
        Problems in a stable order (length, characters, prohibited word); empty when the text is fine.
    """
    problems = []
    length = _visible_length(text)
    if length > max_chars:
        problems.append(TextProblem(
            code=TextProblemCode.TEXT_TOO_LONG,
            message=f'Keep "{slot}" to {max_chars} characters (you have {length}).',
        ))
    one_allowed = re.compile(f"[{allowed}]")
    offending = []
    for ch in dict.fromkeys(unicodedata.normalize("NFC", text)):
        if _never_printable(ch) or not one_allowed.fullmatch(ch):
            offending.append(ch)
    if offending:
        problems.append(TextProblem(
            code=TextProblemCode.TEXT_CHARACTERS, message=_characters_message(offending, slot)
        ))
    if prohibited.find(text) is not None:
        problems.append(TextProblem(
            code=TextProblemCode.PROHIBITED_WORD,
            message=f'The text for "{slot}" contains a word we can\'t print. Please change it.',
        ))
    return problems
