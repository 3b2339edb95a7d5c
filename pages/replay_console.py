"""Replay console: dead-lettered messages and failed webhook deliveries, a dry run, and an audited replay."""

import streamlit as st

from app import auth, replay

PAGE = "replay_console"

auth.require(PAGE)
st.title("Replay console")
st.caption("Work that failed for good: messages that used up their retries (dead letters) and partner or carrier "
           "webhooks we could not apply. Narrow the list, look at the dry run, then replay. Replaying is safe to "
           "repeat: every stage skips work already done, and each replay is audited.")

selection, problem = replay.filter_form(PAGE)
if problem:
    st.error(f"{problem} Nothing is listed until the filter is fixed.")
    st.stop()

listed = replay.dry_run(selection)
if listed["warning"]:
    st.warning(f"{listed['warning']} Failed webhooks are listed below; try again shortly for the dead letters.")
st.subheader(f"{len(listed['items'])} failed item(s) match")
st.dataframe(listed["items"], hide_index=True, key=f"{PAGE}.list",
             column_config={"failed": st.column_config.DatetimeColumn("failed (UTC)"),
                            "replay": st.column_config.TextColumn("would replay?")})
chosen = replay.choose_items(listed["keys"], key=f"{PAGE}.chosen")

st.subheader("Dry run")
if st.button("Dry run", key=f"{PAGE}.dry_run", icon=":material/preview:"):
    st.session_state[f"{PAGE}.show_plan"] = True
if st.session_state.get(f"{PAGE}.show_plan"):
    plan = replay.dry_run(selection, chosen)
    total, letters, hooks = st.columns(3)
    total.metric("Would replay", plan["count"], border=True)
    letters.metric("Dead letters back on their queue", plan["dead_letters"], border=True)
    hooks.metric("Webhooks re-applied", plan["webhooks"], border=True)
    st.dataframe(plan["would"], hide_index=True, key=f"{PAGE}.plan")
    st.button(f"Replay these {plan['count']} item(s)", key=f"{PAGE}.replay", type="primary",
              icon=":material/replay:", disabled=not plan["count"], on_click=replay.replay,
              args=(selection, chosen), help="Re-reads the selection at the click; the replay is audited")
else:
    st.caption("Press Dry run to see exactly what a replay of this selection would do; nothing changes until "
               "you replay.")
