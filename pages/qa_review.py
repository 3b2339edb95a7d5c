"""QA review: the inspector's queue of doubtful prints, the pictures side by side, and the verdict."""

import streamlit as st

from app import actions, auth, queries
from app import components as ui
from core.states import DefectReason

PAGE = "qa_review"
SELECTED = f"{PAGE}.selected"

user = auth.require(PAGE)
st.title("QA review")
st.caption("Prints the automatic inspection could not settle, oldest first. Compare the print file with the "
           "partner's photo (aligned onto it), then approve, or reject with a reason code to order a reprint.")

queue = queries.review_queue()
ui.review_counts(queue)
for index, given in enumerate(queries.undoable_verdicts(user.username)):
    note, undo = st.columns([4, 1], vertical_alignment="center")
    note.info(ui.verdict_line(given), icon=":material/schedule:")
    undo.button("Undo", key=f"{PAGE}.undo.{given['id']}", icon=":material/undo:", on_click=actions.undo_verdict,
                args=(given["id"],), shortcut="u" if index == 0 else None,
                help="Take this verdict back while its undo window is open (shortcut U for the latest)")
items = {item["id"]: item for item in queue["items"]}
if not items:
    st.success("Nothing is waiting for review.", icon=":material/task_alt:")
    st.stop()
if st.session_state.get(SELECTED) not in items:
    st.session_state[SELECTED] = next(iter(items))
st.selectbox("Item", list(items), key=SELECTED, format_func=lambda iid: ui.review_label(items[iid]))
selected = st.session_state[SELECTED]
found = queries.inspection(selected)
if found is None:
    st.error("That item is no longer in the queue. Pick another one; the queue refreshes in a few seconds.")
    st.stop()


def next_after(inspection_id: str) -> str | None:
    """The item to show once this one is decided: the next in the queue, else the one before."""
    ids = list(items)
    at = ids.index(inspection_id)
    rest = ids[at + 1:] + ids[:at][::-1]
    return rest[0] if rest else None


def approve(inspection_id: str) -> None:
    if actions.approve_inspection(inspection_id):
        st.session_state[SELECTED] = next_after(inspection_id)


def reject(inspection_id: str) -> None:
    if actions.reject_inspection(inspection_id, st.session_state.get(f"{PAGE}.reason.{inspection_id}")):
        st.session_state[SELECTED] = next_after(inspection_id)


heat, zoom, blend = st.columns([1, 1, 3], vertical_alignment="center")
heatmap = heat.toggle("Heat-map overlay", key=f"{PAGE}.heatmap", help="Show the defect heat-map instead of the photo")
zoomed = zoom.toggle("Zoom to the worst region", key=f"{PAGE}.zoom")
after = blend.slider("Before / after", 0, 100, 100, key=f"{PAGE}.blend",
                     help="0: the print file only; 100: the photo only; between: the two blended")
pictures = queries.review_pictures(selected, after_pct=after, heatmap=heatmap, zoom=zoomed)
if pictures is None:
    st.warning("No aligned photo was stored for this item (the partner sent none, or it could not be read): "
               "judge from the scores, or reject it as damaged to have it printed again.")
else:
    if zoomed and not pictures["zoomed"]:
        st.caption("No worst region was recorded for this item: showing the whole print.")
    reference, photo = st.columns(2)
    reference.image(pictures["reference"], caption="Reference (print file)", width="stretch")
    photo.image(pictures["photo"], caption="Heat-map" if heatmap else "Photo, aligned to the print file",
                width="stretch")
ui.inspection_facts(found)

suspected = [str(r) for r in found["reasons"] if r in set(DefectReason)]
codes = list(DefectReason)
verdict_ok, verdict_reason, verdict_no = st.columns([1, 2, 1], vertical_alignment="bottom")
verdict_ok.button("Approve", key=f"{PAGE}.approve", type="primary", icon=":material/check:", shortcut="a",
                  on_click=approve, args=(selected,), help="The print is good: it passes QA (shortcut A)")
verdict_reason.selectbox("Reason code", codes, index=codes.index(suspected[0]) if suspected else None,
                         key=f"{PAGE}.reason.{selected}", format_func=lambda code: code.replace("_", " "),
                         placeholder="Choose why it fails")
verdict_no.button("Reject", key=f"{PAGE}.reject", icon=":material/close:", shortcut="x", on_click=reject,
                  args=(selected,), help="The print fails: it is reprinted with this reason (shortcut X)")
