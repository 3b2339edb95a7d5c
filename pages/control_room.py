"""Control room: open alerts, orders per state, queue depth and lag, intake, refusals and partners — live."""

import streamlit as st

from app import alerts, auth, queries
from app import components as ui

PAGE = "control_room"

auth.require(PAGE)
st.title("Control room")
st.caption("Live: refreshes every 5 seconds.")


@st.fragment(run_every="5s")
def live() -> None:
    auth.recheck(PAGE)
    st.subheader("Open alerts")
    alerts.panel()
    ui.intake_tiles(queries.intake_outcomes())
    st.subheader("Queues")
    ui.queue_table(queries.queue_overview())
    states, refusals = st.columns(2, gap="large")
    with states:
        st.subheader("Orders by state")
        st.caption("Open states: every order in them. Delivered, cancelled, failed: the last 24 hours.")
        ui.status_chart(queries.orders_per_status())
    with refusals:
        st.subheader("Why checkouts were refused")
        ui.rejections_chart(queries.rejection_reasons())
    st.subheader("Intake, last hour")
    ui.intake_chart(queries.intake_per_minute())
    st.subheader("Render cache and print files")
    ui.render_cache_tiles(queries.render_cache(), queries.retrieval_latency())
    st.subheader("Print partners")
    ui.partner_table(queries.partner_panel(), start_sla_hours=queries.start_sla().total_seconds() / 3600)


live()
