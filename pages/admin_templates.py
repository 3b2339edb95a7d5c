"""Admin · templates: versions, the diff between two, and an edited version previewed before it is saved."""

import streamlit as st

from app import admin, auth

PAGE = "admin_templates"

auth.require(PAGE)
st.title("Admin · templates")
st.caption("A template places the artwork and the customer's text on the print file. Saving makes a new version "
           "current for new orders (within 5 seconds: the API keeps a copy of the catalogue for that long); orders "
           "already placed keep the version they were priced and checked with.")

found = admin.templates()
by_key = {t["key"]: t for t in found}
key = st.selectbox("Template", list(by_key), key=f"{PAGE}.key",
                   format_func=lambda k: f"{k} · {by_key[k]['product'] or '—'} · v{by_key[k]['current_version']}")
template = by_key[key]
current = template["current_version"]

st.subheader("Versions")
versions = admin.version_table(key)
st.dataframe(versions, hide_index=True, key=f"{PAGE}.versions")

st.subheader("Compare two versions")
numbers = versions["version"].tolist()
older_col, newer_col = st.columns(2)
older = older_col.selectbox("From version", numbers, index=min(1, len(numbers) - 1),
                            key=f"{PAGE}.older.{key}.{current}")
newer = newer_col.selectbox("To version", numbers, index=0, key=f"{PAGE}.newer.{key}.{current}")
diff = admin.template_diff(key, older, newer)
if diff.empty:
    st.caption(f"Version {older} and version {newer} are the same.")
else:
    st.dataframe(diff, hide_index=True, key=f"{PAGE}.diff")

st.subheader(f"Edit: version {current + 1}")
st.caption("Edit the current version's document, look at the preview (sample artwork and text on the product), "
           "then save it as a new version.")
text = st.text_area("Template document (JSON)", admin.spec_text(admin.spec_of(key, current)), height=360,
                    key=f"{PAGE}.spec.{key}.{current}")
preview = admin.template_preview(key, text)
if preview["error"]:
    st.error(f"{preview['error']} Fix the document: nothing is previewed or saved until then.")
else:
    picture, changes = st.columns([2, 3])
    picture.image(preview["image"], caption=f"Preview of version {current + 1} (sample artwork and text)")
    with changes:
        if preview["changes"].empty:
            st.info(f"No change from version {current} yet.")
        else:
            st.markdown(f"**Changes from version {current}**")
            st.dataframe(preview["changes"], hide_index=True, key=f"{PAGE}.changes")


def save() -> None:
    admin.save_template(key, st.session_state[f"{PAGE}.spec.{key}.{current}"], current,
                        st.session_state[f"{PAGE}.note"])


st.text_input("What this version changes", key=f"{PAGE}.note", placeholder="e.g. larger headline for long names")
st.button(f"Save as version {current + 1}", type="primary", icon=":material/save:", key=f"{PAGE}.save",
          on_click=save, disabled=bool(preview["error"]) or preview["changes"].empty)
