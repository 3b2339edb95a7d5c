"""Batch builder: open jobs as the batcher groups them, staff actions per batch, and a what-if for the rules."""

import streamlit as st

from app import actions, auth, queries
from app import components as ui

PAGE = "batch_builder"

auth.require(PAGE)
st.title("Batch builder")
st.caption("Open jobs grouped as the batcher groups them: partner × product type × print method × destination "
           "region. A batch goes to its partner when it reaches its target size or its oldest job has waited "
           "the longest wait; a held batch waits for you.")

st.subheader("Batches")
ui.batch_table(queries.batch_board())
if waiting := queries.unbatched_not_shown():
    st.caption(f"{waiting:,} more unbatched jobs wait behind these: the board proposes the next batches of each "
               "group from its most urgent jobs.")


def keep(batch_id: str) -> None:
    actions.split_batch(batch_id, st.session_state[f"{PAGE}.keep.{batch_id}"])


def merge(batch_id: str) -> None:
    actions.merge_batches(batch_id, st.session_state[f"{PAGE}.merge_from.{batch_id}"])


def reprioritise(batch_id: str) -> None:
    actions.reprioritise_batch(batch_id, st.session_state[f"{PAGE}.priority.{batch_id}"])


stored = queries.stored_batches()
if stored:
    st.subheader("Act on a batch")
for batch in stored:
    bid = batch["id"]
    with st.expander(f"{ui.plain(bid)} · {batch['status']} · {ui.plain(batch['group'])} · "
                     f"{batch['size']} of {batch['target']} jobs"):
        st.markdown("\n".join(f"{n}. {ui.plain(job)}" for n, job in enumerate(batch["jobs"], start=1)))
        hold, release = st.columns(2)
        hold.button("Hold", key=f"{PAGE}.hold.{bid}", icon=":material/pause:", disabled=batch["status"] == "held",
                    on_click=actions.hold_batch, args=(bid,), help="Stop automatic release until you release it")
        release.button("Release now", key=f"{PAGE}.release.{bid}", icon=":material/send:", type="primary",
                       on_click=actions.release_batch, args=(bid,))
        split, combine, priority = st.columns(3)
        with split:
            if batch["size"] > 1:
                st.number_input("Keep the first … jobs", 1, batch["size"] - 1, max(1, batch["size"] // 2),
                                key=f"{PAGE}.keep.{bid}", help="the rest move to a new open batch of this group")
                st.button("Split", key=f"{PAGE}.split.{bid}", icon=":material/call_split:", on_click=keep,
                          args=(bid,))
            else:
                st.caption("One job: nothing to split.")
        with combine:
            if batch["merge_with"]:
                st.selectbox("Merge in batch", batch["merge_with"], key=f"{PAGE}.merge_from.{bid}")
                st.button("Merge into this one", key=f"{PAGE}.merge.{bid}", icon=":material/merge:",
                          on_click=merge, args=(bid,))
            else:
                st.caption("No other open batch in this group to merge.")
        with priority:
            st.number_input("Priority for every job", value=round(float(batch["priority"]), 1), step=1.0,
                            key=f"{PAGE}.priority.{bid}")
            st.button("Set priority", key=f"{PAGE}.reprioritise.{bid}", icon=":material/low_priority:",
                      on_click=reprioritise, args=(bid,))

st.subheader("What if: production rules")
st.caption("Move a weight or the batch policy to see how predicted start times would move. Nothing changes "
           "until you apply; applying re-scores open jobs and resizes open batches exactly as previewed.")
edited = ui.rules_editor(queries.rules_in_force(), key=f"{PAGE}.rules")
preview = queries.rules_preview(edited)
if preview["error"]:
    st.error(f"{preview['error']} Nothing is previewed or saved until that is fixed.")
else:
    earlier, later = st.columns(2)
    earlier.metric("Jobs that would start earlier", preview["earlier"], border=True)
    later.metric("Jobs that would start later", preview["later"], border=True)
    ui.start_shift_chart(preview["jobs"])
    if preview["left_out"]:
        st.caption(f"Previewed over each group's most urgent waiting jobs; {preview['left_out']:,} further "
                   "unbatched jobs are not previewed (applying re-scores them all).")
    with st.expander("Every open job, before and after"):
        ui.start_shift_table(preview["jobs"])
st.button("Apply these rules", key=f"{PAGE}.apply", type="primary", icon=":material/done_all:",
          disabled=bool(preview["error"]), on_click=actions.save_edited_production_rules, args=(f"{PAGE}.rules",),
          help="Saves the rules previewed above; the change is audited")
