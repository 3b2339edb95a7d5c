"""Exception inbox: orders that cannot go on by themselves, oldest first, with what support can do about each."""

import streamlit as st

from app import auth, support
from app import components as ui

PAGE = "exception_inbox"
ACTION_LABELS = {"verify_address": ("Verify address and release", ":material/where_to_vote:"),
                 "reship": ("Reship", ":material/local_shipping:"),
                 "refund": ("Refund and close", ":material/currency_exchange:"),
                 "contact": ("Contact customer", ":material/mail:"),
                 "resolve": ("Resolve with note", ":material/task_alt:")}
ADDRESS_FIELDS = (("name", "Name"), ("line1", "Street address"), ("line2", "Address line 2"), ("city", "City"),
                  ("region", "State / region"), ("postal_code", "Postal code"), ("country", "Country (ISO code)"))

auth.require(PAGE)
st.title("Exception inbox")
st.caption("Bad addresses, returned, undeliverable or lost parcels, failed notifications and customers' change "
           "requests, oldest first. Each action goes on the order's timeline and in the audit log, and "
           "resolves the entry.")

found = support.inbox()
ui.exception_counts(found["counts"])
if not found["entries"]:
    st.success("Nothing waits for support right now.", icon=":material/inbox:")
    st.stop()


def act(alert_id: int, action: str) -> None:
    fields = {name: st.session_state.get(f"{PAGE}.address.{alert_id}.{name}", "") for name, _ in ADDRESS_FIELDS}
    support.take(alert_id, action, st.session_state.get(f"{PAGE}.note.{alert_id}", ""),
                 fields if action == "verify_address" else None)


def use_suggestion(alert_id: int) -> None:
    for name, value in st.session_state.get(f"exceptions.suggestion.{alert_id}", {}).items():
        st.session_state[f"{PAGE}.address.{alert_id}.{name}"] = value


for entry in found["entries"]:
    aid = entry["id"]
    with st.container(border=True, key=f"{PAGE}.entry.{aid}"):
        ui.exception_entry(entry)
        if "verify_address" in entry["actions"]:
            with st.expander("Edit the shipping address", expanded=entry["kind"] == "address"):
                current = entry["address"] or {}
                columns = st.columns(2)
                for index, (name, label) in enumerate(ADDRESS_FIELDS):
                    st.session_state.setdefault(f"{PAGE}.address.{aid}.{name}", current.get(name, ""))
                    columns[index % 2].text_input(label, key=f"{PAGE}.address.{aid}.{name}")
                if st.session_state.get(f"exceptions.suggestion.{aid}"):
                    st.button("Use the carrier's suggestion", key=f"{PAGE}.suggest.{aid}",
                              icon=":material/auto_fix_high:", on_click=use_suggestion, args=(aid,))
        st.text_input("Note (required to resolve without an action)", key=f"{PAGE}.note.{aid}", max_chars=1000)
        buttons = st.columns(len(entry["actions"]))
        for column, action in zip(buttons, entry["actions"], strict=True):
            label, icon = ACTION_LABELS[action]
            column.button(label, key=f"{PAGE}.{action}.{aid}", icon=icon, on_click=act, args=(aid, action),
                          type="primary" if action == entry["actions"][0] else "secondary")
