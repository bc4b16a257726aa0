"""Keyed pseudonyms under a site's own prefix: their shape, and a VCF sample's patient."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from curata.collect.deid.pseudonyms import (
    Pseudonymizer,
    accepted_prefixes,
    is_accepted_pseudonym,
    is_site_pseudonym,
    sample_patient,
)

KEY = bytes(range(32))
# a profile's pseudonym_prefix as profile.py accepts it, ending in '-' or '_' (as a platform reads one)
PREFIXES = st.builds(
    lambda head, end: head + end,
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", max_size=15),
    st.sampled_from("-_"),
)


@settings(max_examples=200, deadline=None)
@given(prefix=PREFIXES, patient=st.text(min_size=1, max_size=20), n=st.integers(min_value=2, max_value=40))
def test_every_sample_of_a_patient_is_read_back_as_its_pseudonym(prefix: str, patient: str, n: int) -> None:
    """A patient's first sample is its pseudonym, its n-th the pseudonym and ``_n``; with a prefix
    holding '_' (``HOSPA_``), the part before the first '_' was taken for the patient: its VCF
    variants were filed under ``HOSPA``, a pseudonym no image had."""
    pseudonym = Pseudonymizer(KEY, prefix=prefix).patient(patient)
    assert is_site_pseudonym(pseudonym) and is_accepted_pseudonym(pseudonym, accepted_prefixes([prefix]))
    assert not is_accepted_pseudonym(pseudonym, accepted_prefixes()) or prefix == "CUR-"
    assert sample_patient(pseudonym) == pseudonym
    assert sample_patient(f"{pseudonym}_{n}") == pseudonym


def test_a_number_after_what_is_not_a_pseudonym_is_kept_and_refused() -> None:
    for sample in ("MRN_2", "HOSPA_2", "CUR-ABCDEFGHIJKLMNOP_1", "CUR-ABCDEFGHIJKLMNOP_02", "NA12878"):
        assert sample_patient(sample) == sample
        assert not is_site_pseudonym(sample)
