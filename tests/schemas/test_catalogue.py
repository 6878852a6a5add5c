"""The packaged service catalogue and its loader."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.catalogue import Catalogue, Service, load_catalogue
from schemas.enums import Channel

HEADER = "code,name_en,name_ar,entity,sector,channels,typical_fee_bhd"
SECTORS = {
    "Interior",
    "Housing and Real Estate",
    "Youth and Sports",
    "Transport and Telecoms",
    "Justice",
    "Environment",
    "Commerce",
    "Utilities",
    "Education",
    "Health",
}


def _write_csv(tmp_path: Path, *rows: str) -> str:
    path = tmp_path / "services.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return str(path)


def test_packaged_catalogue_has_at_least_30_services() -> None:
    assert len(load_catalogue()) >= 30


def test_every_channel_offers_at_least_three_services() -> None:
    catalogue = load_catalogue()
    for channel in Channel:
        assert len(catalogue.codes_for(channel)) >= 3, channel


def test_codes_in_the_csv_are_unique() -> None:
    path = Path(__file__).parents[2] / "schemas" / "data" / "services.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        codes = [row["code"] for row in csv.DictReader(handle)]
    assert len(codes) == len(set(codes))


def test_csv_header_is_exactly_the_documented_one() -> None:
    path = Path(__file__).parents[2] / "schemas" / "data" / "services.csv"
    assert path.read_text(encoding="utf-8").splitlines()[0] == HEADER


def test_arabic_names_are_non_ascii() -> None:
    for service in load_catalogue().services:
        assert not service.name_ar.isascii(), service.code


def test_sectors_come_from_the_small_fixed_set() -> None:
    assert {service.sector for service in load_catalogue().services} <= SECTORS


def test_named_services_from_the_reports_are_present() -> None:
    catalogue = load_catalogue()
    for code in ("GDT-FINE", "VEH-REG-RENEW", "EWA-BILL", "CR-RENEW", "PASSPORT-RENEW"):
        assert code in catalogue
    assert "VEH-REG-RENEW" in catalogue.codes_for(Channel.KIOSK)
    assert "EWA-BILL" in catalogue.codes_for(Channel.MOBILE_APP)


def test_get_returns_the_service_or_none() -> None:
    catalogue = load_catalogue()
    fine = catalogue.get("GDT-FINE")
    assert fine is not None
    assert fine.entity == "GDT"
    assert fine.typical_fee_bhd == Decimal("30.000")
    assert catalogue.get("NO-SUCH-SERVICE") is None


def test_contains_accepts_codes_only() -> None:
    catalogue = load_catalogue()
    assert "GDT-FINE" in catalogue
    assert "gdt-fine" not in catalogue
    assert 42 not in catalogue


def test_codes_for_is_sorted_and_channel_specific() -> None:
    catalogue = load_catalogue()
    kiosk = catalogue.codes_for(Channel.KIOSK)
    assert kiosk == sorted(kiosk)
    assert all(Channel.KIOSK in catalogue.get(code).channels for code in kiosk)  # type: ignore[union-attr]


def test_channels_are_parsed_into_enum_members() -> None:
    fine = load_catalogue().get("GDT-FINE")
    assert fine is not None
    assert fine.channels == frozenset(Channel)


def test_fees_have_three_decimals_and_are_positive() -> None:
    for service in load_catalogue().services:
        assert service.typical_fee_bhd > 0
        assert service.typical_fee_bhd.as_tuple().exponent == -3, service.code


def test_default_catalogue_is_cached() -> None:
    assert load_catalogue() is load_catalogue()


def test_services_property_returns_a_copy() -> None:
    catalogue = load_catalogue()
    catalogue.services.clear()
    assert len(catalogue.services) == len(catalogue)


def test_service_is_frozen() -> None:
    fine = load_catalogue().get("GDT-FINE")
    assert fine is not None
    with pytest.raises(ValidationError):
        fine.code = "OTHER"  # type: ignore[misc]


def test_load_from_explicit_path(tmp_path: Path) -> None:
    path = _write_csv(tmp_path, "X-ONE,One,واحد,IGA,Interior,portal|kiosk,1.500")
    catalogue = load_catalogue(path)
    assert len(catalogue) == 1
    assert catalogue.codes_for(Channel.KIOSK) == ["X-ONE"]
    assert catalogue.codes_for(Channel.MOBILE_APP) == []


def test_duplicate_codes_raise_value_error(tmp_path: Path) -> None:
    row = "X-ONE,One,واحد,IGA,Interior,portal,1.500"
    with pytest.raises(ValueError, match="duplicate service code"):
        load_catalogue(_write_csv(tmp_path, row, row))


def test_duplicate_services_passed_directly_raise_value_error() -> None:
    service = load_catalogue().services[0]
    with pytest.raises(ValueError, match="duplicate"):
        Catalogue([service, service])


def test_fee_with_four_decimals_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="decimal"):
        load_catalogue(_write_csv(tmp_path, "X-ONE,One,واحد,IGA,Interior,portal,1.5001"))


def test_unknown_channel_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channels"):
        load_catalogue(_write_csv(tmp_path, "X-ONE,One,واحد,IGA,Interior,fax,1.500"))


def test_lowercase_code_is_refused() -> None:
    with pytest.raises(ValidationError):
        Service(
            code="gdt-fine",
            name_en="Fine",
            name_ar="مخالفة",
            entity="GDT",
            sector="Interior",
            channels=frozenset({Channel.PORTAL}),
            typical_fee_bhd=Decimal("1.000"),
        )
