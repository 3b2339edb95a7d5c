"""Admin · feature flags: switch a behaviour on for everyone, a partner or a template, for a share of the work."""

import streamlit as st

from app import admin, auth

PAGE = "admin_flags"

auth.require(PAGE)
st.title("Admin · feature flags")
st.caption("The most specific row decides: a template's row over a partner's, a partner's over the global one. "
           "The rollout picks the same jobs every time (a hash of the job), and more of them as it grows.")
with st.expander("Flags the system reads"):
    for flag, what in admin.KNOWN_FLAGS.items():
        st.markdown(f"**{flag}** — {what}")
st.dataframe(admin.feature_flags(), hide_index=True, key=f"{PAGE}.table")

st.subheader("Set a flag")
key_col, scope_col, target_col = st.columns(3)
key_col.selectbox("Flag", list(admin.KNOWN_FLAGS), key=f"{PAGE}.key")
scope = scope_col.selectbox("For", admin.SCOPES, key=f"{PAGE}.scope")
targets = admin.flag_targets(scope)
target_col.selectbox("Which one", targets, key=f"{PAGE}.scope_id", disabled=targets == [""],
                     format_func=lambda target: target or "everywhere")
enabled_col, rollout_col = st.columns(2)
enabled_col.toggle("On", value=True, key=f"{PAGE}.enabled")
rollout_col.number_input("Rollout (% of jobs)", value=100, step=5, key=f"{PAGE}.rollout")


def save() -> None:
    s = st.session_state
    admin.set_flag(s[f"{PAGE}.key"], s[f"{PAGE}.scope"], s[f"{PAGE}.scope_id"], s[f"{PAGE}.enabled"],
                   s[f"{PAGE}.rollout"])


st.button("Save flag", key=f"{PAGE}.save", type="primary", icon=":material/flag:", on_click=save)

rows = admin.flag_rows()
if rows:
    st.subheader("Remove a flag")
    st.selectbox("Flag row", rows, key=f"{PAGE}.remove_choice", format_func=lambda row: row.replace("|", " · "))
    st.button("Remove", key=f"{PAGE}.remove", icon=":material/delete:",
              on_click=lambda: admin.remove_flag(st.session_state[f"{PAGE}.remove_choice"]))
