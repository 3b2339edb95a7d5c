"""Admin · staff: create accounts with a role and an initial password, change roles, disable and enable."""

import streamlit as st

from app import admin, auth

PAGE = "admin_staff"

me = auth.require(PAGE)
st.title("Admin · staff")
st.caption("A disabled account is signed out on its next click and cannot sign in; a role change applies on "
           "the next click too. There is always at least one active manager.")
users = admin.staff()
st.dataframe(users, hide_index=True, key=f"{PAGE}.table")


def create() -> None:
    s = st.session_state
    if admin.create_user(s[f"{PAGE}.new.username"], s[f"{PAGE}.new.role"], s[f"{PAGE}.new.password"]):
        s[f"{PAGE}.new.username"] = s[f"{PAGE}.new.password"] = ""


st.subheader("New account")
name_col, role_col, password_col = st.columns(3)
name_col.text_input("Username", key=f"{PAGE}.new.username", placeholder="e.g. jordan")
role_col.selectbox("Role", admin.ROLES, key=f"{PAGE}.new.role")
password_col.text_input("Initial password", type="password", key=f"{PAGE}.new.password",
                        help="at least 12 characters of three kinds, or a passphrase of 20")
st.button("Create account", key=f"{PAGE}.create", type="primary", icon=":material/person_add:", on_click=create)

st.subheader("Change an account")
chosen = st.selectbox("Account", users["username"].tolist(), index=None, key=f"{PAGE}.user")
if chosen:
    row = users.set_index("username").loc[chosen]
    role_col, active_col = st.columns(2)
    with role_col:
        st.selectbox("Role", admin.ROLES, index=admin.ROLES.index(row["role"]), key=f"{PAGE}.role.{chosen}")
        st.button("Change role", key=f"{PAGE}.change_role", on_click=lambda: admin.change_role(
            chosen, st.session_state[f"{PAGE}.role.{chosen}"]))
    with active_col:
        st.markdown(f"**{'Active' if row['active'] else 'Disabled'}**" + (" (you)" if chosen == me.username else ""))
        if row["active"]:
            st.button("Disable", key=f"{PAGE}.disable", icon=":material/block:", on_click=admin.set_user_active,
                      args=(chosen, False))
        else:
            st.button("Enable", key=f"{PAGE}.enable", icon=":material/check:", on_click=admin.set_user_active,
                      args=(chosen, True))
