"""Order timeline: one search box for support, then the order, its lines and jobs, and every event."""

import streamlit as st

from app import auth, queries, support
from app import components as ui

PAGE = "order_timeline"

auth.require(PAGE)
st.title("Order timeline")

term = st.text_input("Find an order", key="timeline.query", icon=":material/search:",
                     placeholder="Order number (PR-…), e-mail, tracking number or shop order id")
if not term.strip():
    st.caption("Search by order number, customer e-mail, tracking number or the shop's order id.")
    st.stop()

results = queries.search_orders(term)
if not results:
    st.info("No order matches that. Check the spelling, or try the customer's e-mail or the tracking number.")
    st.stop()

by_id = {summary["id"]: summary for summary in results}
selected = st.radio(f"{len(results)} order(s) found", list(by_id), key="timeline.selected",
                    format_func=lambda order_id: ui.order_label(by_id[order_id]))
detail = queries.order_detail(selected)
if detail is None:
    st.warning("That order is no longer there. Search again.")
    st.stop()

st.divider()
ui.order_header(detail["order"])
st.subheader("Lines")
ui.lines_table(detail["lines"])
st.subheader("Print files")
ui.print_files(queries.order_assets(selected))
st.subheader("Print jobs")
ui.jobs_table(detail["jobs"])
ui.shipments_table(detail["shipments"])
if support.cancellable(detail["order"]):
    with st.expander("Cancel this order", icon=":material/cancel:"):
        st.caption("Before the production gate only: its jobs are cancelled, its stock released and its payment "
                   "voided. The customer can do the same from their link.")
        st.text_input("Why", key="timeline.cancel_reason", placeholder="e.g. the customer asked by phone")
        st.button("Cancel order", key="timeline.cancel", type="primary", icon=":material/cancel:",
                  on_click=lambda: support.cancel_order(selected, st.session_state["timeline.cancel_reason"]))
st.subheader("Timeline")
st.caption("Newest first. A customer message can be resent from its line.")
ui.timeline_list(queries.timeline(selected),
                 on_resend=lambda milestone, channel: support.resend_notification(selected, milestone, channel))
