"""Dates and identifiers written in CJK numerals, as Japanese and Chinese sites write them: a child
born 5 March 1990 as 平成二年三月五日, one born 3 February 1961 as 昭和三十六年二月三日 or 一九六一年二月三日,
a study of 5 March 2024 as 令和六年三月五日, 15 March 1970 as 一九七〇年三月十五日 or 千九百七十年三月十五日, and
the MRN 4417702 as 四四一七七〇二. Every matching rule keys on digits, so these were released as written,
in every profile, through the lanes and the whole engine. ``_readings.fold`` now reads a run of CJK
numerals as its Arabic value (三十六 as 36, 一九七〇 digit by digit as 1970), where each digit came from
kept, so the cleaning, the gate's readings and the slides', VCF and table byte gate find them and a
match is removed as written."""

from __future__ import annotations

import io

import pydicom
import pydicom.data
import pytest

from curata.collect.deid._readings import fold
from curata.collect.deid.text import Identifiers, find_identifier, identity_spans

from .conftest import ct_small, ct_small_with_bytes, released_or_none

KEY = b"k" * 32
PROFILES = ("basic", "research", "research-strict")
MRN = "4417702"
# (birth date, the form in CJK numerals)
FORMS = (
    ("19900305", "平成二年三月五日"),
    ("19610203", "昭和三十六年二月三日"),
    ("19610203", "一九六一年二月三日"),
    ("20190501", "令和元年五月一日"),
    ("20191015", "令和元年十月十五日"),
    ("20191015", "令和元年10月15日"),  # an era's year 元 with no lone digit was never keyed (released before)
    ("20240305", "令和六年三月五日"),
    ("20001020", "平成十二年十月二十日"),
    ("19700315", "一九七〇年三月十五日"),
    ("19700315", "一九七零年三月十五日"),
    ("19700315", "千九百七十年三月十五日"),
    ("19700315", "昭和四十五年三月十五日"),
    ("20240301", "二〇二四年三月一日"),
    ("20240301", "二千零二十四年三月一日"),
    ("20240301", "二〇二四年三月一号"),  # 号 (號) for the day, as Chinese speech writes it
    ("19700315", "1970年3月15號"),
    ("19700315", "四四一七七〇二"),  # the MRN
    ("19900305", "平成 二 年 三 月 五 日"),
    # found by an outside pass: ◯ (U+25EF) for zero, 元月 for January, an ID's groups split by a dash
    ("19700315", "一九七◯年三月十五日"),
    ("19700315", "四四一七七◯二"),
    ("20040119", "二〇〇四年元月十九日"),
    ("20040119", "2004年元月19日"),
    # found by an eighth pass: the month and day before the year (digits too), a Chinese date without
    # 日, Sino-Korean numerals in Hangul (a run read only where it completes a date: 년, 월, 일), 廿 and 卅
    # for 20 and 30, the katakana middle dot between the numbers, an ID with 万 (441万7702)
    ("19700315", "三月十五日、一九七〇年"),
    ("19700315", "3月15日、1970年"),
    ("19700315", "3月15日，1970年"),
    ("20040119", "二〇〇四年一月十九"),
    ("20040119", "2004年1月19"),
    ("19700315", "천구백칠십년 삼월 십오일"),
    ("19700315", "일구칠공년 삼월 십오일"),
    ("19700315", "1970년 삼월 십오일"),
    ("20040119", "이천사년 일월 십구일"),
    ("19700615", "천구백칠십년 유월 십오일"),  # 유월 and 시월: June and October as Korean says them
    ("19701010", "천구백칠십년 시월 십일"),
    ("19700325", "一九七〇年三月廿五日"),
    ("19700330", "一九七〇年三月卅日"),
    ("19700331", "一九七〇年三月卅一日"),
    ("19700315", "1970・3・15"),
    ("19700315", "一九七〇・三・十五"),
    ("19700315", "四百四十一万七千七百零二"),  # the MRN
)
# an ID's groups split by a dash other than ASCII's (U+2010, U+2015): refused, as with ASCII's
DASHED = ("四四一‐七七〇二", "441―7702", "441‐7702")
# a date's form that ends in a word, then at once a time or an age (released before, digits too): the
# birth date, and CT_small's own study date (2004-01-19) as a note writes it with the time
FOLLOWED = (
    "一九七〇年三月十五日 三十四歳",
    "二〇〇四年一月十九日 十時",
    "二〇〇四年一月十九日十時三十分",
    "平成16年1月19日10時",
    "2004年1月19日10時30分",
    "２００４年１月１９日１０時",
    "1970年3月15日34歳",
)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("born", "form"), FORMS)
def test_a_date_or_id_in_cjk_numerals_never_survives(born: str, form: str, profile: str, whole: bool) -> None:
    data = ct_small(
        MRN,
        born,
        ImageComments=f"生年月日 {form} 記載",  # cleaned under research
        ContentDescription=f"患者 {form}",  # kept under research and basic
        Manufacturer=f"病院{form}",  # kept
        PatientComments=f"{form}生",
    )
    out = released_or_none(data, profile, whole=whole, key=KEY)
    assert out is None or form.encode() not in out, form


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("text", FOLLOWED)
def test_a_date_followed_at_once_by_a_time_or_an_age_never_survives(
    text: str, profile: str, whole: bool
) -> None:
    form = text[: text.index("日") + 1]
    data = ct_small(MRN, "19700315", ImageComments=f"検査 {text} 実施")
    out = released_or_none(data, profile, whole=whole, key=KEY)
    assert out is None or form.encode() not in out, form


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("form", DASHED)
def test_an_id_grouped_by_another_dash_never_survives(form: str, whole: bool) -> None:
    out = released_or_none(
        ct_small(MRN, "19700315", ImageComments=f"ID {form} 確認"), "research", whole=whole, key=KEY
    )
    assert out is None or form.encode() not in out, form


@pytest.mark.parametrize(("mrn", "word"), [("1000", "千葉 医師"), ("100", "百合子 様"), ("1000", "千代田区")])
def test_a_lone_hundred_or_thousand_is_no_number(mrn: str, word: str) -> None:
    """百 and 千 alone are in many words and in no date: a patient whose ID is 100 or 1000 keeps them."""
    out = released_or_none(ct_small(mrn, "19700315", ImageComments=word), "research", whole=True, key=KEY)
    assert out is not None and word.encode() in out


@pytest.mark.parametrize(("born", "form"), FORMS)
def test_the_matcher_and_the_byte_gate_read_numerals(born: str, form: str) -> None:
    ids = Identifiers()
    ids.add_name("QUIXWORTH^ZELDA")
    ids.add_birth_date(born)
    ids.add_strong(MRN)
    ids.add_word(MRN)
    text = f"記録 {form} 確認"
    spans = identity_spans(ids.matcher(), text)
    assert spans
    kept = "".join(c for i, c in enumerate(text) if not any(a <= i < b for a, b in spans))
    assert not any(c in kept for c in "〇零一二三四五六七八九十百千廿卅万")  # the whole run is removed
    # the byte gate of slides, VCF lines and tables finds the numerals as it finds the Arabic digits
    # (it found neither in a CJK date's form: both were None)
    arabic = find_identifier(fold(text)[0].encode(), ids.gate_needles())
    assert arabic is not None
    assert find_identifier(text.encode(), ids.gate_needles()) == arabic


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("header", ["四四一七七〇二", "４４１７７０２"])
def test_an_id_sent_in_numerals_is_known_in_arabic_digits(header: str, whole: bool) -> None:
    out = released_or_none(
        ct_small(header, "19700315", Manufacturer="GE 4417702"), "research", whole=whole, key=KEY
    )
    assert out is None or b"4417702" not in out


# Declared character sets and the text's bytes: as declared, and pasted in another one
CHARSETS = {
    "utf8": ("ISO_IR 192", "utf-8"),
    "gb18030": ("GB18030", "gb18030"),
    "ir87": ("\\ISO 2022 IR 87", "iso2022_jp"),
    "shift-jis-undeclared": ("", "shift_jis"),
    "shift-jis-in-latin1": ("ISO_IR 100", "shift_jis"),
    "euc-jp-undeclared": ("", "euc_jp"),
    "euc-jp-in-ir87": ("\\ISO 2022 IR 87", "euc_jp"),
}
ELEMENTS = ((0x0008103E, "LO"), (0x00204000, "LT"), (0x00081090, "LO"), (0x00104000, "LT"))


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("charset", sorted(CHARSETS))
@pytest.mark.parametrize(
    ("born", "form"),
    [("19900305", "平成二年三月五日"), ("19610203", "昭和三十六年二月三日"), ("19700315", "四四一七七〇二"),
     # the same in digits: a Shift-JIS or EUC-JP reading was not plausible CJK text where ASCII digits
     # outnumbered the kanji (they counted as letters), nor with full-width digits (not counted as CJK)
     ("19900305", "平成2年3月5日"), ("19700315", "ID４４１７７０２")],
)  # fmt: skip
def test_numerals_in_every_cjk_character_set_never_survive(
    charset: str, born: str, form: str, profile: str, whole: bool
) -> None:
    declared, codec = CHARSETS[charset]
    written = form.encode(codec)
    core = written[3:-3] if codec == "iso2022_jp" else written  # JIS bytes without their escapes
    out = released_or_none(
        ct_small_with_bytes(declared, written, ELEMENTS, patient_id=MRN, born=born),
        profile,
        whole=whole,
        key=KEY,
    )
    assert out is None or core not in out, (charset, form)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("charset", sorted(CHARSETS))
def test_clean_text_with_numerals_in_every_cjk_character_set_is_released(charset: str, whole: bool) -> None:
    """A control: numerals and digits that name no one, in each character set, are no reason to refuse."""
    declared, codec = CHARSETS[charset]
    for text in ("胸部CT 120 kV 造影 2回 平成二十年導入", "二〇二四年三月一日 第一回 十二指腸 ５ mm"):
        out = released_or_none(
            ct_small_with_bytes(declared, text.encode(codec), ELEMENTS, patient_id=MRN, born="19850712"),
            "basic",
            whole=whole,
            key=KEY,
        )
        assert out is not None, (charset, text)


# Controls: clean Japanese and Chinese text with numerals, for a patient whose dates and IDs are others
CLEAN = (
    "一般撮影 第一回 十二指腸 三月 単純CT",
    "平成二年以降の装置 十分な造影 一部欠損",
    "令和元年度 三十分後 二回目 五ミリ",
    "一九九〇年代の規格 千百 第十二胸椎",
    "二〇二四年度 第三十六回 十月二十日の会議",
    "胸部一般 一〇〇 kV 三〇〇 mA 二十四時間",
    "一般检查 第一次 十二指肠 三月份 两千例",
    "一般 〇〇病院 ○○様 一一確認",
    # Korean numerals are common syllables; 万, 廿, 卅 and ・ in ordinary words and measurements
    "이 환자는 삼월에 일일 투여량 이십 밀리그램 사용",
    "천년 고도 경주에서 오월 십일 검사, 이천 명 중 일부",
    "구월 십오일 외래 예정 삼십 분 후 재검",
    "일구칠공 번 버스 사십 세 남자",
    "万一 一万円 千万 三万五千 十万人 万能",
    "廿日市 卅年 三月廿五日 会議",
    "3・5 mm 120・80 mmHg 第一・第二 1・2・3",
    "胸部CT 120 kV 3.5 mm 平成十二年度",
)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", PROFILES)
def test_clean_text_with_numerals_is_released_unchanged(profile: str, whole: bool) -> None:
    """The patient below (MRN 8802614, born 12 July 1985: 昭和六十年七月十二日) is named by none."""
    for text in CLEAN:
        data = ct_small("8802614", "19850712", ContentDescription=text, Manufacturer=text)
        out = released_or_none(data, profile, whole=whole, key=KEY)
        assert out is not None, text
        ds = pydicom.dcmread(io.BytesIO(out))
        assert ds.Manufacturer == text
        if "ContentDescription" in ds and profile != "research-strict":
            assert ds.ContentDescription == text


def test_clean_text_names_no_one_in_the_matcher() -> None:
    ids = Identifiers()
    ids.add_name("QUIXWORTH^ZELDA")
    ids.add_birth_date("19850712")
    ids.add_date("20040119")
    ids.add_strong("8802614")
    ids.add_word("8802614")
    for text in CLEAN:
        assert not identity_spans(ids.matcher(), text), text
        assert find_identifier(text.encode(), ids.gate_needles()) is None, text


@pytest.mark.parametrize(
    ("text", "folded"),
    [("三十六", "36"), ("十五", "15"), ("十", "10"), ("二十", "20"), ("一九七〇", "1970"), ("千九百七十", "1970"),
     ("二千零二十四", "2024"), ("一百零五", "105"), ("两千", "2000"), ("二○二四", "2024"), ("○○", "○○"),
     ("十十", "十十")],
)  # fmt: skip
def test_fold_reads_a_numeral_run_as_its_value(text: str, folded: str) -> None:
    out, at = fold(text)
    assert out == folded
    assert len(at) == len(out)
    if out != text:
        assert at[0] == 0 and at[-1] == len(text) - 1


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
def test_a_name_with_numerals_is_no_number(whole: bool) -> None:
    """A name is not folded to digits (加藤^一二三 gave the name part 123 while an ID's numerals are read:
    a description's 123 was then cleaned or refused); the name itself is still found as written."""
    ids = Identifiers()
    ids.add_name("Kato^Hifumi=加藤^一二三")
    ids.add_strong("Kato^Hifumi=加藤^一二三")
    assert not identity_spans(ids.matcher(), "CT 123 slices")
    assert find_identifier(b"CT 123 slices", ids.gate_needles()) is None
    assert identity_spans(ids.matcher(), "患者 加藤一二三 様")
    ds = pydicom.dcmread(io.BytesIO(ct_small(MRN, "19700315")))
    ds.PatientName = "Kato^Hifumi=加藤^一二三"
    ds.StudyDescription = "CT 123 slices"
    ds.Manufacturer = "患者 加藤一二三 様"
    buf = io.BytesIO()
    ds.save_as(buf)
    out = released_or_none(buf.getvalue(), "research", whole=whole, key=KEY)
    assert out is not None
    released = pydicom.dcmread(io.BytesIO(out))
    assert released.StudyDescription == "CT 123 slices"
    assert "一二三" not in str(released.get("Manufacturer", ""))
