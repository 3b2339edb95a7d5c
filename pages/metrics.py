"""Metrics: the source guide's success metrics, live, each with its target, status and the rows behind it."""

import streamlit as st

from app import auth
from app import metrics as mx

PAGE = "metrics"

auth.require(PAGE)
st.title("Metrics")
st.caption("The guide's success metrics over whole UTC days, read live from the order timeline and the tables "
           "behind it. Every figure shows its counts; open a metric below to see how it is computed and the "
           "rows that missed.")

first, last = mx.default_range()
days, who = st.columns([2, 1])
picked = days.date_input("Days (UTC)", (first, last), key=f"{PAGE}.days")
partner = who.selectbox("Partner", mx.partner_choices(), format_func=mx.partner_label, key=f"{PAGE}.partner")
start, end = (picked[0], picked[-1]) if picked else (first, last)
overview = mx.overview(start, end, partner)
if overview["error"]:
    st.error(f"{overview['error']} Nothing is shown until that is fixed.")
    st.stop()

st.subheader("Success metrics")
tiles = st.columns(3)
for n, card in enumerate(overview["cards"]):
    tiles[n % 3].metric(card["title"], card["value"], border=True, help=card["how"], icon=card["icon"],
                        delta=f"{card['status']} · target {card['target']}", delta_color=card["colour"],
                        delta_arrow="off")
st.dataframe(overview["table"], hide_index=True, key=f"{PAGE}.table")
st.download_button("Download the metrics (CSV)", mx.csv_bytes(overview["table"]), key=f"{PAGE}.csv",
                   file_name=f"metrics_{start}_{end}.csv", mime="text/csv", icon=":material/download:")

st.subheader("Where each number comes from")
for card in overview["cards"]:
    with st.expander(f"{card['title']}: {card['value']} ({card['counts']})", icon=card["icon"]):
        st.caption(f"How it is computed: {card['how']}")
        if not card["per_partner"]:
            st.caption("Not per partner: decided before a partner is chosen, so this counts every partner.")
        if card["detail"]:
            st.caption(card["detail"])
        rows = mx.drill(card["key"], start, end, partner)
        st.markdown(f"**{mx.DRILL_TITLES[card['key']]}**")
        if rows.empty:
            st.caption("None in this range.")
        else:
            st.dataframe(rows, hide_index=True, key=f"{PAGE}.drill.{card['key']}")

st.subheader("Trends")
pick, grain = st.columns([2, 1])
key = pick.selectbox("Metric", mx.trend_choices(), format_func=mx.metric_title, key=f"{PAGE}.trend")
per = grain.radio("Per", ["hour", "day"], index=1, horizontal=True, key=f"{PAGE}.grain")
st.plotly_chart(mx.trend_figure(key, per, start, end, partner), key=f"{PAGE}.trend_chart")

st.subheader("Stage latency")
st.caption("How long orders stay in each status (minutes), from one status event on the timeline to the next; "
           "a stay still going counts up to now. p95 is held against the stage deadline in the settings.")
st.dataframe(mx.stage_latency(start, end, partner), hide_index=True, key=f"{PAGE}.stages")
with st.expander("The longest stays"):
    st.dataframe(mx.slowest_stays(start, end, partner), hide_index=True, key=f"{PAGE}.slowest")
st.caption("Queue lag per stage queue (seconds the oldest waiting message had waited, per sample):")
st.dataframe(mx.queue_lag(start, end), hide_index=True, key=f"{PAGE}.queues")

st.subheader("Partner scorecards")
st.caption("Volume: jobs handed to the partner. Defects by reason code; reprints are charged to the partner "
           "that printed the failed unit, at the variant's base cost from the catalogue.")
cards = mx.scorecards(start, end, partner)
st.dataframe(cards, hide_index=True, key=f"{PAGE}.scorecards")
st.download_button("Download the scorecards (CSV)", mx.csv_bytes(cards), key=f"{PAGE}.scorecards_csv",
                   file_name=f"partner_scorecards_{start}_{end}.csv", mime="text/csv", icon=":material/download:")
with st.expander("The reprints behind the cost"):
    st.dataframe(mx.reprints(start, end, partner), hide_index=True, key=f"{PAGE}.reprints")
