"""A patient's address or family name as Chinese, Japanese and Korean notes write them: an address as one
run without spaces (北京市朝阳区建国路88号) named by its last parts (建国路88号), and a family name of one
character (or two, 佐藤) followed by an honorific (王女士, 김씨, 林さん) where the export holds the name as
one run (王秀英, 김민준), in CSV notes and FHIR narratives."""

from __future__ import annotations

from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import (
    csv_row,
    fhir_resources,
    folded_survivors,
    write_csv,
    write_ndjson,
)

# address as the export holds it -> notes naming it, and what of it must not survive (compared folded)
ADDRESSES = {
    "MRN-1": ("北京市朝阳区建国路88号", ["家住朝阳区建国路88号", "建国路88号附近", "住朝阳区建国路"]),
    "MRN-2": ("東京都新宿区西新宿2-8-1", ["新宿区西新宿2-8-1在住", "西新宿2-8-1"]),
    "MRN-3": ("서울특별시강남구일원로81", ["강남구 일원로 81 거주", "일원로81"]),
    "MRN-4": ("上海市徐汇区漕溪北路100弄5号", ["漕溪北路100弄5号"]),
    "MRN-5": ("大阪府大阪市北区梅田3丁目1番1号", ["梅田3丁目1番1号", "北区梅田3丁目"]),
}
ADDRESS_NEEDLES = [
    "建国路88号",
    "朝阳区建国路",
    "西新宿2-8-1",
    "일원로81",
    "漕溪北路100弄5号",
    "梅田3丁目1番1号",
    "北区梅田",
]
KEPT = ["家住", "附近", "在住", "거주"]

# a name held as one run -> notes naming the patient by family name and honorific
NAMES = {
    "MRN-11": ("王秀英", ["王女士复查", "王小姐", "王太太", "王阿姨", "王先生"]),
    "MRN-12": ("张伟", ["张先生", "张医生", "张老师"]),
    "MRN-13": ("陈志明", ["陈医生", "陈大夫", "陈氏"]),
    "MRN-14": ("김민준", ["김씨", "김 씨", "김님", "김 선생님"]),
    "MRN-15": ("林美咲", ["林さん", "林様", "林氏", "林殿"]),
    "MRN-16": ("佐藤葵", ["佐藤さん", "佐藤様"]),
}
NAME_NEEDLES = ["王女", "王小", "王太", "王阿", "王先", "张先", "张医", "张老", "陈医", "陈大", "陈氏", "김씨", "김님",
                "김선", "林さ", "林様", "林氏", "林殿", "佐藤"]  # fmt: skip
KEPT_WORDS = ["复查"]


def test_cjk_addresses_and_family_names_in_csv_notes(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = []
    for mrn, (address, notes) in ADDRESSES.items():
        rows.append(csv_row(mrn=mrn, patient_name="Tan Ah Kow", address=address, notes="seen"))
        rows += [csv_row(mrn=mrn, patient_name="Tan Ah Kow", address=address, notes=n) for n in notes]
    for mrn, (name, notes) in NAMES.items():
        rows.append(csv_row(mrn=mrn, patient_name=name, address="", notes="seen"))
        rows += [csv_row(mrn=mrn, patient_name=name, address="", notes=n) for n in notes]
    write_csv(tmp_path / "export" / "dx.csv", rows)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "export"])
    assert summary.counts["ingested"] == 1
    left = folded_survivors(workspace, ADDRESS_NEEDLES + NAME_NEEDLES)
    assert not left, f"{len(left)} of {len(ADDRESS_NEEDLES + NAME_NEEDLES)} survive: {left}"
    assert folded_survivors(workspace, KEPT + KEPT_WORDS) == KEPT + KEPT_WORDS


def test_cjk_addresses_and_family_names_in_fhir_narratives(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines = []
    for k, (address, notes) in enumerate(ADDRESSES.values()):
        res = fhir_resources(f"pat-a{k}")
        res[0]["address"] = [{"text": address}]
        res[0]["name"] = [{"text": "Tan Ah Kow"}]
        res[1]["note"] = [{"text": n} for n in notes]
        res[1]["text"] = {"status": "generated", "div": f"<div>{notes[0]}</div>"}
        for r in res[1:]:
            r["id"] = f"{r['id']}-a{k}"
        lines += res
    for k, (name, notes) in enumerate(NAMES.values()):
        res = fhir_resources(f"pat-n{k}")
        res[0]["name"] = [{"text": name}]
        res[1]["note"] = [{"text": n} for n in notes]
        res[1]["text"] = {"status": "generated", "div": f"<div>{notes[0]}</div>"}
        for r in res[1:]:
            r["id"] = f"{r['id']}-n{k}"
        lines += res
    write_ndjson(tmp_path / "bulk" / "export.ndjson", lines)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "bulk"])
    assert summary.counts["ingested"] == 1, problems
    left = folded_survivors(workspace, ADDRESS_NEEDLES + NAME_NEEDLES)
    assert not left, f"{len(left)} of {len(ADDRESS_NEEDLES + NAME_NEEDLES)} survive: {left}"


def test_another_patient_named_by_family_name_and_honorific(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A note in one patient's row naming ANOTHER patient of the export by family name and honorific."""
    rows = [
        csv_row(mrn="MRN-21", patient_name="王秀英", address="", notes="seen"),
        csv_row(mrn="MRN-22", patient_name="김민준", address="", notes="seen"),
        csv_row(
            mrn="MRN-23",
            patient_name="Tan Ah Kow",
            address="",
            notes="与王女士同病房; 김 씨가 보호자; 이 씨앗",
        ),
    ]
    write_csv(tmp_path / "export" / "dx.csv", rows)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "export"])
    assert summary.counts["ingested"] == 1
    assert folded_survivors(workspace, ["王女士", "김씨"]) == []
    assert folded_survivors(workspace, ["同病房", "보호자", "이씨앗"]) == ["同病房", "보호자", "이씨앗"]
