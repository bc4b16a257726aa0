"""The hospitals of the demo: vendors, scanners, export habits, and the people they image.

The sites are fictional but built like real ones in the regions Curata is made for (West and East
Africa, South America, South-East and South Asia): each exports with its own vendor's headers,
private blocks, UID root, pixel encoding and folder layout, and names its patients the local way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Vendor:
    manufacturer: str
    ct_model: str
    mr_model: str
    ct_software: str
    mr_software: str
    uid_root: str
    ct_kernel: str
    # (group, creator, [(element offset, VR, value)]) -- realistic vendor private blocks
    private_blocks: tuple[tuple[int, str, tuple[tuple[int, str, object], ...]], ...]


GE = Vendor(
    manufacturer="GE MEDICAL SYSTEMS",
    ct_model="Revolution EVO",
    mr_model="SIGNA Explorer",
    ct_software="revo_evo.64",
    mr_software="27\\LX\\MR Software release:RX27.0_R05_2044.a",
    uid_root="1.2.840.113619.2.55.3.",
    ct_kernel="STANDARD",
    private_blocks=(
        (
            0x0009,
            "GEMS_IDEN_01",
            ((0x01, "LO", "CT_LIGHTSPEED"), (0x04, "SH", "CT01_OC0"), (0x27, "SL", 1704067200)),
        ),
        (0x0019, "GEMS_ACQU_01", ((0x02, "SL", 912), (0x23, "DS", "1.375"), (0x27, "DS", "55.0"))),
        (
            0x0043,
            "GEMS_PARM_01",
            ((0x10, "US", 1), (0x31, "DS", ["0.0", "0.0"]), (0x61, "UI", "1.2.840.113619.2.55.3.1")),
        ),
    ),
)

SIEMENS = Vendor(
    manufacturer="SIEMENS",
    ct_model="SOMATOM go.Up",
    mr_model="MAGNETOM Sempra",
    ct_software="syngo CT VA30A",
    mr_software="syngo MR XA20",
    uid_root="1.3.12.2.1107.5.1.4.",
    ct_kernel="Br40f",
    private_blocks=(
        (
            0x0029,
            "SIEMENS CSA HEADER",
            (
                (0x08, "CS", "IMAGE NUM 4"),
                (0x09, "LO", "20240101"),
                (0x10, "OB", b"SV10\x04\x03\x02\x01" + b"\x00" * 56),
                (0x18, "CS", "MR"),
                (0x20, "OB", b"SV10\x04\x03\x02\x01" + b"\x00" * 24),
            ),
        ),
        (0x0019, "SIEMENS CT VA0  COAD", ((0x92, "DS", "0.6"), (0xB0, "DS", "38.4"))),
    ),
)

PHILIPS = Vendor(
    manufacturer="Philips",
    ct_model="Ingenuity CT",
    mr_model="Ingenia",
    ct_software="4.1.3.52025",
    mr_software="5.7.1\\5.7.1.2",
    uid_root="1.3.46.670589.33.1.",
    ct_kernel="B",
    private_blocks=(
        (
            0x2001,
            "Philips Imaging DD 001",
            ((0x01, "FL", 0.0), (0x03, "FL", 0.0), (0x63, "CS", "NO"), (0x08, "IS", "1")),
        ),
        (0x2005, "Philips MR Imaging DD 001", ((0x0D, "FL", 0.0), (0x0E, "FL", 1.0), (0x20, "SL", 1))),
        (0x01F1, "ELSCINT1", ((0x01, "CS", "SPIRAL"), (0x26, "DS", "0.5"))),
    ),
)

CANON = Vendor(
    manufacturer="CANON_MEC",
    ct_model="Aquilion ONE",
    mr_model="Vantage Orian",
    ct_software="V10.12ER006",
    mr_software="V7.0*R010",
    uid_root="1.2.392.200036.9116.2.6.1.48.",
    ct_kernel="FC08",
    private_blocks=(
        (0x7005, "TOSHIBA_MEC_CT3", ((0x08, "CS", "HELICAL"), (0x0B, "DS", "1.0"), (0x30, "CS", "NO"))),
        (0x700D, "TOSHIBA_MEC_MR3", ((0x08, "DS", "1.5"), (0x80, "LO", "AXIAL"))),
    ),
)


@dataclass(frozen=True)
class SiteProfile:
    key: str
    institution: str
    address: str
    city: str
    country: str
    region: str
    vendor: Vendor
    station: str
    device_serial: str
    department: str
    # nested_names | flat_numbered | cd_no_dicomdir | id_accession_uid | flat_uid
    layout: str
    transfer_syntax: str  # explicit | implicit | rle
    ct_signed: bool
    ct_intercept: float
    ct_padding: int | None
    head_first_order: bool  # slice 1 is the most superior one
    field_strength: float
    mr_t1_sagittal: bool
    mrn_format: str
    phone_prefix: str
    charset: str


SITES: tuple[SiteProfile, ...] = (
    SiteProfile(
        key="site-a",
        institution="Eko Lagoon Teaching Hospital",
        address="12 Marina Road, Lagos Island, Lagos 101231, Nigeria",
        city="Lagos",
        country="Nigeria",
        region="West Africa",
        vendor=GE,
        station="ELTH-CT01",
        device_serial="CT7783411",
        department="Radiology and Imaging",
        layout="nested_names",
        transfer_syntax="explicit",
        ct_signed=True,
        ct_intercept=-1024.0,
        ct_padding=-2000,
        head_first_order=True,
        field_strength=1.5,
        mr_t1_sagittal=False,
        mrn_format="ELTH/{n:06d}",
        phone_prefix="+234 803 ",
        charset="ISO_IR 100",
    ),
    SiteProfile(
        key="site-b",
        institution="Hospital Santa Clara do Norte",
        address="Av. Conde da Boa Vista 1410, Boa Vista, Recife - PE, 50060-004, Brasil",
        city="Recife",
        country="Brazil",
        region="South America",
        vendor=SIEMENS,
        station="HSCN-CT-GOUP",
        device_serial="113021",
        department="Servico de Radiologia",
        layout="flat_numbered",
        transfer_syntax="implicit",
        ct_signed=False,
        ct_intercept=-1024.0,
        ct_padding=None,
        head_first_order=True,
        field_strength=1.5,
        mr_t1_sagittal=False,
        mrn_format="{n:010d}",
        phone_prefix="+55 81 9",
        charset="ISO_IR 100",
    ),
    SiteProfile(
        key="site-c",
        institution="Benh vien Da khoa Song Hong",
        address="45 Pho Hue, Quan Hai Ba Trung, Ha Noi, Viet Nam",
        city="Hanoi",
        country="Vietnam",
        region="South-East Asia",
        vendor=PHILIPS,
        station="SHGH-MR1",
        device_serial="47012",
        department="Khoa Chan doan Hinh anh",
        layout="cd_no_dicomdir",
        transfer_syntax="rle",
        ct_signed=False,
        ct_intercept=-1024.0,
        ct_padding=None,
        head_first_order=False,
        field_strength=3.0,
        mr_t1_sagittal=True,
        mrn_format="BN{n:08d}",
        phone_prefix="+84 91 ",
        charset="ISO_IR 192",
    ),
    SiteProfile(
        key="site-d",
        institution="Rift Valley Regional Referral Hospital",
        address="Kenyatta Avenue, P.O. Box 71-20100, Nakuru, Kenya",
        city="Nakuru",
        country="Kenya",
        region="East Africa",
        vendor=CANON,
        station="RVRH_AQ1",
        device_serial="2FA1872301",
        department="Imaging Department",
        layout="id_accession_uid",
        transfer_syntax="explicit",
        ct_signed=True,
        ct_intercept=0.0,
        ct_padding=None,
        head_first_order=True,
        field_strength=1.5,
        mr_t1_sagittal=False,
        mrn_format="RV-{n:07d}",
        phone_prefix="+254 722 ",
        charset="ISO_IR 100",
    ),
    SiteProfile(
        key="site-e",
        institution="Deccan Cancer and Research Institute",
        address="Survey No. 44, Karve Road, Erandwane, Pune, Maharashtra 411004, India",
        city="Pune",
        country="India",
        region="South Asia",
        vendor=SIEMENS,
        station="DCRI-MR-SEMPRA",
        device_serial="175532",
        department="Department of Radiodiagnosis",
        layout="flat_uid",
        transfer_syntax="explicit",
        ct_signed=False,
        ct_intercept=-1024.0,
        ct_padding=None,
        head_first_order=False,
        field_strength=1.5,
        mr_t1_sagittal=True,
        mrn_format="DCRI{n:07d}",
        phone_prefix="+91 9822 ",
        charset="ISO_IR 100",
    ),
)

_NAMES: dict[str, dict[str, list[str]]] = {
    "Nigeria": {
        "family": [
            "Adebayo",
            "Okonkwo",
            "Balogun",
            "Eze",
            "Ogunleye",
            "Nwosu",
            "Abubakar",
            "Okafor",
            "Adeyemi",
            "Ibrahim",
        ],
        "M": ["Oluwaseun", "Chinedu", "Emeka", "Tunde", "Babatunde", "Ifeanyi", "Musa", "Segun"],
        "F": ["Chiamaka", "Folasade", "Ngozi", "Aisha", "Yetunde", "Adaeze", "Funmilayo", "Halima"],
        "streets": [
            "Adeola Odeku Street",
            "Awolowo Road",
            "Herbert Macaulay Way",
            "Allen Avenue",
            "Ikorodu Road",
        ],
        "towns": ["Ikeja, Lagos", "Surulere, Lagos", "Yaba, Lagos", "Lekki, Lagos", "Ikoyi, Lagos"],
    },
    "Brazil": {
        "family": [
            "Souza",
            "Oliveira",
            "Santos",
            "Pereira",
            "Carvalho",
            "Ribeiro",
            "Almeida",
            "Lima",
            "Araujo",
            "Barbosa",
        ],
        "M": ["Joao", "Lucas", "Rafael", "Tiago", "Marcos", "Pedro", "Gustavo", "Andre"],
        "F": ["Ana Beatriz", "Mariana", "Fernanda", "Juliana", "Camila", "Leticia", "Patricia", "Renata"],
        "streets": [
            "Rua da Aurora",
            "Rua do Hospicio",
            "Av. Boa Viagem",
            "Rua Real da Torre",
            "Rua Imperial",
        ],
        "towns": ["Boa Viagem, Recife - PE", "Casa Forte, Recife - PE", "Olinda - PE", "Graças, Recife - PE"],
    },
    "Vietnam": {
        "family": ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Ngô"],
        "M": ["Văn Hùng", "Minh Tuấn", "Đức Anh", "Quang Huy", "Thành Long", "Văn Nam"],
        "F": ["Thị Lan", "Thu Hằng", "Ngọc Ánh", "Thị Mai", "Phương Thảo", "Thị Hoa"],
        "streets": ["Phố Huế", "Đường Láng", "Phố Bà Triệu", "Đường Giải Phóng", "Phố Hàng Bông"],
        "towns": ["Quận Đống Đa, Hà Nội", "Quận Hoàn Kiếm, Hà Nội", "Quận Cầu Giấy, Hà Nội"],
    },
    "Kenya": {
        "family": [
            "Otieno",
            "Wanjiru",
            "Kamau",
            "Mwangi",
            "Ochieng",
            "Njoroge",
            "Kiptoo",
            "Achieng",
            "Mutua",
            "Chebet",
        ],
        "M": ["Kipchoge", "Brian", "Samuel", "Onyango", "Daniel", "Evans", "Peter", "Kennedy"],
        "F": ["Wambui", "Akinyi", "Faith", "Njeri", "Grace", "Nyambura", "Mercy", "Jepkosgei"],
        "streets": ["Moi Road", "Kenyatta Avenue", "Oginga Odinga Road", "Government Avenue", "Pandhi Road"],
        "towns": ["Nakuru", "Naivasha", "Molo", "Njoro", "Gilgil"],
    },
    "India": {
        "family": [
            "Sharma",
            "Patil",
            "Kulkarni",
            "Deshpande",
            "Joshi",
            "Iyer",
            "Reddy",
            "Gupta",
            "Khan",
            "Naidu",
        ],
        "M": ["Rahul", "Amit", "Sanjay", "Vikram", "Arjun", "Suresh", "Imran", "Prakash"],
        "F": ["Priya", "Anjali", "Sunita", "Meera", "Kavita", "Lakshmi", "Farah", "Deepa"],
        "streets": ["FC Road", "JM Road", "Baner Road", "Karve Road", "Sinhagad Road"],
        "towns": ["Kothrud, Pune", "Shivajinagar, Pune", "Aundh, Pune", "Hadapsar, Pune"],
    },
}


@dataclass(frozen=True)
class Person:
    """A patient's true identity (ground truth for leak checks; only ever in the manifest)."""

    family_name: str
    given_name: str
    middle_name: str
    patient_id: str
    issuer: str
    other_id: str
    sex: str
    birth_date: str  # YYYYMMDD
    address: str
    phone: str
    mother_maiden_name: str
    referring_physician: str
    performing_physician: str
    operator: str
    reading_physician: str

    @property
    def dicom_name(self) -> str:
        return f"{self.family_name}^{self.given_name}^{self.middle_name}"


def make_person(
    site: SiteProfile, number: int, sex: str, age_years: int, reference: date, rng: random.Random
) -> Person:
    """A locally plausible identity for patient ``number`` of ``site``, aged ``age_years`` at ``reference``."""
    names = _NAMES[site.country]
    family = rng.choice(names["family"])
    given = rng.choice(names[sex])
    middle = rng.choice(names["M" if rng.random() < 0.5 else "F"]).split()[0]
    birth = reference - timedelta(days=int(age_years * 365.25) + rng.randint(1, 360))
    staff = [
        f"{rng.choice(names['family'])}^{rng.choice(names[rng.choice('MF')]).split()[0]}^^Dr."
        for _ in range(3)
    ]
    return Person(
        family_name=family,
        given_name=given,
        middle_name=middle,
        patient_id=site.mrn_format.format(n=rng.randint(100000, 999999)),
        issuer=site.institution,
        other_id=f"NHIS-{rng.randint(10**7, 10**8 - 1)}",
        sex=sex,
        birth_date=birth.strftime("%Y%m%d"),
        address=f"{rng.randint(2, 240)} {rng.choice(names['streets'])}, {rng.choice(names['towns'])}, {site.country}",
        phone=f"{site.phone_prefix}{rng.randint(1000000, 9999999)}",  # SH: at most 16 characters
        mother_maiden_name=f"{rng.choice(names['family'])}^{rng.choice(names['F']).split()[0]}",
        referring_physician=staff[0],
        performing_physician=staff[1],
        operator=f"{rng.choice(names['family'])}^{rng.choice(names['M'])}".split()[0],
        reading_physician=staff[2],
    )
