"""The control room's open alerts: the cached read, the list with its Acknowledge buttons, and the action."""

from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

from app import actions, auth
from app import components as ui
from app.bootstrap import engine
from app.queries import LIVE_TTL_S
from core.monitors import MONITOR_KINDS
from core.policy import can_do
from core.services import monitor
from db.monitoring import open_alerts as _open_alerts

PREFIX = "alerts"
REQUESTED = f"{PREFIX}.acknowledge"
SEVERITY_COLOURS = {"critical": "red", "warning": "orange"}
WIDTHS = [1, 1.2, 4.4, 1.3, 1.5, 2]  # severity, kind, message, since, acknowledged by, the button


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def open_alerts() -> list[dict[str, Any]]:
    """Open monitor alerts (queues, error rate, stuck work, silent parcels), critical first, then oldest."""
    return _open_alerts(engine(), kinds=sorted(MONITOR_KINDS))


def _request(alert_id: int) -> None:
    """on_click: only note the request. Callbacks inside a fragment must not draw, so the panel acts on it."""
    st.session_state[REQUESTED] = alert_id


def _row(alert: Mapping[str, Any], *, may_acknowledge: bool) -> None:
    severity, kind, message, since, by, button = st.columns(WIDTHS, vertical_alignment="center")
    severity.markdown(f":{SEVERITY_COLOURS.get(alert['severity'], 'gray')}-badge[{ui.plain(alert['severity'])}]")
    kind.markdown(ui.plain(ui.humanise(alert["kind"])))
    message.markdown(ui.plain(alert["message"]))
    since.markdown(ui.ago(alert["opened_at"]), help=ui.when(alert["opened_at"]))
    if alert["acknowledged_by"]:
        by.markdown(f"{ui.plain(alert['acknowledged_by'])} · {ui.ago(alert['acknowledged_at'])}")
    else:
        by.markdown("—")
        if may_acknowledge:
            button.button("Acknowledge", key=f"{PREFIX}.ack.{alert['id']}", icon=":material/done:",
                          on_click=_request, args=(int(alert["id"]),),
                          help="Records that you are on it (audited); the alert clears when its condition ends")


def panel() -> None:
    """Open alerts: severity, kind, message, since, acknowledged by; Acknowledge for the roles allowed to."""
    requested = st.session_state.pop(REQUESTED, None)
    if requested is not None:
        actions.acknowledge_alert(requested)  # says what happened, or why not (role, already cleared)
        open_alerts.clear()
    alerts = open_alerts()
    if not alerts:
        st.success("No open alerts: every stage is within its thresholds.", icon=":material/check_circle:")
        return
    user = auth.current_user()
    may_acknowledge = user is not None and can_do(user.role, monitor.ACKNOWLEDGE)
    critical = sum(alert["severity"] == "critical" for alert in alerts)
    st.caption(f"{len(alerts)} open, {critical} critical. Each clears by itself when its condition ends."
               + ("" if may_acknowledge else " Your role can see alerts but not acknowledge them."))
    header = st.columns(WIDTHS)
    for column, title in zip(header, ("Severity", "Kind", "Message", "Since", "Acknowledged by", ""), strict=True):
        column.markdown(f"**{title}**" if title else "")
    for alert in alerts:
        _row(alert, may_acknowledge=may_acknowledge)
