"""Turn a validated raw event of any channel into the one normalised payment shape."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any, NamedTuple

from schemas.catalogue import Catalogue
from schemas.enums import Channel, PaymentMethod, PaymentStatus
from schemas.money import CURRENCY, fils_to_decimal
from schemas.raw import (
    AppOutcome,
    KioskEvent,
    KioskResult,
    MobileAppEvent,
    PortalEvent,
    PortalStatus,
)
from schemas.records import SCHEMA_VERSION, PaymentRecord
from schemas.timekeeping import EPOCH_DATE, bahrain_day_number, from_utc_micros, to_utc_micros
from transforms.privacy import Pseudonymiser, card_last4
from transforms.validate import RawModel

_PORTAL_STATUS = {
    PortalStatus.PAID: PaymentStatus.SUCCESS,
    PortalStatus.DECLINED: PaymentStatus.FAILED,
    PortalStatus.REFUNDED: PaymentStatus.REFUNDED,
}
_APP_STATUS = {
    AppOutcome.SUCCESS: PaymentStatus.SUCCESS,
    AppOutcome.FAILURE: PaymentStatus.FAILED,
    AppOutcome.REFUND: PaymentStatus.REFUNDED,
}
_KIOSK_STATUS = {
    KioskResult.OK: PaymentStatus.SUCCESS,
    KioskResult.DECLINED: PaymentStatus.FAILED,
    KioskResult.CANCELLED: PaymentStatus.CANCELLED,
    KioskResult.REFUNDED: PaymentStatus.REFUNDED,
}


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
    record_hash: str
    unknown_service: bool
    unmasked_card: bool


def record_hash(fields: tuple[Any, ...]) -> str:
    """Stable fingerprint of business fields: equal for a redelivery, different for a conflict."""
    return hashlib.blake2b(repr(fields).encode(), digest_size=12).hexdigest()


class Normaliser:
    """Callable mapping each channel's validated raw model to a `NormalisedPayment`."""

    def __init__(self, pseudonymise: Pseudonymiser, catalogue: Catalogue) -> None:
        self._pseudonymise = pseudonymise
        self._catalogue = catalogue

    def __call__(self, event: RawModel) -> NormalisedPayment:
        if isinstance(event, PortalEvent):
            return self._portal(event)
        if isinstance(event, MobileAppEvent):
            return self._mobile_app(event)
        return self._kiosk(event)

    def _build(
        self,
        event_id: str,
        channel: Channel,
        service_code: str,
        amount_fils: int,
        status: PaymentStatus,
        method: PaymentMethod | str,
        occurred_micros: int,
        cpr: str | None,
        card: str | None = None,
        extras: Extras = (None, None, None, None, None),
    ) -> NormalisedPayment:
        service = self._catalogue.get(service_code)
        payer_key = self._pseudonymise(cpr) if cpr is not None else None
        last4, unmasked = card_last4(card)
        method_value = method.value if isinstance(method, PaymentMethod) else method
        business = (
            event_id,
            channel.value,
            service_code,
            amount_fils,
            status.value,
            method_value,
            occurred_micros,
            payer_key,
            last4,
            *extras,
        )
        return NormalisedPayment(
            event_id,
            channel.value,
            service_code,
            service.name_en if service else None,
            service.name_ar if service else None,
            service.entity if service else None,
            amount_fils,
            CURRENCY,
            status.value,
            method_value,
            occurred_micros,
            bahrain_day_number(occurred_micros),
            payer_key,
            last4,
            extras[0],
            extras[1],
            extras[2],
            extras[3],
            extras[4],
            record_hash(business),
            service is None,
            unmasked,
        )

    def _portal(self, e: PortalEvent) -> NormalisedPayment:
        return self._build(
            f"portal:{e.txn_id}",
            Channel.PORTAL,
            e.service.code,
            e.amount_fils,
            _PORTAL_STATUS[e.status],
            e.method.value,
            to_utc_micros(e.paid_at),
            e.payer.cpr,
        )

    def _mobile_app(self, e: MobileAppEvent) -> NormalisedPayment:
        return self._build(
            f"mobile_app:{e.event_id}",
            Channel.MOBILE_APP,
            e.service_code,
            e.payment.amount,
            _APP_STATUS[e.payment.outcome],
            e.payment.method,
            e.ts,
            e.user.cpr,
            extras=(None, None, e.app.id, e.app.version, e.app.os.value),
        )

    def _kiosk(self, e: KioskEvent) -> NormalisedPayment:
        return self._build(
            f"kiosk:{e.kiosk_id}:{e.seq}",
            Channel.KIOSK,
            e.service,
            e.amount,
            _KIOSK_STATUS[e.result],
            PaymentMethod.CARD,
            e.local_time,
            e.cpr,
            card=e.card,
            extras=(e.kiosk_id, e.site, None, None, None),
        )


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
        record_hash=payment.record_hash,
        ingested_at=from_utc_micros(ingested_micros),
        run_id=run_id,
        schema_version=SCHEMA_VERSION,
    )
