"""A Gregorian date as the other calendars that sites write dates in: the Japanese era (昭和36年2月3日,
S36.02.03), the Republic of China's Minguo years (民國50年2月3日, 050/02/03), the Thai Buddhist era
(3 ก.พ. 2504, 3/2/2504), the Solar Hijri (Persian) calendar (1339/11/14) and the tabular Islamic calendar
(18 Sha'ban 1380), and the ISO ordinal date (1961-034). ``text._date_forms`` adds these forms to a
date's written forms, and ``text.DateNeedles`` their years to its keys, so that a birth date or a study
date written so in a description is cleaned, and in a kept element refused, like any written form.

Lower case, as ``_date_forms`` writes its forms; the era also in its hiragana reading (しょうわ36ねん).
The digits of other scripts (۱۳۳۹/۱۱/۱۴, ๒๕๐๔) are read as ASCII digits (``_readings.fold``). An era's
years 1 to 9 may be written with no run of two digits (H2.3.5, 平成2年3月5日, 令和元年5月1日): those
forms are keyed by the era's marks (``ERA_MARKS``). The month by name in Arabic script (15 مارس 1970,
١٥ آذار ١٩٧٠, ۲۴ اسفند ۱۳۴۸, ٧ محرم ١٣٩٠هـ): ``_arabic_script``, forms of text alone.
"""

from __future__ import annotations

import datetime as dt
import re

from curata.collect.deid._readings import fold

# (first day, name in kanji, initial): an era's year 1 is the Gregorian year of its first day
_ERAS = (
    (dt.date(2019, 5, 1), "令和", "r", "れいわ"),
    (dt.date(1989, 1, 8), "平成", "h", "へいせい"),
    (dt.date(1926, 12, 25), "昭和", "s", "しょうわ"),
    (dt.date(1912, 7, 30), "大正", "t", "たいしょう"),
    (dt.date(1868, 10, 23), "明治", "m", "めいじ"),
)  # (first day, kanji, initial, hiragana reading)
# each era's name in romaji and its digit in Japanese claims (receipt) dates: 3360203 is S36.02.03
_ERA_ROMAJI = {"r": "reiwa", "h": "heisei", "s": "showa", "t": "taisho", "m": "meiji"}
_ERA_CODE = {"m": "1", "t": "2", "s": "3", "h": "4", "r": "5"}
_PERSIAN_MONTHS = ("farvardin", "ordibehesht", "khordad", "tir", "mordad", "shahrivar", "mehr", "aban",
                   "azar", "dey", "bahman", "esfand")  # fmt: skip
_THAI_MONTHS = (
    ("ม.ค.", "มกราคม"), ("ก.พ.", "กุมภาพันธ์"), ("มี.ค.", "มีนาคม"), ("เม.ย.", "เมษายน"),
    ("พ.ค.", "พฤษภาคม"), ("มิ.ย.", "มิถุนายน"), ("ก.ค.", "กรกฎาคม"), ("ส.ค.", "สิงหาคม"),
    ("ก.ย.", "กันยายน"), ("ต.ค.", "ตุลาคม"), ("พ.ย.", "พฤศจิกายน"), ("ธ.ค.", "ธันวาคม"),
)  # fmt: skip
_HIJRI_MONTHS = (
    ("muharram",), ("safar",), ("rabi al-awwal", "rabi' al-awwal", "rabi i"),
    ("rabi al-thani", "rabi' al-thani", "rabi al-akhir", "rabi ii"), ("jumada al-awwal", "jumada i"),
    ("jumada al-thani", "jumada al-akhirah", "jumada ii"), ("rajab",), ("shaban", "sha'ban", "shaaban"),
    ("ramadan", "ramadhan"), ("shawwal",), ("dhu al-qadah", "dhu al-qi'dah", "dhul qadah"),
    ("dhu al-hijjah", "dhul hijjah", "dhu'l-hijjah"),
)  # fmt: skip
_SEPS = ("/", ".", "-")
# Month names in Arabic script (2026-12-07), as written; folded once (``_readings.fold``: hamza and
# madda on alif dropped, ة as ه, ى and ی as ي, ک as ك, the ZWNJ of ربیع‌الاول dropped), as a text is read.
# The Gregorian months: the Egyptian and Gulf names (مارس, أبريل, يونيو/يونيه), the Levantine and Iraqi
# ones (آذار, نيسان, أيار/مايس, حزيران, تموز, آب, تشرين الأول, كانون الثاني), the Maghreb's (جانفي, فيفري,
# أفريل, ماي, جوان, جويلية, أوت; Morocco's يوليوز, غشت, شتنبر, نونبر, دجنبر), Persian (ژانویه, فوریه,
# آوریل, مه, ژوئن, ژوئیه, اوت, سپتامبر, اکتبر, نوامبر, دسامبر) and Urdu (جنوری, فروری, مارچ, اپریل, مئی,
# جولائی, اگست, ستمبر, اکتوبر, نومبر, دسمبر)
_ARABIC_SCRIPT_MONTHS = (
    ("يناير", "كانون الثاني", "كانون ثاني", "جانفي", "ژانویه", "ژانوئیه", "جنوری"),
    ("فبراير", "شباط", "فيفري", "فوریه", "فروری"),
    ("مارس", "آذار", "مارچ"),
    ("أبريل", "نيسان", "أفريل", "آوریل", "اپریل"),
    ("مايو", "مايس", "أيار", "ماي", "مه", "می", "مئی"),
    ("يونيو", "يونيه", "حزيران", "جوان", "ژوئن", "جون"),
    ("يوليو", "يوليه", "تموز", "جويلية", "يوليوز", "ژوئیه", "جولای", "جولائی"),
    ("أغسطس", "آب", "أوت", "غشت", "آگوست", "اگست"),
    ("سبتمبر", "أيلول", "شتنبر", "سپتامبر", "ستمبر"),
    ("أكتوبر", "تشرين الأول", "تشرين أول", "اکتبر"),
    ("نوفمبر", "تشرين الثاني", "تشرين ثاني", "نونبر", "نوامبر", "نومبر"),
    ("ديسمبر", "كانون الأول", "كانون أول", "دجنبر", "دسامبر", "دسمبر"),
)  # fmt: skip
# and written as two (آذار/مارس, آذار (مارس), (آذار) مارس), as Levantine papers do: the first two names of a month
_PAIRED = (("كانون الثاني", "يناير"), ("شباط", "فبراير"), ("آذار", "مارس"), ("نيسان", "أبريل"),
           ("أيار", "مايو"), ("حزيران", "يونيو"), ("تموز", "يوليو"), ("آب", "أغسطس"), ("أيلول", "سبتمبر"),
           ("تشرين الأول", "أكتوبر"), ("تشرين الثاني", "نوفمبر"), ("كانون الأول", "ديسمبر"))  # fmt: skip
# The Solar Hijri months in Persian script (۲۴ اسفند ۱۳۴۸), and Dari's (Afghanistan: حمل, ثور...)
_PERSIAN_SCRIPT_MONTHS = (
    ("فروردین", "حمل"), ("اردیبهشت", "ثور"), ("خرداد", "جوزا"), ("تیر", "سرطان"), ("مرداد", "امرداد", "اسد"),
    ("شهریور", "سنبله"), ("مهر", "میزان"), ("آبان", "عقرب"), ("آذر", "قوس"), ("دی", "جدی"), ("بهمن", "دلو"),
    ("اسفند", "حوت"),
)  # fmt: skip
# The Hijri months in Arabic script (٧ محرم ١٣٩٠هـ), Arabic and Persian spellings
_HIJRI_SCRIPT_MONTHS = (
    ("محرم", "المحرم"), ("صفر",), ("ربيع الأول", "ربيع أول", "ربیع‌الاول"),
    ("ربيع الآخر", "ربيع الثاني", "ربيع ثاني", "ربیع‌الثانی"),
    ("جمادى الأولى", "جمادى الأول", "جمادی‌الاول", "جمادی‌الاولی"),
    ("جمادى الآخرة", "جمادى الثانية", "جمادى الآخر", "جمادى الثاني", "جمادی‌الثانی", "جمادی‌الآخر"),
    ("رجب",), ("شعبان",), ("رمضان",), ("شوال",), ("ذو القعدة", "ذي القعدة", "ذیقعده", "ذی‌القعده"),
    ("ذو الحجة", "ذي الحجة", "ذیحجه", "ذی‌الحجه"),
)  # fmt: skip
# Between the month and the year: "year" (15 مارس عام 1970, 15 مارس سنة 1970) and Persian's "month"
# (۲۴ اسفند ماه ۱۳۴۸), folded
_ARABIC_SCRIPT_GAPS = tuple(fold(w)[0] for w in ("عام", "سنة", "سنہ", "ماه", "سال", "ماه سال"))
# "month" before a month's name (15 شهر مارس 1970, 10 من شهر رمضان 1390, ۱۵ ماه مارس), and after a Persian
# one, apart or joined (۲۴ اسفند ماه, ۲۴ اسفندماه; with its zero-width non-joiner dropped by ``fold``)
_MONTH_WORDS = tuple(fold(w)[0] for w in ("شهر", "ماه"))
_PERSIAN_MONTH_WORD = _MONTH_WORDS[1]
# the Hijri months' epithets, as Arabic and Urdu write them (محرم الحرام, صفر المظفر, رمضان المبارك)
_HIJRI_EPITHETS = (
    ("الحرام",), ("المظفر", "الخير"), ("الشريف", "شريف"), ("الشريف", "شريف"), (), (), ("المرجب",),
    ("المعظم",), ("المبارك", "الكريم"), ("المكرم",), ("الحرام",), ("الحرام",),
)  # fmt: skip


def _folded_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Month names as ``_readings.fold`` reads them, each with several words also run together."""
    out: dict[str, None] = {}
    for name in names:
        folded = fold(name)[0]
        out[folded] = None
        out[folded.replace(" ", "")] = None
    return tuple(out)


def _folded_pairs(pair: tuple[str, str]) -> tuple[tuple[str, str], tuple[str, str]]:
    """A month's two names folded (each already folded by ``_folded_names``: ``fold`` remembers it),
    in both orders: bracketed, the two read as they are folded apart."""
    a, b = fold(pair[0])[0], fold(pair[1])[0]
    return (a, b), (b, a)


def _with_month_word(names: tuple[str, ...], after: bool = False) -> tuple[str, ...]:
    """``names`` and each with the word "month" before it (and, for Persian's, after it)."""
    out = [*names, *(f"{w} {n}" for w in _MONTH_WORDS for n in names)]
    if after:
        out += [f"{n}{sep}{_PERSIAN_MONTH_WORD}" for n in names for sep in (" ", "")]
    return tuple(dict.fromkeys(out))


_ARABIC_SCRIPT = tuple(
    _with_month_word(
        _folded_names((*names, *(f"{a}{sep}{b}" for a, b in (pair, pair[::-1]) for sep in ("/", " / "))))
        + tuple(f for a, b in _folded_pairs(pair) for f in (f"{a} ({b})", f"({a}) {b}"))
    )
    for names, pair in zip(_ARABIC_SCRIPT_MONTHS, _PAIRED, strict=True)
)
_PERSIAN_SCRIPT = tuple(
    _with_month_word(_folded_names(names), after=True) for names in _PERSIAN_SCRIPT_MONTHS
)
_HIJRI_SCRIPT = tuple(
    _with_month_word(_folded_names((*names, *(f"{n} {e}" for n in names for e in epithets))))
    for names, epithets in zip(_HIJRI_SCRIPT_MONTHS, _HIJRI_EPITHETS, strict=True)
)
# an era date's separators besides: a dot and a space (H2. 3. 5, as forms pad one-digit numbers), the
# katakana middle dot (H2・3・5). Spaces beside kanji are dropped by ``_readings.fold`` (平成 2年 3月 5日).
_ERA_SEPS = (*_SEPS, ". ", "・")
_HIJRI_SHIFTS = (-2, -1, 0, 1, 2)  # days: observed Islamic calendars run up to two days from the tabular one


def _digits(n: int) -> tuple[str, ...]:
    """A month or day as written: with and without its zero."""
    return (f"{n:02d}", str(n)) if n < 10 else (str(n),)


def japanese_era(day: dt.date) -> tuple[str, str, str, int] | None:
    """(kanji, initial, reading, year of the era), or None before Meiji."""
    for start, kanji, initial, reading in _ERAS:
        if day >= start:
            return kanji, initial, reading, day.year - start.year + 1
    return None


def solar_hijri(day: dt.date) -> tuple[int, int, int]:
    """The Persian (Solar Hijri) date: the arithmetic of the jalaali algorithm (Borkowski), exact for
    the years a living patient has."""
    gy, gm, gd = day.year, day.month, day.day
    before = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
    gy2 = gy + 1 if gm > 2 else gy
    days = 355666 + 365 * gy + (gy2 + 3) // 4 - (gy2 + 99) // 100 + (gy2 + 399) // 400 + gd + before[gm - 1]
    jy = -1595 + 33 * (days // 12053)
    days %= 12053
    jy += 4 * (days // 1461)
    days %= 1461
    if days > 365:
        jy += (days - 1) // 365
        days = (days - 1) % 365
    if days < 186:
        return jy, 1 + days // 31, 1 + days % 31
    return jy, 7 + (days - 186) // 30, 1 + (days - 186) % 30


def tabular_islamic(day: dt.date) -> tuple[int, int, int]:
    """The arithmetic (tabular) Islamic date. Observed calendars differ from it by a day or two, so
    ``other_calendar_forms`` writes two days either side too."""
    jd = day.toordinal() + 1721425  # the Julian Day Number
    ell = jd - 1948440 + 10632
    n = (ell - 1) // 10631
    ell = ell - 10631 * n + 354
    j = ((10985 - ell) // 5316) * ((50 * ell) // 17719) + (ell // 5670) * ((43 * ell) // 15238)
    ell = ell - ((30 - j) // 15) * ((17719 * j) // 50) - (j // 16) * ((15238 * j) // 43) + 29
    month = (24 * ell) // 709
    return 30 * n + j - 30, month, ell - (709 * month) // 24


def _japanese_keys(day: dt.date) -> set[str]:
    era = japanese_era(day)
    if era is None:
        return set()
    kanji, initial, reading, year = era
    compact = f"{year:02d}{day.month:02d}{day.day:02d}"
    keys = {f"{year:02d}", str(year), compact, _ERA_CODE[initial] + compact}
    if year < 10:  # forms with no run of two digits (H2.3.5, 平成2年3月5日, 令和元年5月1日): the era's marks
        keys |= {kanji[0], initial, _ERA_ROMAJI[initial], reading}
    return keys


def _japanese(day: dt.date) -> set[str]:
    era = japanese_era(day)
    if era is None:
        return set()
    kanji, initial, reading, year = era
    forms: set[str] = set()
    for ey in {*_digits(year), *(("元",) if year == 1 else ())}:
        for mm in _digits(day.month):
            for dd in _digits(day.day):
                for gap in ("", " "):
                    forms.add(gap.join((kanji, ey, "年", mm, "月", dd, "日")))
                    forms.add(gap.join((reading, ey, "ねん", mm, "がつ", dd, "にち")))
                for era_name in (initial, kanji[0]):  # S36年2月3日, 昭36年2月3日
                    forms.add(f"{era_name}{ey}年{mm}月{dd}日")
                forms.add(f"{_ERA_ROMAJI[initial]} {ey}年{mm}月{dd}日")  # Heisei 2年3月5日
                forms.add(f"{initial}.{ey}.{mm}.{dd}")  # H.2.3.5
                for sep in _ERA_SEPS:  # S36.2.3, 昭36.2.3, 昭和36/2/3, Showa 36.2.3, H2. 3. 5, R元.5.1
                    for era_name in (initial, _ERA_ROMAJI[initial]):
                        forms |= {
                            f"{era_name}{ey}{sep}{mm}{sep}{dd}",
                            f"{era_name} {ey}{sep}{mm}{sep}{dd}",
                        }
                    # after a kanji no space: ``_readings.fold`` drops it (昭和 36.2.3 is read 昭和36.2.3)
                    forms |= {f"{era_name}{ey}{sep}{mm}{sep}{dd}" for era_name in (kanji[0], kanji)}
    compact = f"{year:02d}{day.month:02d}{day.day:02d}"
    forms |= {initial + compact, _ERA_CODE[initial] + compact}  # S360203, and 3360203 in claims
    return forms


def _minguo_keys(day: dt.date) -> set[str]:
    if day.year <= 1911:
        return set()
    roc = day.year - 1911
    return {str(roc), f"{roc:03d}", f"{roc:03d}{day.month:02d}{day.day:02d}"}


def _minguo(day: dt.date) -> set[str]:
    if day.year <= 1911:
        return set()
    roc = day.year - 1911
    forms = {f"{roc:03d}{day.month:02d}{day.day:02d}"}  # as Taiwan's claims write it (0500203)
    for ry in {str(roc), f"{roc:03d}"}:
        for mm in _digits(day.month):
            for dd in _digits(day.day):
                for prefix in ("民國", "民国"):
                    forms |= {f"{prefix}{ry}年{mm}月{dd}日", f"{prefix} {ry} 年 {mm} 月 {dd} 日"}
                forms |= {sep.join((ry, mm, dd)) for sep in _SEPS}
    return forms


def _thai_keys(day: dt.date) -> set[str]:
    by = str(day.year + 543)
    return {by, by + f"{day.month:02d}{day.day:02d}", f"{day.day:02d}{day.month:02d}" + by}


def _thai(day: dt.date) -> set[str]:
    by = str(day.year + 543)
    forms = {by + f"{day.month:02d}{day.day:02d}", f"{day.day:02d}{day.month:02d}" + by}
    for mm in _digits(day.month):
        for dd in _digits(day.day):
            forms |= {sep.join((dd, mm, by)) for sep in _SEPS} | {sep.join((by, mm, dd)) for sep in _SEPS}
    for name in _THAI_MONTHS[day.month - 1]:
        for dd in _digits(day.day):
            forms |= {f"{dd} {name} {by}", f"{dd} {name} พ.ศ. {by}", f"{dd}{name}{by}"}
    return forms


def _persian_keys(day: dt.date) -> set[str]:
    py, pm, pd = solar_hijri(day)
    return {str(py), f"{py}{pm:02d}{pd:02d}"}


def _persian(day: dt.date) -> set[str]:
    py, pm, pd = solar_hijri(day)
    forms = {f"{py}{pm:02d}{pd:02d}"}
    for mm in _digits(pm):
        for dd in _digits(pd):
            forms |= {sep.join((str(py), mm, dd)) for sep in _SEPS}
            forms |= {sep.join((dd, mm, str(py))) for sep in _SEPS}
    for dd in _digits(pd):  # 14 Bahman 1339
        forms |= {f"{dd} {_PERSIAN_MONTHS[pm - 1]} {py}", f"{dd} {_PERSIAN_MONTHS[pm - 1]}, {py}"}
    return forms


def _islamic_keys(day: dt.date) -> set[str]:
    return {str(tabular_islamic(day + dt.timedelta(days=shift))[0]) for shift in _HIJRI_SHIFTS}


def _islamic(day: dt.date) -> set[str]:
    forms: set[str] = set()
    for shift in _HIJRI_SHIFTS:
        hy, hm, hd = tabular_islamic(day + dt.timedelta(days=shift))
        for mm in _digits(hm):
            for dd in _digits(hd):
                forms |= {sep.join((str(hy), mm, dd)) for sep in _SEPS}
                forms |= {sep.join((dd, mm, str(hy))) for sep in _SEPS}
        for name in _HIJRI_MONTHS[hm - 1]:
            for dd in _digits(hd):
                forms |= {f"{dd} {name} {hy}", f"{dd} {name}, {hy}", f"{dd} {name} {hy} ah"}
    return forms


# between a day, a month's name and a year: the same twice (15-مارس-1970), or one of them a space
# (15 مارس - 1970, 15-مارس 1970, 15 مارس/1970)
_WRITTEN_SEPS = tuple(
    (a, b)
    for a in (" ", "-", "/", ".", " - ", "")
    for b in (" ", "-", "/", ".", " - ", "")
    if " " in (a, b) or a == b
)


def _written(names: tuple[str, ...], day: int, year: int, *, short: bool = False) -> set[str]:
    """A date with its month by name in Arabic script (folded), as written in Arabic, Persian and Urdu:
    day, month and year (15 مارس 1970, with ، read as a comma: 15 مارس، 1970; 15-مارس-1970, 15.مارس.1970,
    ١٥مارس١٩٧٠; 15 مارس عام 1970, ۲۴ اسفند ماه ۱۳۴۸; the Persian ordinal ۲۴ام), the month first (مارس 15,
    1970) or the year first (1970 مارس 15). Digits of any script are read as ASCII ones, and a letter may
    follow the year (1970م, 1390هـ). ``short``: also with the year's last two digits, as in 15 March 70
    (۱۵ خرداد ۴۲)."""
    forms: set[str] = set()
    years = (str(year), f"{year % 100:02d}") if short else (str(year),)
    for name in names:
        for dd in _digits(day):
            for yy in years:
                forms |= {f"{dd}{a}{name}{b}{yy}" for a, b in _WRITTEN_SEPS}
                forms |= {f"{dd}{name} {yy}", f"{dd} {name}{yy}", f"{dd}ام {name} {yy}"}
                forms |= {f"{dd} {name} {gap} {yy}" for gap in _ARABIC_SCRIPT_GAPS}
                forms |= {f"{dd} {name}, {gap} {yy}" for gap in _ARABIC_SCRIPT_GAPS}
            # ، is read as a comma (15 مارس، 1970), with or without a space before it
            forms |= {f"{dd} {name}{c}{year}" for c in (", ", ",", " , ")} | {f"{dd} من {name} {year}"}
            forms |= {f"{name} {dd}, {year}", f"{name} {dd},{year}", f"{name} {dd} {year}"}
            forms |= {f"{year}{sep}{name}{sep}{dd}" for sep in (" ", "-", "/")}  # the year first
    return forms


def _arabic_script_keys(day: dt.date) -> set[str]:
    year, solar = day.year, solar_hijri(day)[0]
    return {str(year), f"{year % 100:02d}", str(solar), f"{solar % 100:02d}", *_islamic_keys(day)}


def _arabic_script(day: dt.date) -> set[str]:
    """``day`` with its month by name in Arabic script: Gregorian (15 مارس 1970, 15 آذار 1970), Solar
    Hijri (۲۴ اسفند ۱۳۴۸) and Hijri (٧ محرم ١٣٩٠, two days either side as ``_islamic``). Text alone
    (``text.DateNeedles`` looks for these only in text that holds a letter of the Arabic script)."""
    forms = _written(_ARABIC_SCRIPT[day.month - 1], day.day, day.year, short=True)
    py, pm, pd = solar_hijri(day)
    forms |= _written(_PERSIAN_SCRIPT[pm - 1], pd, py, short=True)
    for shift in _HIJRI_SHIFTS:
        hy, hm, hd = tabular_islamic(day + dt.timedelta(days=shift))
        forms |= _written(_HIJRI_SCRIPT[hm - 1], hd, hy)
    return forms


def _ordinal_keys(day: dt.date) -> set[str]:
    return {str(day.year), f"{day.year}{day.timetuple().tm_yday:03d}"}


def _ordinal(day: dt.date) -> set[str]:
    ordinal = f"{day.timetuple().tm_yday:03d}"
    return {f"{day.year}-{ordinal}", f"{day.year}{ordinal}"}


ARABIC_SCRIPT = "arabic_script"  # the month by name in Arabic script: forms of text alone, none ASCII
# each calendar: (its keys, its forms), computed apart: keys for every date, forms only where they meet
_FAMILIES = {
    "japanese": (_japanese_keys, _japanese), "minguo": (_minguo_keys, _minguo), "thai": (_thai_keys, _thai),
    "persian": (_persian_keys, _persian), "islamic": (_islamic_keys, _islamic),
    "ordinal": (_ordinal_keys, _ordinal), ARABIC_SCRIPT: (_arabic_script_keys, _arabic_script),
}  # fmt: skip
# what a text's keys are made of (``text.digit_keys``): runs of two digits or more, and the marks of a
# Japanese era (its first kanji, its initial before a digit, its romaji name or reading), which key the
# forms of an era's years 1 to 9 that hold no run of two digits
ERA_MARKS = r"[明大昭平令]|[mtshr](?=[ .]?[0-9元])|meiji|taisho|showa|heisei|reiwa|めいじ|たいしょう|しょうわ|へいせい|れいわ"
_DIGIT_RUN = re.compile(r"[0-9]{2,}")
_ERA_MARK = re.compile(ERA_MARKS)


def family_keys(day: dt.date) -> tuple[tuple[str, frozenset[str]], ...]:
    """(calendar, the runs of digits one of its forms of ``day`` always holds): a text without any of
    them holds none of those forms (``DateNeedles`` looks for a calendar's forms only where its keys
    are). Runs of two digits or more, and a Japanese era's marks (``ERA_MARKS``)."""
    made = {name: keys(day) for name, (keys, _) in _FAMILIES.items() if name != ARABIC_SCRIPT}
    # the Arabic script's: the years of the others, not converted again (a date's keys are made for
    # every date of every file)
    solar = min(made["persian"], key=len)
    made[ARABIC_SCRIPT] = {str(day.year), f"{day.year % 100:02d}", solar, solar[-2:], *made["islamic"]}
    return tuple(
        (name, frozenset(k for k in keys if len(k) >= 2 or not k.isdigit())) for name, keys in made.items()
    )


def family_forms(day: dt.date, name: str) -> set[str]:
    """``day`` written in the calendar ``name``, lower case: the forms holding one of its keys whole
    (with the first 8 digits of a longer run, as ``text.digit_keys`` reads a text; or an era's mark)."""
    make_keys, make_forms = _FAMILIES[name]
    keys = make_keys(day)
    marked = any(not k.isdigit() for k in keys)  # an era's years 1 to 9: its marks are keys too
    return {
        f
        for f in make_forms(day)
        if any(r in keys or r[:8] in keys for r in _DIGIT_RUN.findall(f))
        or (marked and any(m in keys for m in _ERA_MARK.findall(f)))
    }


def calendar_years(day: dt.date) -> set[str]:
    """Every calendar's keys (``family_keys``)."""
    return {k for _, keys in family_keys(day) for k in keys}


def other_calendar_forms(day: dt.date) -> set[str]:
    """``day`` written in the other calendars (module docstring), lower case."""
    return {f for name in _FAMILIES for f in family_forms(day, name)}
