"""Audit log: every staff action (who, when, what, before and after), searchable, newest first, exportable."""

import streamlit as st

from app import audit, auth
from app import components as ui

PAGE = "audit_log"

auth.require(PAGE)
st.title("Audit log")
st.caption("Every staff action, as it was recorded: rows are only ever added. Text fields match anywhere in the "
           "value, in any case; dates are UTC days and both ends are included.")

actor, action, target, order = st.columns(4)
actor.text_input("Who", key=f"{PAGE}.actor", placeholder="username")
action.text_input("Action", key=f"{PAGE}.action", placeholder="e.g. batch.release",
                  help="Actions in the log: " + ", ".join(audit.actions()))
target.text_input("Target", key=f"{PAGE}.target", placeholder="e.g. a batch or inspection id")
order.text_input("Order number", key=f"{PAGE}.order", placeholder="PR-…")
since, until, page = st.columns(3)
since.date_input("From", value=None, key=f"{PAGE}.since")
until.date_input("To", value=None, key=f"{PAGE}.until")
page.number_input("Page", min_value=1, value=1, step=1, key=f"{PAGE}.page")

wanted, problem = audit.query(actor=st.session_state[f"{PAGE}.actor"], action=st.session_state[f"{PAGE}.action"],
                              target=st.session_state[f"{PAGE}.target"], order_number=st.session_state[f"{PAGE}.order"],
                              since=st.session_state[f"{PAGE}.since"], until=st.session_state[f"{PAGE}.until"],
                              page=st.session_state[f"{PAGE}.page"])
if problem:
    st.error(f"{problem} Nothing is searched until that is fixed.")
    st.stop()

found = audit.search(wanted)
st.subheader(f"{found['total']} matching action(s)")
st.caption(f"Page {wanted.page} of {found['pages']}, newest first.")
if not found["rows"]:
    st.info("No staff action matches. Clear a field or widen the dates.")
    st.stop()
st.download_button("Export every match as CSV", data=audit.export_csv(wanted), file_name="audit_log.csv",
                   mime="text/csv", key=f"{PAGE}.export", icon=":material/download:")
st.dataframe(found["table"], hide_index=True, key=f"{PAGE}.table",
             column_config={"at": st.column_config.DatetimeColumn("when (UTC)"),
                            "order_number": st.column_config.TextColumn("order")})
for row in found["rows"]:
    with st.expander(f"{ui.when(row['at'])} · {ui.plain(row['actor'])} · {ui.plain(row['action'])} · "
                     f"{ui.plain(row['target'])}"):
        changed = [c for c in row["changes"] if c["change"] != "same"]
        st.dataframe(changed or row["changes"], hide_index=True, key=f"{PAGE}.diff.{row['id']}",
                     column_order=["field", "change", "before", "after"])
        if not row["changes"]:
            st.caption("This action recorded no before or after.")
