"""Run statistics: counts keyed kind:channel:detail, added up by kind for the operator."""

from __future__ import annotations

from transforms.core import stats as st


def test_totals_by_kind_add_every_channel_and_detail() -> None:
    stats = {
        st.read_key("portal"): 5,
        st.read_key("kiosk"): 2,
        st.rejected_key("portal", "INVALID_AMOUNT"): 1,
        st.duplicate_key("kiosk", "in_input"): 1,
        st.accepted_key("portal"): 4,
        st.accepted_key("kiosk"): 1,
    }
    assert st.totals_by_kind(stats) == {"read": 7, "rejected": 1, "duplicates": 1, "accepted": 5}


def test_totals_by_kind_keep_amounts_apart_from_counts() -> None:
    stats = {st.accepted_key("portal"): 1, st.accepted_fils_key("portal", "SUCCESS"): 12_500}
    assert st.totals_by_kind(stats) == {"accepted": 1, "accepted_fils": 12_500}
