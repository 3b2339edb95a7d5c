"""Dashboard entrypoint: page config, the login gate, then navigation over the pages the role may view."""

import streamlit as st

from app import auth, bootstrap
from app.navigation import pages_for, signed_out_pages

st.set_page_config(page_title="Pressroom", page_icon=":material/print:", layout="wide")
bootstrap.settings()

user = auth.current_user()
if user is None:
    st.navigation(signed_out_pages(auth.login_page), position="hidden").run()
else:
    auth.sidebar(user)
    st.navigation(pages_for(user.role)).run()
