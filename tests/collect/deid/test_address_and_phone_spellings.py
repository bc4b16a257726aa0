"""The patient's street and phone number as a note writes them, not as the header does, found by an
outside reviewer (third pass): the street's kind spelled another way (Quokkaburra St for 17 Quokkaburra
Street, Kookaburra Rd for Unit 4/88 Kookaburra Road Dubbo, Hauptstr. for Hauptstraße), a phone without
its country code or area code (02 9876 5432 for +61 2 9876 5432, 867-5309 for +1 (555) 867-5309), and
PatientTelephoneNumbers read as a whole value only. None survives in kept or cleaned text, in any
profile, through the lanes or the whole engine: each is cleaned, or the object refused."""

from __future__ import annotations

import io

import pydicom
import pydicom.data
import pytest

from .conftest import released_or_none

KEY = b"k" * 32
ADDRESSES = (  # (PatientAddress, as a note writes the street, what must not be released)
    ("17 Quokkaburra Street", "lives on Quokkaburra St", "Quokkaburra"),
    ("17 Quokkaburra St", "Quokkaburra Street clinic", "Quokkaburra"),
    ("88 Kookaburra Rd", "near Kookaburra Road", "Kookaburra"),
    ("Unit 4/88 Kookaburra Road Dubbo", "Kookaburra Rd", "Kookaburra"),
    ("Flat 3, 17 Quokkaburra Crescent, Dubbo NSW 2830", "Quokkaburra Cres.", "Quokkaburra"),
    ("Hauptstraße 5, 10115 Berlin", "wohnt Hauptstr. 5", "Hauptstr"),
    ("Hauptstr. 5, 10115 Berlin", "Hauptstrasse", "Hauptstr"),
)
PHONES = (  # (PatientTelephoneNumbers, as a note writes it, digits that must not be released)
    ("+61 2 9876 5432", "call (02) 9876 5432", "9876 5432"),
    ("+61 2 9876 5432", "call 02 9876 5432", "9876 5432"),
    ("+61 2 9876 5432", "call 0298765432", "98765432"),
    ("+1 (555) 867-5309", "ph 5558675309", "8675309"),
    ("+1 (555) 867-5309", "ph 867-5309", "867-5309"),
    ("+1 (555) 867-5309", "ph 555-867-5309", "867-5309"),
    ("0412 345 678", "mob 412345678", "412345678"),
)


def _released(profile: str, whole: bool, text: str, **header: str) -> bytes | None:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "QUIXBORNE^ZELPHINA", "XK4471923", "19700315"
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    ds.ImageComments = text  # cleaned under research and research-strict
    ds.add_new(0x00700081, "LO", text)  # ContentDescription: kept under research and basic
    ds.Manufacturer = text  # kept
    buf = io.BytesIO()
    ds.save_as(buf)
    return released_or_none(buf.getvalue(), profile, whole=whole, key=KEY)


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", ["basic", "research", "research-strict"])
@pytest.mark.parametrize(("address", "text", "secret"), ADDRESSES)
def test_the_street_spelled_otherwise_never_survives(
    address: str, text: str, secret: str, profile: str, whole: bool
) -> None:
    out = _released(profile, whole, text, PatientAddress=address)
    assert out is None or secret.lower().encode() not in out.lower()


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", ["basic", "research", "research-strict"])
@pytest.mark.parametrize(("phone", "text", "secret"), PHONES)
def test_the_phone_written_otherwise_never_survives(
    phone: str, text: str, secret: str, profile: str, whole: bool
) -> None:
    out = _released(profile, whole, text, PatientTelephoneNumbers=phone)
    assert out is None or secret.encode() not in out


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
def test_a_street_kind_alone_is_no_identifier(whole: bool) -> None:
    """Only the street's own name with its kind counts: other streets and the word Street stay."""
    out = _released(
        "research", whole, "Street level, Main Rd entrance", PatientAddress="17 Quokkaburra Street"
    )
    assert out is not None and b"Street level, Main Rd entrance" in out
