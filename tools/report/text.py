"""The words of the report's pages in English and Arabic (channel and service names come from
the catalogue, schemas/catalogue.py). No digit appears here: every number on a page is a
figure of figures.json."""

from __future__ import annotations

from schemas.enums import PaymentStatus, RejectCode

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "E-payments through the government's electronic channels",
        "against": "compared with",
        "key_figures": "Key figures",
        "by_channel": "Successful payments by channel",
        "channel": "Channel",
        "all_channels": "All channels",
        "payments": "Payments",
        "amount": "Amount (BHD)",
        "average": "Average payment (BHD)",
        "share_payments": "Share of payments",
        "share_amount": "Share of amount",
        "growth": "Growth",
        "growth_payments": "in payments",
        "growth_amount": "in amount",
        "headline_note": "Successful payments only; amounts in Bahraini dinars, rounded to the "
        "dinar (the average to the fils). Days are Bahrain calendar days.",
        "per_month": "Per month and channel",
        "chart_payments": "Successful payments per month and channel, both periods",
        "chart_amount": "Amount of successful payments per month and channel, both periods",
        "outcomes": "Failed, cancelled and refunded payments",
        "outcomes_note": "Counted apart from revenue: none of these is in the figures above, "
        "and refunds are not deducted from them.",
        "count": "payments",
        "top_services": "Top services per channel",
        "service": "Service",
        "share_of_channel": "Share of the channel",
        "rejected": "Rejected events by reason",
        "rejected_note": "Events the pipeline refused, with the reason it gave; over every "
        "committed run into this output, not only the period (a rejected event has no trusted "
        "date).",
        "code": "Code",
        "reason": "Reason",
        "events": "Events",
        "total": "Total",
        "source_note": "From the committed daily aggregates and rejected events of the "
        "payments pipeline.",
    },
    "ar": {
        "title": "المدفوعات الإلكترونية عبر القنوات الحكومية الإلكترونية",
        "against": "مقارنة مع",
        "key_figures": "أبرز الأرقام",
        "by_channel": "عمليات الدفع الناجحة حسب القناة",
        "channel": "القناة",
        "all_channels": "جميع القنوات",
        "payments": "عمليات الدفع",
        "amount": "المبلغ (دينار بحريني)",
        "average": "متوسط عملية الدفع (دينار بحريني)",
        "share_payments": "الحصة من عمليات الدفع",
        "share_amount": "الحصة من المبلغ",
        "growth": "النمو",
        "growth_payments": "في عمليات الدفع",
        "growth_amount": "في المبلغ",
        "headline_note": "عمليات الدفع الناجحة فقط؛ المبالغ بالدينار البحريني مقربة إلى الدينار "
        "(والمتوسط إلى الفلس). الأيام أيام تقويم البحرين.",
        "per_month": "حسب الشهر والقناة",
        "chart_payments": "عمليات الدفع الناجحة حسب الشهر والقناة في الفترتين",
        "chart_amount": "مبلغ عمليات الدفع الناجحة حسب الشهر والقناة في الفترتين",
        "outcomes": "عمليات الدفع الفاشلة والملغاة والمستردة",
        "outcomes_note": "تحسب بمعزل عن الإيرادات: لا يدخل أي منها في الأرقام أعلاه، ولا تخصم "
        "المبالغ المستردة منها.",
        "count": "عمليات",
        "top_services": "أكثر الخدمات استخداما في كل قناة",
        "service": "الخدمة",
        "share_of_channel": "الحصة من القناة",
        "rejected": "الأحداث المرفوضة حسب السبب",
        "rejected_note": "أحداث رفضها خط المعالجة مع سبب الرفض؛ في جميع عمليات التشغيل المعتمدة "
        "لهذا المخرج، وليس للفترة وحدها (لا يحمل الحدث المرفوض تاريخا موثوقا).",
        "code": "الرمز",
        "reason": "السبب",
        "events": "الأحداث",
        "total": "المجموع",
        "source_note": "من المجاميع اليومية المعتمدة والأحداث المرفوضة لخط معالجة المدفوعات.",
    },
}

STATUS_NAMES: dict[str, dict[str, str]] = {
    "en": {
        PaymentStatus.FAILED.value: "Failed",
        PaymentStatus.CANCELLED.value: "Cancelled",
        PaymentStatus.REFUNDED.value: "Refunded",
    },
    "ar": {
        PaymentStatus.FAILED.value: "فاشلة",
        PaymentStatus.CANCELLED.value: "ملغاة",
        PaymentStatus.REFUNDED.value: "مستردة",
    },
}

_R = RejectCode
REJECT_REASONS: dict[str, tuple[str, str]] = {
    _R.INVALID_UTF8.value: ("not valid Unicode text", "نص غير صالح الترميز"),
    _R.MALFORMED_JSON.value: ("not valid JSON", "ليس JSON صالحا"),
    _R.NOT_AN_OBJECT.value: ("JSON but not an object", "JSON ولكنه ليس كائنا"),
    _R.LINE_TOO_LONG.value: ("line too long", "السطر طويل جدا"),
    _R.TOO_DEEPLY_NESTED.value: ("nested too deeply", "تداخل عميق جدا"),
    _R.UNKNOWN_CHANNEL.value: ("unknown channel", "قناة غير معروفة"),
    _R.MISSING_FIELD.value: ("a required field is missing", "حقل مطلوب مفقود"),
    _R.WRONG_TYPE.value: ("a field has the wrong type", "نوع حقل غير صحيح"),
    _R.INVALID_VALUE.value: ("a field has an invalid value", "قيمة حقل غير صالحة"),
    _R.INVALID_AMOUNT.value: ("invalid amount", "مبلغ غير صالح"),
    _R.NON_POSITIVE_AMOUNT.value: ("amount not above zero", "مبلغ غير موجب"),
    _R.WRONG_CURRENCY.value: ("currency is not BHD", "العملة ليست الدينار البحريني"),
    _R.INVALID_TIMESTAMP.value: ("invalid time", "وقت غير صالح"),
    _R.INVALID_CPR.value: ("invalid CPR number", "رقم شخصي غير صالح"),
    _R.DUPLICATE_CONFLICT.value: (
        "same id as an earlier event, other content",
        "نفس معرف حدث سابق بمحتوى مختلف",
    ),
    _R.DUPLICATE_KEY.value: ("a key appears twice", "مفتاح مكرر"),
    _R.PERSONAL_DATA_IN_ID.value: ("personal data in the id", "بيانات شخصية في المعرف"),
    _R.UNPROCESSABLE.value: ("could not be processed", "تعذرت معالجته"),
}
