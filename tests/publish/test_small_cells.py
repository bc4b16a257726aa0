"""Small-cell protection (outside review F7a): the dataset card and the clinical summary publish no count
under the threshold (default 5): it reads ``<5``, its share is hidden, a hidden count that a total would
give back hides the next smallest too, and a diagnosis held by fewer patients is never broken down."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from curata.publish import card as card_mod
from curata.publish.formats import clinical as clinical_fmt
from curata.publish.formats.clinical import ReleasePatient

# a two-site release of 14 patients: one of sex O (7%), six F, seven M
SEX = ["O"] + ["F"] * 6 + ["M"] * 7
SITE = ["site-a"] * 8 + ["site-b"] * 6
AGE = ["40-49"] * 6 + ["50-59"] * 8
REGION = ["north"] * 7 + ["south"] * 7
PATIENTS = [
    {"sex": s, "site": site, "age": a, "region": r, "country": "NG"}
    for s, site, a, r in zip(SEX, SITE, AGE, REGION, strict=True)
]
# the baseline: the same sites, more patients; sex O is a quarter of it, so O is flagged
BASELINE = (
    PATIENTS + [{"sex": "O", "site": "site-a", "age": "40-49", "region": "north", "country": "NG"}] * 10
)
SERIES = [{"modality": "CT", "vendor": "ACME", "model": "X1", "thickness": "<=1 mm"}] * 14


def _card(min_cell: int | None = None) -> card_mod.CardInput:
    threshold = {} if min_cell is None else {"min_cell": min_cell}  # the default: 5
    return card_mod.CardInput(
        name="small",
        version=1,
        release=card_mod.Composition.of(PATIENTS, SERIES),
        baseline=card_mod.Composition.of(BASELINE, SERIES),
        splits={"test": 6, "train": 8},
        n_cases=14,
        **threshold,
    )


def _table_counts(md: str) -> list[str]:
    """Every count cell of the card's distribution tables (release and baseline columns)."""
    out = []
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[0] not in ("group", "---"):
            out += [cells[1], cells[3]]
    return out


def _small(values: list[str], k: int = 5) -> list[str]:
    return [v for v in values if v.isdigit() and 0 < int(v) < k]


def test_the_card_shows_no_count_under_the_threshold_and_says_the_rule() -> None:
    files = card_mod.render(_card())
    md, page = files["card/README.md"].decode(), files["card/card.html"].decode()
    counts = _table_counts(md)
    assert counts and _small(counts) == []
    assert _small(re.findall(r"<td>(\d+)</td>", page)) == []
    # sex O: one patient of fourteen (7%): neither the count nor the share
    assert "| O | <5 | - |" in md and "| 7% |" not in md
    assert "<td>O</td><td>&lt;5</td><td>-</td>" in page
    assert "Counts under 5 are shown as <5" in md and "Counts under 5 are shown as &lt;5" in page


def test_a_hidden_count_a_total_would_give_back_hides_the_next_smallest() -> None:
    """Sex: O 1 (hidden), F 6, M 7 of 14 patients: with F shown, 14 - 6 - 7 gives O back; F is hidden
    too. Site (8 + 6) hides nothing, and its shown counts add up to the patients."""
    md = card_mod.render(_card())["card/README.md"].decode()
    assert "| F | hidden | - |" in md and "| M | 7 | 50% |" in md  # F is 6: not "<5"
    assert "| site-a | 8 | 57% |" in md and "| site-b | 6 | 43% |" in md
    assert 8 + 6 == len(PATIENTS) == sum(_card().splits.values())
    # whatever is shown of a patient dimension can't give a hidden count back
    for key, _ in card_mod.PATIENT_DIMENSIONS:
        counts = Counter(str(p[key]) for p in PATIENTS)
        hidden = card_mod.suppressed(counts)
        assert not hidden or (len(hidden) >= 2 and sum(counts[g] for g in hidden) >= 5)


def test_suppressed_rule() -> None:
    assert card_mod.suppressed({"a": 1, "b": 6, "c": 7}) == {"a", "b"}
    assert card_mod.suppressed({"a": 1, "b": 1, "c": 9, "d": 20}) == {"a", "b", "c"}  # 1 + 1 gives 2 back
    assert card_mod.suppressed({"a": 3, "b": 4, "c": 9}) == {"a", "b"}
    assert card_mod.suppressed({"a": 0, "b": 5, "c": 9}) == set()  # zero is shown
    assert card_mod.suppressed({"a": 1, "b": 6}, total_known=False) == {"a"}


def test_a_hidden_count_is_not_pinned_by_the_rule_itself() -> None:
    """1 and 5 hidden of 15 with 9 shown: a reader knows the two sum to 6 and that the one hidden for the
    total is 5 or more, so the "<5" is 1: the 9 is hidden too. Every hidden count keeps two values."""
    assert card_mod.suppressed({"a": 1, "b": 5, "c": 9}) == {"a", "b", "c"}
    assert card_mod.suppressed({"a": 2, "b": 5, "c": 6, "d": 30}) == {"a", "b"}  # a: 1 or 2, b: 5 or 6
    for counts in ({"a": 1, "b": 5, "c": 9}, {"a": 2, "b": 5, "c": 6, "d": 30}, {"a": 4, "b": 4, "c": 50}):
        hidden = card_mod.suppressed(counts)
        total = sum(counts[g] for g in hidden)
        shown = [n for g, n in counts.items() if g not in hidden]
        cap = min(shown, default=10**6)
        bounds = {g: (1, 4) if counts[g] < 5 else (5, cap) for g in hidden}
        for g, (lo, hi) in bounds.items():  # the values g can take, given the others' bounds and the sum
            others_lo = sum(b[0] for h, b in bounds.items() if h != g)
            others_hi = sum(b[1] for h, b in bounds.items() if h != g)
            assert min(hi, total - others_lo) > max(lo, total - others_hi), (counts, g)
    md = card_mod.render(
        card_mod.CardInput(
            name="pinned",
            version=1,
            release=card_mod.Composition.of([{"sex": "O"}] + [{"sex": "F"}] * 5 + [{"sex": "M"}] * 9, []),
            baseline=card_mod.Composition.of([{"sex": "O"}] + [{"sex": "F"}] * 5 + [{"sex": "M"}] * 9, []),
            splits={"train": 15},
        )
    )["card/README.md"].decode()
    assert "| O | <5 | - |" in md and "| F | hidden | - |" in md and "| M | hidden | - |" in md


def test_a_flag_never_gives_a_hidden_share() -> None:
    found = card_mod.flags(_card())
    assert "Sex 'O' is under-represented: <5 patients of the release vs 46% of the baseline." in found
    assert not any("7%" in f for f in found)


def test_the_threshold_is_a_parameter_with_a_floor() -> None:
    md = card_mod.render(_card(min_cell=10))["card/README.md"].decode()
    assert _small(_table_counts(md), 10) == [] and "Counts under 10 are shown as <10" in md
    assert "| site-b | <10 | - |" in md and "| site-a | <10 | - |" in md
    with pytest.raises(ValueError, match="at least 2"):
        card_mod.render(_card(min_cell=1))


def _clinical() -> str:
    who = {
        i + 1: ReleasePatient(
            f"site-a/P{i}", "train", {k: str(v) for k, v in p.items() if k in ("sex", "age", "region")}
        )
        for i, p in enumerate(PATIENTS)
    }
    conditions = [
        {
            "person_id": i,
            "condition_source_value": "C34.1",
            "source_display": "Lung adenocarcinoma",
            "stage": "III",
        }
        for i in range(2, 15)
    ] + [{"person_id": 1, "condition_source_value": "C71.9", "source_display": "Glioblastoma", "stage": "IV"}]
    tables = {"person": [{"person_id": i} for i in who], "condition_occurrence": conditions}
    variants = [{"file_id": 1, "gene": "BRCA2", "population_af": None}] * 2
    return clinical_fmt.card_markdown(tables, who, variants, {})


def test_the_clinical_summary_shows_no_count_under_the_threshold() -> None:
    md = _clinical()
    assert "Counts under 5 are shown as <5" in md
    table_cells = [c.strip() for line in md.splitlines() if line.startswith("|") for c in line.split("|")]
    assert _small(table_cells) == []
    listed = re.findall(r"\b[\w-]+: (\d+)\b", md)  # "F: 6" in breakdowns and stages
    assert listed and _small(listed) == []
    assert "| Glioblastoma" not in md  # the code leads
    assert "| C71.9 Glioblastoma | <5 | - |" in md and "| C34.1 Lung adenocarcinoma | 13 | III: 13 |" in md
    assert "| BRCA2 | <5 |" in md


def test_a_diagnosis_of_one_patient_is_not_broken_down() -> None:
    md = _clinical()
    rows = [ln for ln in md.splitlines() if ln.startswith("| C71.9")]
    assert rows[1:] == ["| C71.9 Glioblastoma | - | not shown: fewer than 5 patients |"]
    # the 13 patients of C34.1: F 6, M 7 (the patient of sex O is not among them), shown and adding up
    assert "| C34.1 Lung adenocarcinoma | sex | F: 6, M: 7 |" in md
    assert "| C34.1 Lung adenocarcinoma | age | 40-49: 5, 50-59: 8 |" in md
    assert "| C34.1 Lung adenocarcinoma | region | north: 6, south: 7 |" in md


def test_a_breakdown_hides_a_count_its_diagnosis_total_would_give_back() -> None:
    who = {
        i: ReleasePatient(f"s/P{i}", "train", {"sex": "O" if i == 1 else "F" if i < 8 else "M"})
        for i in range(1, 15)
    }
    tables = {
        "person": [{"person_id": i} for i in who],
        "condition_occurrence": [{"person_id": i, "condition_source_value": "C34.1"} for i in who],
    }
    md = clinical_fmt.card_markdown(tables, who, [], {})
    assert "| C34.1 | 14 | - |" in md and "| C34.1 | sex | F: hidden, M: 7, O: <5 |" in md
