"""Turn a validated raw event of any channel into the one normalised payment shape."""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from schemas.catalogue import Catalogue
from schemas.enums import Channel, PaymentMethod, PaymentStatus
from schemas.money import CURRENCY, fils_to_decimal
from schemas.raw import MobileAppEvent, PortalEvent, RawModel, event_id_of
from schemas.records import SCHEMA_VERSION, PaymentRecord
from schemas.timekeeping import EPOCH_DATE, from_utc_micros, to_utc_micros
from transforms.core.privacy import Pseudonymiser, card_last4

# Raw status vocabularies -> the normalised PaymentStatus values (the bulk path reads them too).
PORTAL_STATUS = {
    "PAID": PaymentStatus.SUCCESS.value,
    "DECLINED": PaymentStatus.FAILED.value,
    "REFUNDED": PaymentStatus.REFUNDED.value,
}
APP_STATUS = {
    "success": PaymentStatus.SUCCESS.value,
    "failure": PaymentStatus.FAILED.value,
    "refund": PaymentStatus.REFUNDED.value,
}
KIOSK_STATUS = {
    "OK": PaymentStatus.SUCCESS.value,
    "DECLINED": PaymentStatus.FAILED.value,
    "CANCELLED": PaymentStatus.CANCELLED.value,
    "REFUNDED": PaymentStatus.REFUNDED.value,
}
_PORTAL = Channel.PORTAL.value
_MOBILE_APP = Channel.MOBILE_APP.value
_KIOSK = Channel.KIOSK.value
# Kiosks only report that a card was used.
_KIOSK_METHOD = PaymentMethod.CARD.value
_NO_EXTRAS: Extras = (None, None, None, None, None)


# kiosk_id, kiosk_site, app_id, app_version, app_os: the channel-specific columns.
Extras = tuple[str | None, str | None, str | None, str | None, str | None]


class NormalisedPayment(NamedTuple):
    """A payment's business columns in the compact form the Arrow builder wants.

    Same names as `PaymentRecord` except money and time, kept as integers on the hot path:
    `amount_fils` (exact), `occurred_micros` (UTC) and `event_day` (Bahrain day, days since
    1970-01-01). `to_record` gives the schema-of-record view.
    """

    event_id: str
    channel: str
    service_code: str
    service_name_en: str | None
    service_name_ar: str | None
    service_entity: str | None
    amount_fils: int
    currency: str
    status: str
    payment_method: str
    occurred_micros: int
    event_day: int
    payer_key: str | None
    card_last4: str | None
    kiosk_id: str | None
    kiosk_site: str | None
    app_id: str | None
    app_version: str | None
    app_os: str | None
    unknown_service: bool
    unmasked_card: bool


_new_payment = tuple.__new__
_NOT_IN_CATALOGUE: tuple[None, None, None] = (None, None, None)
_BAHRAIN_OFFSET_MICROS = 3 * 3_600_000_000  # schemas.timekeeping.bahrain_day_number, inlined
_MICROS_PER_DAY = 86_400_000_000


class Normaliser:
    """Callable mapping each channel's validated raw model to a `NormalisedPayment`."""

    def __init__(self, pseudonymise: Pseudonymiser, catalogue: Catalogue) -> None:
        self.pseudonymise = pseudonymise
        # What the catalogue adds to a service code: (name_en, name_ar, entity). The bulk path
        # enriches from this same mapping.
        self.enrichment: dict[str, tuple[str, str, str]] = {
            s.code: (s.name_en, s.name_ar, s.entity) for s in catalogue.services
        }

    def __call__(self, event: RawModel) -> NormalisedPayment:
        if isinstance(event, PortalEvent):
            return self._build(
                event_id_of(event),
                _PORTAL,
                event.service["code"].upper(),
                event.amount_fils,
                PORTAL_STATUS[event.status],
                event.method,
                to_utc_micros(event.paid_at),
                event.payer["cpr"],
            )
        if isinstance(event, MobileAppEvent):
            app, payment = event.app, event.payment
            return self._build(
                event_id_of(event),
                _MOBILE_APP,
                event.service_code.upper(),
                payment["amount"],
                APP_STATUS[payment["outcome"]],
                payment["method"],
                event.ts * 1000,
                event.user["cpr"],
                extras=(None, None, app["id"], app["version"], app["os"]),
            )
        return self._build(
            event_id_of(event),
            _KIOSK,
            event.service.upper(),
            event.amount,
            KIOSK_STATUS[event.result],
            _KIOSK_METHOD,
            event.local_time,  # UTC microseconds (schemas.raw.BahrainWallClock)
            event.cpr,
            card=event.card,
            extras=(event.kiosk_id, event.site, None, None, None),
        )

    def _build(
        self,
        event_id: str,
        channel: str,
        service_code: str,
        amount_fils: int,
        status: str,
        method: str,
        occurred_micros: int,
        cpr: str | None,
        card: str | None = None,
        extras: Extras = _NO_EXTRAS,
    ) -> NormalisedPayment:
        # This runs once per event: one dictionary lookup for the catalogue enrichment, and
        # the tuple built without NamedTuple's keyword-parsing constructor.
        name_en, name_ar, entity = self.enrichment.get(service_code, _NOT_IN_CATALOGUE)
        payer_key = self.pseudonymise(cpr) if cpr is not None else None
        last4, unmasked = card_last4(card) if card else (None, False)
        kiosk_id, kiosk_site, app_id, app_version, app_os = extras
        return _new_payment(
            NormalisedPayment,
            (
                event_id,
                channel,
                service_code,
                name_en,
                name_ar,
                entity,
                amount_fils,
                CURRENCY,
                status,
                method,
                occurred_micros,
                (occurred_micros + _BAHRAIN_OFFSET_MICROS) // _MICROS_PER_DAY,
                payer_key,
                last4,
                kiosk_id,
                kiosk_site,
                app_id,
                app_version,
                app_os,
                name_en is None,
                unmasked,
            ),
        )


def payer_cpr(event: RawModel) -> str | None:
    """The CPR an event names its payer by: the one value to look for in its identifiers."""
    if isinstance(event, PortalEvent):
        return event.payer["cpr"]
    if isinstance(event, MobileAppEvent):
        return event.user["cpr"]
    return event.cpr


def to_record(
    payment: NormalisedPayment,
    *,
    ingested_micros: int,
    run_id: str,
    source_file: str | None = None,
    source_line: int | None = None,
    source_message_id: str | None = None,
) -> PaymentRecord:
    """The schema-of-record view of a normalised payment (validates every column)."""
    return PaymentRecord(
        event_id=payment.event_id,
        channel=Channel(payment.channel),
        service_code=payment.service_code,
        service_name_en=payment.service_name_en,
        service_name_ar=payment.service_name_ar,
        service_entity=payment.service_entity,
        amount=fils_to_decimal(payment.amount_fils),
        currency=payment.currency,
        status=PaymentStatus(payment.status),
        payment_method=PaymentMethod(payment.payment_method),
        occurred_at=from_utc_micros(payment.occurred_micros),
        event_date=EPOCH_DATE + timedelta(days=payment.event_day),
        payer_key=payment.payer_key,
        card_last4=payment.card_last4,
        kiosk_id=payment.kiosk_id,
        kiosk_site=payment.kiosk_site,
        app_id=payment.app_id,
        app_version=payment.app_version,
        app_os=payment.app_os,
        source_file=source_file,
        source_line=source_line,
        source_message_id=source_message_id,
        ingested_at=from_utc_micros(ingested_micros),
        run_id=run_id,
        schema_version=SCHEMA_VERSION,
    )
