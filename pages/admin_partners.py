"""Admin · partners: capacity per print method, print methods, location and the active flag."""

import streamlit as st

from app import admin, auth
from app import components as ui

PAGE = "admin_partners"

auth.require(PAGE)
st.title("Admin · partners")
st.caption("Routing sends work to the nearest active partner with the method, the blanks and the capacity; "
           "batching sizes each batch from the capacity per hour. Changes apply to the next order and batch.")

FIELDS = ("name", "city", "country", "region", "lat", "lon", "methods", "active")


def save(pid: str) -> None:
    value = {name: st.session_state[f"{PAGE}.{name}.{pid}"] for name in FIELDS}
    capacity = {m: st.session_state[f"{PAGE}.capacity.{m}.{pid}"] for m in admin.PRINT_METHODS}
    admin.save_partner(pid, {"name": value["name"], "city": value["city"], "country": value["country"],
                             "region": value["region"], "lat": value["lat"], "lon": value["lon"],
                             "print_methods": value["methods"], "capacity_per_hour": capacity,
                             "active": value["active"]})


for partner in admin.partners():
    pid = partner["id"]
    state = "active" if partner["active"] else "inactive"
    capacity = ", ".join(f"{m} {c:g}/h" for m, c in partner["capacity_per_hour"].items()) or "no capacity"
    title = (f"{ui.plain(partner['name'])} · {ui.plain(pid)} · {ui.plain(partner['city'])}, {partner['country']} · "
             f"{state} · {ui.plain(capacity)}")
    with st.expander(title), st.form(f"{PAGE}.form.{pid}", border=False):
        name, city, country, region = st.columns([3, 2, 1, 1])
        name.text_input("Name", partner["name"], key=f"{PAGE}.name.{pid}")
        city.text_input("City", partner["city"], key=f"{PAGE}.city.{pid}")
        country.text_input("Country", partner["country"], key=f"{PAGE}.country.{pid}", help="two letters")
        region.text_input("Region", partner["region"], key=f"{PAGE}.region.{pid}",
                          help="batching groups destinations by region")
        lat, lon, active = st.columns([2, 2, 3])
        lat.number_input("Latitude", value=float(partner["lat"]), format="%.4f", key=f"{PAGE}.lat.{pid}")
        lon.number_input("Longitude", value=float(partner["lon"]), format="%.4f", key=f"{PAGE}.lon.{pid}")
        active.toggle("Active (receives new work)", partner["active"], key=f"{PAGE}.active.{pid}")
        st.pills("Print methods", admin.PRINT_METHODS, selection_mode="multi", default=partner["print_methods"],
                 key=f"{PAGE}.methods.{pid}")
        st.markdown("**Capacity per hour** (units; a method not selected above is ignored)")
        for column, method in zip(st.columns(len(admin.PRINT_METHODS)), admin.PRINT_METHODS, strict=True):
            column.number_input(method, value=float(partner["capacity_per_hour"].get(method, 0)), step=10.0,
                                key=f"{PAGE}.capacity.{method}.{pid}")
        st.form_submit_button("Save partner", type="primary", icon=":material/save:", on_click=save, args=(pid,),
                              key=f"{PAGE}.save.{pid}")
