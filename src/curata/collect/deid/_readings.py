"""Text as another system writes or reads it: the forms ``text`` matches besides the written one.

- ``fold``: composed as written by most systems (Hangul and kana written decomposed, NFD), kana in one
  script and width (the header's phonetic group has やまだ or ﾔﾏﾀﾞ, a report
  ヤマダ), Latin letters at full width (ＹＡＭＡＤＡ), and the marks that some writers add and others
  leave out (Arabic harakat and tatweel: مُحَمَّد, محـمد for محمد; Hebrew niqqud: כֹּהֵן for כהן; accents),
  and Arabic-script letters written one for the other (ة as ه, ى as ي, Persian ی and ک as ي and ك),
  and the digits of every script as ASCII digits (an ID or a date written ٤٤١٧٧٠٢, ۱۳۳۹/۱۱/۱۴, ๒๕๑๓ or
  १९७०), CJK numerals as their Arabic value (平成二年三月五日, 三十六 as 36, 一九七〇 as 1970: ``_numeral_runs``),
  the Arabic separators as ASCII ones (۱۳۴۸٫۱۲٫۲۴), invisible format marks dropped (the RLM of
  ١٥‏/٣‏/١٩٧٠), and spaces beside a kanji or kana dropped (平成 2年 3月 5日), with where each folded
  character came from, so that a match is removed from the text as written.
- ``legacy_readings``: bytes that a Latin-1 (or undeclared) data set holds but that are Shift-JIS,
  EUC-JP, Big5, GBK or EUC-KR text (a CJK name from a system that declared no character set). Their second
  bytes may be ``\\`` or ``^`` (許 is B3 5C in Big5, ソ 83 5C in Shift-JIS), so the Latin-1 reading
  splits them into pieces too short to match; the legacy reading is the name.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from functools import lru_cache

_TATWEEL = "\u0640"
# the voiced and semi-voiced marks of kana, half-width, combining and spacing: they join the kana before
_VOICED = {"\uff9e": "\u3099", "\uff9f": "\u309a", "\u3099": "\u3099", "\u309a": "\u309a", "\u309b": "\u3099",
           "\u309c": "\u309a"}  # fmt: skip
_LEGACY = ("shift_jis", "euc_jp", "big5", "gbk", "euc_kr")


def _cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF


# Arabic-script letters written one for the other (as search engines normalise them): a final ta
# marbuta as ha (فاطمة, فاطمه), alif maqsura as ya (مصطفى, مصطفي), and the Persian and Urdu ya and kaf
# as the Arabic ones (علی, علي). Alif with hamza or madda (أ, إ, آ) loses its mark like any other.
# And the Arabic decimal and thousands separators, comma and date separator as the ASCII marks
# (۱۳۴۸٫۱۲٫۲۴ is 1348.12.24).
_ARABIC = str.maketrans(
    {"\u0629": "\u0647", "\u0649": "\u064a", "\u06cc": "\u064a", "\u06a9": "\u0643",
     "\u066b": ".", "\u066c": ",", "\u060c": ",", "\u060d": "/"}
)  # fmt: skip


def _ideograph_or_kana(ch: str) -> bool:
    o = ord(ch)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF


def _fold_char(ch: str) -> str:
    if ch.isdecimal():  # a digit of any script (Arabic-Indic ٤, Persian ۴, Devanagari ४, Thai ๔...) as ASCII
        return str(unicodedata.decimal(ch))
    if unicodedata.category(ch) == "Pd":  # every dash as ASCII's (441‐7702, 441―7702: an ID in groups)
        return "-"
    s = unicodedata.normalize("NFKC", ch).translate(_ARABIC)
    if not any(map(_cjk, s)):  # a kana keeps its voicing mark (ダ is not タ); other letters lose theirs
        s = "".join(c for c in unicodedata.normalize("NFD", s) if not unicodedata.combining(c))
    # katakana as hiragana (ァ..ヶ are ぁ..ゖ shifted by 0x60)
    return "".join(chr(ord(c) - 0x60) if 0x30A1 <= ord(c) <= 0x30F6 else c for c in s)


# CJK numerals (Chinese and Japanese): the digits, 〇 and 零 for zero (and ○, the circle typed for 〇,
# inside a run of other numerals), 两 and 兩 for two, and the units 十, 百, 千 (in dates and IDs:
# 三十六 is 36, 千九百七十 1970; a run without units is read digit by digit, 一九七〇 as 1970); 廿 and 卅
# for twenty and thirty (三月廿五日, 卅一日), and 万 (萬) for ten thousand (四百四十一万七千七百零二)
_NUMERAL_DIGITS = {"〇": 0, "零": 0, "○": 0, "◯": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5,
                   "六": 6, "七": 7, "八": 8, "九": 9}  # fmt: skip
_NUMERAL_UNITS = {"十": 10, "百": 100, "千": 1000}
_TENS = {"廿": "二十", "卅": "三十"}
_MYRIAD = frozenset("万萬")
_NUMERALS = frozenset(_NUMERAL_DIGITS) | frozenset(_NUMERAL_UNITS) | frozenset(_TENS) | _MYRIAD
_CIRCLES = frozenset("○◯")  # typed for 〇 (U+25CB, U+25EF): a zero only beside other numerals
_WORD_UNITS = frozenset("百千")
_NUMERAL_RUN = re.compile("[" + "".join(sorted(_NUMERALS)) + "]+")
# Sino-Korean numerals in Hangul as the CJK numerals they read (천구백칠십 is 千九百七十, 일구칠공 一九七〇; 공
# and 영 for zero), and the months Korean says otherwise (유월 June, 시월 October). They are common
# syllables (이 "this", 일 "day", 사 "four" or "company"): a run is read only where a date's year, month
# and day stand whole around it (``_korean_date_runs``: 천구백칠십년 삼월 십오일).
_HANGUL_NUMERALS = {"영": "〇", "공": "〇", "일": "一", "이": "二", "삼": "三", "사": "四", "오": "五", "육": "六",
                    "륙": "六", "칠": "七", "팔": "八", "구": "九", "십": "十", "백": "百", "천": "千"}  # fmt: skip
_HANGUL_MONTHS = {"유": "6", "시": "10"}
_HANGUL_RUN = "[" + "".join(_HANGUL_NUMERALS) + "]+"
# compiled on first use (``re``'s cache): most processes never read Korean text
_KOREAN_DATE = rf"({_HANGUL_RUN}|\d+)년[ _]?({_HANGUL_RUN}|[유시]|\d+)월[ _]?({_HANGUL_RUN}|\d+)일"


def _units_value(run: str) -> int | None:
    """The value of a run of numerals with units (三十六, 千九百七十, 二千零二十四), or of one digit."""
    total, digit, last = 0, None, 10_000
    for c in run:
        unit = _NUMERAL_UNITS.get(c)
        if unit is not None:
            if unit >= last:
                return None
            total, digit, last = total + (1 if digit is None else digit) * unit, None, unit
        elif _NUMERAL_DIGITS[c] == 0:
            if digit is not None:
                return None
        elif digit is not None:
            return None
        else:
            digit = _NUMERAL_DIGITS[c]
    return total + (digit or 0)


def _numeral_value(run: str) -> str | None:
    """The Arabic digits a run of CJK numerals stands for (三十六: 36, 十五: 15, 二千零二十四: 2024,
    一九七〇: 1970, 廿五: 25, 四百四十一万七千七百零二: 4417702); None where the run is no number (十十,
    二十一二十二, or circles alone: ○○様), for 百 or 千 alone, which no date holds and many words do
    (千葉, 百合子, 千代田, 百日咳), and for 万 without a digit (万一, 千万) or after which the number is
    spoken short (一万二 for 12,000)."""
    if run in _WORD_UNITS:
        return None
    for tens, written in _TENS.items():
        run = run.replace(tens, written)
    if not _MYRIAD.isdisjoint(run):
        high, _, low = run.replace("萬", "万").partition("万")
        if "万" in low or all(c in _NUMERAL_UNITS for c in high + low):
            return None
        above = _units_value(high) if high else None
        below = 0 if not low else _units_value(low[1:] if low[0] in "〇零" else low)
        if above is None or below is None or (low and (low[0] in "〇零") != (below < 1000)):
            return None
        return str(above * 10_000 + below)
    if not any(c in _NUMERAL_UNITS for c in run):
        return None if set(run) <= _CIRCLES else "".join(str(_NUMERAL_DIGITS[c]) for c in run)
    value = _units_value(run)
    return None if value is None else str(value)


def _korean_date_runs(text: str) -> dict[int, tuple[int, str]]:
    """The Sino-Korean numerals of each date written so in ``text`` (천구백칠십년 삼월 십오일, 1970년 삼월
    십오일): start -> (end, digits), where every run of the date reads as a number, a month and a day."""
    runs: dict[int, tuple[int, str]] = {}
    for m in re.finditer(_KOREAN_DATE, text):
        read: dict[int, tuple[int, str]] = {}
        values: list[int] = []
        for k in (1, 2, 3):
            run = m.group(k)
            if run.isdecimal():
                values.append(int(run))
                continue
            value = _HANGUL_MONTHS.get(run) if k == 2 else None
            if value is None:
                value = _numeral_value("".join(_HANGUL_NUMERALS[c] for c in run))
            if value is None:
                break
            read[m.start(k)] = (m.end(k), value)
            values.append(int(value))
        else:
            if read and 1 <= values[1] <= 12 and 1 <= values[2] <= 31:
                runs.update(read)
    return runs


def _numeral_runs(text: str) -> dict[int, tuple[int, str]]:
    """Where ``text`` holds a run of CJK numerals that reads as a number, or Sino-Korean numerals that
    read as a date (``_korean_date_runs``): start -> (end, digits)."""
    runs: dict[int, tuple[int, str]] = {}
    if not _NUMERALS.isdisjoint(text):
        for m in _NUMERAL_RUN.finditer(text):
            value = _numeral_value(m.group())
            if value is not None:
                runs[m.start()] = (m.end(), value)
    if "월" in text:
        runs.update(_korean_date_runs(text))
    return runs


@lru_cache(maxsize=8192)
def fold(text: str, numerals: bool = True) -> tuple[str, tuple[int, ...]]:
    """``text`` with kana as full-width hiragana, letters at their normal width, marks and tatweel
    dropped, CJK numerals as Arabic digits; and for each character of the result, the index in
    ``text`` it came from (a numeral run read by its units: its first character's, the last digit its
    last's). ``numerals`` False: CJK numerals as written (a name's: 一郎, 三浦, 一二三)."""
    out: list[str] = []
    at: list[int] = []
    runs = _numeral_runs(text) if numerals else {}
    skip = 0
    dropped = False  # since the last character written: a space after it and a mark alone dropped
    for i, ch in enumerate(text):
        if i < skip:
            continue
        if runs and i in runs:
            skip, digits = runs[i]
            same = len(digits) == skip - i  # read digit by digit: each digit from its numeral
            for k, c in enumerate(digits):
                out.append(c)
                at.append(i + k if same else i if k < len(digits) - 1 else skip - 1)
            dropped = False
            continue
        if out and (ch in _VOICED or 0x1160 <= ord(ch) <= 0x11FF):
            # a voicing mark, or a Hangul vowel or final written apart (NFD, as macOS writes 홍길동),
            # joins the character before; a voicing mark that joins none is dropped
            joined = unicodedata.normalize("NFC", out[-1] + _VOICED.get(ch, ch))
            if len(joined) == 1:
                out[-1] = joined
                continue
        if ch in _VOICED:
            continue
        if ch == _TATWEEL or (not ch.isascii() and unicodedata.category(ch) == "Cf"):
            dropped = dropped or (bool(out) and out[-1] == " ")
            continue  # tatweel, and the invisible marks (RLM in ١٥‏/٣‏/١٩٧٠, as CLDR writes Arabic dates)
        folded = _fold_char(ch) if not ch.isascii() else ch
        if not folded:  # a mark alone (a vowel a tatweel carried)
            dropped = dropped or (bool(out) and out[-1] == " ")
            continue
        if folded == " " and (
            (out and _ideograph_or_kana(out[-1]))
            or (i + 1 < len(text) and _ideograph_or_kana(text[i + 1]) and (i + 1) not in runs)
            or dropped  # a tatweel between spaces, carrying a vowel or not (١٥ ـِ مارس): one space
        ):
            continue  # Japanese and Chinese write no spaces between words: 平成 2年 3月 5日 is 平成2年3月5日
        if folded == "・" and out and out[-1] in _ASCII_DIGITS and _digit_at(text, i + 1, runs):
            folded = "."  # the katakana middle dot between numbers, as a date's separator (1970・3・15)
        dropped = False
        for c in folded:
            out.append(c)
            at.append(i)
    return "".join(out), tuple(at)


_ASCII_DIGITS = frozenset("0123456789")


def _digit_at(text: str, i: int, runs: dict[int, tuple[int, str]]) -> bool:
    """Whether a digit of any script, or a run of numerals read as a number, stands at ``text[i]``."""
    return i < len(text) and (text[i].isdecimal() or i in runs)


def folds(text: str) -> bool:
    """Whether ``fold`` changes ``text`` beyond case (cheap test first: ASCII never does)."""
    return not text.isascii() and fold(text)[0] != text


def unfold_span(text: str, at: tuple[int, ...], a: int, b: int) -> tuple[int, int]:
    """The span of ``text`` that folded characters ``a:b`` came from, with the marks after them (not
    the spaces that ``fold`` dropped beside a kanji or kana)."""
    end = at[b] if b < len(at) else len(text)
    while end > at[b - 1] + 1 and text[end - 1] in " \u3000":
        end -= 1
    return at[a], end


def _wide(ch: str) -> bool:
    """A CJK character, or a full-width form or half-width katakana (which only CJK encodings hold)."""
    return _cjk(ch) or 0xFF01 <= ord(ch) <= 0xFF9F


def _plausible(reading: str, least: int) -> bool:
    """A legacy reading that is CJK text: ``least`` CJK characters or more, at least half its letters
    (ASCII digits are no letters of any script: 平成2年3月5日 in Shift-JIS is CJK text)."""
    letters = [c for c in reading if c.isalpha() or (c.isalnum() and not c.isascii())]
    cjk = sum(map(_wide, letters))
    return cjk >= least and 2 * cjk >= len(letters) and reading.isprintable()


@lru_cache(maxsize=4096)
def legacy_readings(data: bytes, least: int = 2) -> tuple[tuple[str, str], ...]:
    """(codec, text) for each legacy CJK encoding in which ``data`` is plausible CJK text (``least``:
    2 for a value that becomes an identifier; 1 for a word of text, matched only against them)."""
    out: list[tuple[str, str]] = []
    for codec in _LEGACY:
        with contextlib.suppress(UnicodeDecodeError):
            text = data.decode(codec)
            if _plausible(text.strip(" \0"), least) and all(t != text for _, t in out):
                out.append((codec, text))
    return tuple(out)


# Single-byte code pages of the scripts that Latin-1 and cp1252 cannot read: a name written by a
# Windows, DOS or Unix system in Cyrillic, Greek, Arabic, Hebrew, Turkish, Central European or Thai
# without (or with another) declared character set.
_SINGLE_BYTE = ("cp1251", "koi8_r", "cp866", "iso8859_5", "cp1253", "iso8859_7", "cp1256", "iso8859_6",
                "cp1255", "iso8859_8", "cp1250", "iso8859_2", "cp1254", "cp874")  # fmt: skip


def _script(ch: str) -> str:
    """The script of a letter, by the first word of its Unicode name (LATIN, CYRILLIC, GREEK...)."""
    return unicodedata.name(ch, "?").split(" ", 1)[0]


def _one_script(text: str) -> bool:
    """Plausible text: printable, and each word's letters beyond ASCII are letters of one script, the
    Latin one where the word has ASCII letters too (MÜLLER read as cp1251 is MЬLLER: not a word), and
    three or more of them in another script, or two between numbers (a month's name: 15 آب 1970); its
    punctuation beyond ASCII that of a script its words are in (the Arabic comma: 15 مارس ، 1970)."""
    if not text.isprintable():
        return False
    words = text.replace("^", " ").replace("=", " ").replace("\\", " ").split()
    seen: set[str] = set()
    marks: set[str] = set()
    for k, word in enumerate(words):
        wide = [c for c in word if not c.isascii()]
        if not wide:
            continue
        letters = [c for c in wide if not unicodedata.category(c).startswith("P")]
        if len(letters) < len(wide):
            marks.update(_script(c) for c in wide if unicodedata.category(c).startswith("P"))
            if not letters:
                continue
        if not all(c.isalpha() for c in letters):
            return False
        scripts = {_script(c) for c in letters}
        if len(scripts) > 1 or (any(c.isascii() and c.isalpha() for c in word) and scripts != {"LATIN"}):
            return False
        if (
            scripts != {"LATIN"}
            and len(letters) < 3
            and not (len(letters) == 2 and _between_numbers(words, k))
        ):
            return False  # two letters of another script are what any two bytes read as (ラ's 83 89: ГЙ)
        seen |= scripts
    return marks <= seen


def _between_numbers(words: list[str], k: int) -> bool:
    """Whether ``words[k]`` stands between two numbers of ASCII digits (a date's day and year)."""
    return 0 < k < len(words) - 1 and all(w.isascii() and w.isdigit() for w in (words[k - 1], words[k + 1]))


@lru_cache(maxsize=4096)
def single_byte_readings(data: bytes) -> tuple[str, ...]:
    """``data`` read in each single-byte code page (``_SINGLE_BYTE``) where it is plausible text of one
    script per word (``_one_script``). Text that is valid UTF-8 is not read so (that is its reading)."""
    out: list[str] = []
    for codec in _SINGLE_BYTE:
        with contextlib.suppress(UnicodeDecodeError):
            text = data.decode(codec)
            if text not in out and _one_script(text.strip(" \0")):
                out.append(text)
    return tuple(out)


def other_script_readings(data: bytes) -> tuple[str, ...]:
    """``single_byte_readings`` whose letters beyond ASCII are not Latin (Cyrillic, Greek, Arabic,
    Hebrew, Thai): what a Windows-1252 reading of the same bytes would turn into mojibake."""
    return tuple(
        text
        for text in single_byte_readings(data)
        if any(not c.isascii() and c.isalpha() and _script(c) != "LATIN" for c in text)
    )


def legacy_offsets(codec: str, text: str) -> list[int]:
    """The byte offset in ``text.encode(codec)`` of each character of ``text``, then the length."""
    offsets = [0]
    for ch in text:
        offsets.append(offsets[-1] + len(ch.encode(codec)))
    return offsets
