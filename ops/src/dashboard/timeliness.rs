//! `/timeliness`: per event type, the last 48 hours as bars of the 99th percentile
//! of delivery latency (receive → committed in Parquet), against the line of the
//! tier's closing deadline (its SLO); and the lateness (receive − service ts) of
//! those hours together.

use std::fmt::Write;

use evd_schemas::Hour;

use super::{esc, histogram_table, page, seconds};
use crate::audit::histogram::Histogram;
use crate::auditor::Shared;

/// Hours shown, ending with the current one.
pub const HOURS: u32 = 48;

const BAR_W: f64 = 12.0;
const CHART_H: f64 = 110.0;
const LEFT: f64 = 44.0;
/// Room above the chart for the top axis label.
const TOP: f64 = 8.0;
/// The y axis is logarithmic from 1 s to a day.
const Y_MAX_S: f64 = 86_400.0;

fn y(seconds: f64) -> f64 {
    let s = seconds.clamp(1.0, Y_MAX_S);
    TOP + CHART_H - s.log10() / Y_MAX_S.log10() * CHART_H
}

/// One type's chart: a bar per hour with data (red above the deadline), the
/// deadline as a dashed line, axis marks at 1 min, 1 h and 1 day.
fn chart(bars: &[(Hour, Option<f64>, u64)], deadline_s: f64) -> String {
    let width = LEFT + BAR_W * f64::from(HOURS) + 4.0;
    let mut svg = format!(
        "<svg class=chart width={width} height={} role=img>",
        TOP + CHART_H + 16.0
    );
    for (label, s) in [
        ("1 s", 1.0),
        ("1 min", 60.0),
        ("1 h", 3600.0),
        ("1 d", Y_MAX_S),
    ] {
        let _ = write!(
            svg,
            "<line x1={LEFT} x2={width} y1={yy} y2={yy} stroke=#eee /><text x=0 y={ty} font-size=10>{label}</text>",
            yy = y(s),
            ty = y(s) + 4.0
        );
    }
    for (i, (hour, p99, events)) in bars.iter().enumerate() {
        let x = LEFT + BAR_W * i as f64;
        if let Some(p99) = p99 {
            let top = y(*p99);
            let over = *p99 > deadline_s;
            let _ = write!(
                svg,
                "<rect class={cls} x={x} y={top} width={w} height={h} fill={fill}>\
                 <title>{hour} UTC: p99 ≤ {p}, {events} events</title></rect>",
                cls = if over { "over" } else { "within" },
                w = BAR_W - 2.0,
                h = TOP + CHART_H - top,
                fill = if over { "#e53935" } else { "#4caf50" },
                p = if p99.is_finite() {
                    seconds(*p99)
                } else {
                    "∞".into()
                },
            );
        }
        if hour.hour_of_day() % 6 == 0 {
            let _ = write!(
                svg,
                "<text x={x} y={} font-size=9>{:02}</text>",
                TOP + CHART_H + 12.0,
                hour.hour_of_day()
            );
        }
    }
    let _ = write!(
        svg,
        "<line class=slo x1={LEFT} x2={width} y1={yy} y2={yy} stroke=#333 stroke-dasharray=4 />\
         <text x={tx} y={ty} font-size=10>deadline {}</text></svg>",
        seconds(deadline_s),
        yy = y(deadline_s),
        tx = LEFT + 4.0,
        ty = y(deadline_s) - 3.0
    );
    svg
}

pub(super) fn page_html(shared: &Shared) -> String {
    let now = shared.clock.now_ms();
    let last = Hour::from_unix_ms(now).0;
    let hours: Vec<Hour> = (last.saturating_sub(HOURS - 1)..=last).map(Hour).collect();
    let state = shared.state();
    let mut body = format!(
        "<p>Bars: the 99th percentile of delivery latency (event received by the agent → \
         row committed in Parquet) of each of the last {HOURS} hours (hour of day in UTC \
         under the bars; hover for the hour); red when above the tier's closing deadline, \
         the dashed line. Axis: logarithmic.</p>"
    );
    for (ty, tier) in state.types() {
        let deadline_s = shared.policy.deadline_ms(tier) as f64 / 1000.0;
        let mut lateness = Histogram::default();
        let bars: Vec<(Hour, Option<f64>, u64)> = hours
            .iter()
            .map(|h| {
                let r = state.report(ty, *h, now, &shared.policy);
                lateness.merge(&r.lateness);
                let p99 = r.delivery_latency.quantile_bound_s(0.99);
                (*h, p99, r.delivery_latency.count)
            })
            .collect();
        let with_data = bars.iter().filter(|b| b.1.is_some()).count();
        let within = bars
            .iter()
            .filter(|b| b.1.is_some_and(|p| p <= deadline_s))
            .count();
        let _ = write!(
            body,
            "<section class=type data-type=\"{t}\" data-within=\"{within}\" data-hours=\"{with_data}\">\
             <h2>{t} <small>tier {tier}: {within} of {with_data} hours within the deadline</small></h2>{}\
             <details><summary>lateness, last {HOURS} hours</summary>{}</details></section>",
            chart(&bars, deadline_s),
            histogram_table("lateness (receive time − service ts)", &lateness),
            t = esc(ty),
            tier = tier.as_str(),
        );
    }
    page("evd — timeliness, last 48 hours", &body)
}
