"""The patient's own name written in Cyrillic or Greek in the header, and in Latin letters elsewhere:
as passports (ICAO 9303, ELOT 743), ISO 9 / ISO 843 without their marks, BGN/PCGN and the Ukrainian
national system and Bulgaria's write it (ИВАНОВ as IVANOV, ЖУКОВ as ZHUKOV or ZUKOV, ΠΑΠΑΔΟΠΟΥΛΟΣ as PAPADOPOULOS,
ΓΙΩΡΓΟΣ as GIORGOS). Planted in every text element of every pydicom-data object: none survives, and
cleaning removes them (the gate does not have to refuse)."""

from __future__ import annotations

import re

import pytest

from curata.collect.deid.text import Identifiers, ascii_spellings, clean_text

from .test_other_spellings import OtherSpellings, planted_in_the_corpus

PATIENTS = [
    OtherSpellings("ЖУКОВСКИЙ", "ЮЛИЯ", "RU5501234", "ACR11022", "19480614", charset="ISO_IR 192", other=(
        "ZHUKOVSKII^IULIIA", "Zhukovskiy Yuliya", "ZUKOVSKIJ", "Yuliya", "IULIIA",
    )),
    OtherSpellings("ЩЕРБАКОВА", "ЁЛКА", "RU7700912", "ACR33981", "19611102", charset="ISO_IR 192", other=(
        "SHCHERBAKOVA^ELKA", "Shcherbakova Yolka", "SCERBAKOVA", "Serbakova",
    )),
    OtherSpellings("ГРИГОРЕНКО", "ЄВГЕНІЯ", "UA3310458", "ACU40291", "19790301", charset="ISO_IR 192", other=(
        "HRYHORENKO^YEVHENIIA", "Grigorenko", "Hryhorenko Yevheniia", "IEVGENIIA",
    )),
    OtherSpellings("ΠΑΠΑΔΟΠΟΥΛΟΣ", "ΓΙΩΡΓΟΣ", "GR9902117", "ACG50213", "19520917", charset="ISO_IR 192", other=(
        "PAPADOPOULOS^GIORGOS", "Papadopoulos Giorgos", "PAPADOPOULOS", "GIORGOS",
    )),
    OtherSpellings("Μπακογιάννης", "Ευάγγελος", "GR1200458", "ACG77120", "19650228", charset="ISO_IR 192", other=(
        "MPAKOGIANNIS^EVANGELOS", "Bakogiannis Evangelos", "Mpakogiannis", "EVAGGELOS", "EYAGGELOS",
    )),
    OtherSpellings("Χατζηδάκης", "Ευθύμιος", "GR4406612", "ACG88341", "19701005", charset="ISO_IR 192", other=(
        "CHATZIDAKIS^EFTHYMIOS", "Hatzidakis Efthimios", "Efthymios",
    )),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("ИВАНОВ^ИВАН", "IVANOV IVAN"),
        ("Иванов^Сергей", "Ivanov, Sergey"),
        ("Иванов^Сергей", "IVANOV SERGEI"),
        ("ЖУКОВ^ЮРИЙ", "ZHUKOV IURII"),
        ("ЖУКОВ^ЮРИЙ", "Zukov Jurij"),
        ("ЖУКОВ^ЮРИЙ", "Zhukov Yuriy"),
        ("Хрущёва^Наталья", "Khrushcheva Natalia"),
        ("Хрущёва^Наталья", "Hruseva"),
        ("Хрущёва^Наталья", "Chrusceva Natal'ja"),
        ("Шевченко^Олександр", "Shevchenko Oleksandr"),
        ("Гончаренко^Ігор", "Honcharenko Ihor"),
        ("Щерев^Христо", "Shterev Hristo"),
        ("Ъгълов^Стефан", "Agalov Stefan"),
        ("ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΙΩΡΓΟΣ", "PAPADOPOULOS GIORGOS"),
        ("ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΙΩΡΓΟΣ", "Papadopoulos Giorgos"),
        ("Κωνσταντίνου^Χρήστος", "Konstantinou Christos"),
        ("Κωνσταντίνου^Χρήστος", "KONSTANTINOU HRISTOS"),
        ("Ευαγγέλου^Αικατερίνη", "Evangelou Aikaterini"),
        ("Ευαγγέλου^Αικατερίνη", "Evaggelou"),
        ("Μπαλτάς^Ευστάθιος", "Baltas Efstathios"),
        ("Μπαλτάς^Ευστάθιος", "Mpaltas Eystathios"),
        ("Ντόκος^Θεόδωρος", "Dokos Theodoros"),
        ("Ψαρράς^Ξενοφών", "Psarras Xenofon"),
    ],
)
def test_a_cyrillic_or_greek_name_written_in_latin_letters_is_the_name(name: str, written: str) -> None:
    ids = Identifiers()
    ids.add_name(name)
    cleaned = clean_text(f"seen {written} today", ids, generic=False)
    assert cleaned.startswith("seen ") and cleaned.endswith(" today"), cleaned
    left = [w for w in re.split(r"[\s,]+", written) if len(w) >= 4 and w.lower() in cleaned.lower()]
    assert left == [], cleaned


def test_each_scheme_writes_a_cyrillic_or_greek_name_in_ascii() -> None:
    for name in ("ЖУКОВСКИЙ^ЮЛИЯ", "Μπακογιάννης^Ευάγγελος", "ГРИГОРЕНКО^ЄВГЕНІЯ", "Ρωξάνη^Αϋπνία"):
        latin = [s for s in ascii_spellings(name) if s.isascii()]
        assert len(latin) >= 2 and all("^" in s for s in latin), latin
    latin = [s for s in ascii_spellings("Αϋπνία") if s.isascii()]  # ϋ ends no digraph: Aypnia, not Afpnia
    assert "aypnia" in latin and not any("af" in s or "av" in s for s in latin), latin


@pytest.mark.parametrize("profile", ["research", "basic"])
def test_latin_spellings_of_a_cyrillic_or_greek_name_never_survive(profile: str) -> None:
    assert planted_in_the_corpus(profile, PATIENTS) == []
