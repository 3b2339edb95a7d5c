"""Admin · rules: prohibited words, priority weights and batching, spot-check rate and QA tolerances."""

import streamlit as st

from app import actions, admin, auth, queries
from app import components as ui

PAGE = "admin_rules"

auth.require(PAGE)
st.title("Admin · rules")
words_tab, production_tab, qa_tab = st.tabs(["Prohibited words", "Priority and batching", "Spot checks and QA"])


def add_word() -> None:
    if admin.add_word(st.session_state[f"{PAGE}.word"]):
        st.session_state[f"{PAGE}.word"] = ""


with words_tab:
    st.caption("Checkout refuses custom text containing a listed word, however it is disguised (case, accents, "
               "look-alike letters, spacing). A change applies to checkouts within 5 seconds (the API keeps a "
               "copy of the list for that long).")
    words = admin.prohibited_words()
    add, remove = st.columns(2)
    with add:
        st.text_input("Word or phrase to refuse", key=f"{PAGE}.word", max_chars=80)
        st.button("Add to the list", key=f"{PAGE}.add_word", icon=":material/block:", on_click=add_word)
    with remove:
        st.selectbox("Word to allow again", words["word"].tolist(), index=None, key=f"{PAGE}.remove_choice")
        st.button("Remove from the list", key=f"{PAGE}.remove_word", icon=":material/delete:",
                  on_click=lambda: admin.remove_word(st.session_state[f"{PAGE}.remove_choice"]))
    st.dataframe(words, hide_index=True, key=f"{PAGE}.words")

with production_tab:
    st.caption("The same rules as the batch builder's what-if (open it to see how starts would shift). Applying "
               "re-scores open jobs and resizes open batches; routing weights apply to jobs routed from now on.")
    ui.rules_editor(queries.rules_in_force(), key=f"{PAGE}.rules")
    st.button("Apply these rules", key=f"{PAGE}.apply_rules", type="primary", icon=":material/done_all:",
              on_click=actions.save_edited_production_rules, args=(f"{PAGE}.rules",))


def save_qa() -> None:
    admin.save_qa_rules(st.session_state[f"{PAGE}.qa.rate"],
                        {name: st.session_state[f"{PAGE}.qa.{name}"] for name in admin.TOLERANCES})


with qa_tab:
    st.caption("Automatic QA passes prints within these tolerances and asks an inspector about borderline ones; "
               "the spot-check rate sends that share of automatic passes to an inspector too. The QA worker "
               "reads these for every print.")
    rules = admin.qa_rules_in_force()
    st.number_input("Spot-check rate (% of automatic passes)", value=rules["spot_check_rate"] * 100, step=0.5,
                    format="%.2f", key=f"{PAGE}.qa.rate", help="the source guide suggests 1–2 %")
    columns = st.columns(2)
    for index, (name, label) in enumerate(admin.TOLERANCES.items()):
        columns[index % 2].number_input(label, value=float(rules["tolerances"][name]), step=0.05, format="%.3f",
                                        key=f"{PAGE}.qa.{name}")
    st.button("Save QA rules", key=f"{PAGE}.save_qa", type="primary", icon=":material/save:", on_click=save_qa)
