//! The auditor's HTTP face: the dashboard (server-rendered HTML, a few lines of JS),
//! the JSON API behind it and the Prometheus metrics. Everything is rendered from a
//! snapshot of `auditor::Shared` per request.
//!
//! Routes: `/` (grid of types × hours: what is missing), `/hour/<type>/<hour number>`
//! (a cell's detail: which hosts and batch seqs are missing), `/hosts` (last seen,
//! spool age, missing per host), `/timeliness` (per type, the last 48 hours' delivery
//! latency against the tier's deadline, and lateness), `/api/hours`,
//! `/api/hour/<type>/<hour number>`, `/api/hosts`, `/metrics`.
//!
//! Pages are plain HTML and inline SVG, no CDN. Times are written in UTC and shown in
//! the viewer's time zone by a few lines of JS (`<time data-ms>`).

mod detail;
mod grid;
mod hosts;
mod timeliness;

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use evd_schemas::Hour;

use crate::audit::HourReport;
use crate::audit::histogram::{BOUNDS_S, Histogram};
use crate::auditor::Shared;
use crate::http::Response;

/// The auditor's HTTP server: `/metrics`, `/healthz`, `/readyz` (ready once the
/// audit topic is caught up) and the pages of [`route`].
pub fn router(shared: Arc<Shared>) -> axum::Router {
    let (for_metrics, for_ready, for_pages) = (shared.clone(), shared.clone(), shared);
    crate::http::with_pages(
        crate::http::role_router(
            Arc::new(move || crate::auditor_metrics::render(&for_metrics)),
            Arc::new(move || {
                if for_ready.audit_caught_up.load(Ordering::Relaxed) {
                    Ok(())
                } else {
                    Err("reading the audit topic up to its end as of start-up".into())
                }
            }),
        ),
        move |path| route(&for_pages, path),
    )
}

pub fn route(shared: &Arc<Shared>, path: &str) -> Response {
    let path = path.split('?').next().unwrap_or("/");
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [""] => Response::ok(HTML, grid::page_html(shared)),
        ["hosts"] => Response::ok(HTML, hosts::page_html(shared)),
        ["timeliness"] => Response::ok(HTML, timeliness::page_html(shared)),
        ["hour", ty, hour] => match cell(shared, ty, hour) {
            Ok(r) => Response::ok(HTML, detail::page_html(&r)),
            Err(refusal) => refusal,
        },
        ["api", "hours"] => Response::ok(JSON, json(&reports(shared))),
        ["api", "hosts"] => Response::ok(JSON, json(&shared.state().hosts())),
        ["api", "hour", ty, hour] => match cell(shared, ty, hour) {
            Ok(r) => Response::ok(JSON, json(&r)),
            Err(refusal) => refusal,
        },
        _ => Response::not_found(),
    }
}

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("reports serialize")
}

/// Every type × the window's active hours, newest first.
pub fn reports(shared: &Shared) -> Vec<HourReport> {
    let now = shared.clock.now_ms();
    shared
        .state()
        .reports(now, &shared.policy, shared.window_hours)
}

/// One cell's report; 400 for an hour that is not one (past 9999 or unparsable), 404
/// for a type the registry does not know.
fn cell(shared: &Shared, ty: &str, hour: &str) -> Result<HourReport, Response> {
    let hour = Hour::parse(hour).ok_or_else(|| {
        Response::bad_request(format!(
            "hour must be an hour number up to {} or YYYY-MM-DDTHH up to {}\n",
            Hour::MAX.0,
            Hour::MAX
        ))
    })?;
    let state = shared.state();
    if !state.types().any(|(t, _)| t == ty) {
        return Err(Response::not_found());
    }
    Ok(state.report(ty, hour, shared.clock.now_ms(), &shared.policy))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 6px;text-align:right}
th{background:#f4f4f4}td.name{text-align:left;font-weight:600}
td.cell{min-width:3.5em;text-align:center;cursor:pointer}td.cell a{color:inherit;text-decoration:none;display:block}
.st-complete{background:#4caf50;color:#fff}.st-open{background:#cfe8fc}.st-late{background:#ffb74d}
.st-incomplete{background:#e53935;color:#fff}.st-unverified{background:#fb8c00;color:#fff}.st-quarantine{background:#9575cd;color:#fff}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px}nav a{margin-right:1em}
.bar{background:#64b5f6;height:12px;display:inline-block}
</style>";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{}</title>{STYLE}</head><body>\
         <nav><a href=\"/\">hours</a><a href=\"/hosts\">hosts</a><a href=\"/timeliness\">timeliness</a>\
         <a href=\"/api/hours\">/api/hours</a><a href=\"/metrics\">/metrics</a>\
         <span id=tz></span></nav><h1>{}</h1>{body}{LOCAL_TIMES}</body></html>",
        esc(title),
        esc(title)
    )
}

/// Rewrites every `<time data-ms>` in the viewer's time zone (the UTC text stays as
/// the tooltip and for readers without JS) and names the zone in the nav bar.
const LOCAL_TIMES: &str = "<script>(()=>{\
const day=new Intl.DateTimeFormat(undefined,{weekday:'short',day:'numeric',month:'short'});\
const hm=new Intl.DateTimeFormat(undefined,{hour:'2-digit',minute:'2-digit'});\
document.querySelectorAll('time[data-ms]').forEach(t=>{const d=new Date(+t.dataset.ms);\
t.title=t.textContent;t.textContent=(t.dataset.short?'':day.format(d)+' ')+hm.format(d);});\
document.getElementById('tz').textContent='times in '+Intl.DateTimeFormat().resolvedOptions().timeZone;\
})();</script>";

/// A point in time: UTC text, shown local by [`LOCAL_TIMES`].
fn time(ms: i64) -> String {
    let hour = Hour::from_unix_ms(ms.max(0));
    let minute = (ms.max(0) % 3_600_000) / 60_000;
    let utc = format!("{}T{:02}:{minute:02}Z", hour.date(), hour.hour_of_day());
    format!("<time datetime=\"{utc}\" data-ms=\"{ms}\">{utc}</time>")
}

/// An hour's start as a column header: the local time of day only.
fn hour_header(hour: Hour) -> String {
    format!(
        "<time data-short=1 data-ms=\"{}\">{} UTC</time>",
        hour.start_ms(),
        esc(&hour.to_string())
    )
}

/// How long ago, in the largest unit that fits.
fn ago(now_ms: i64, then_ms: i64) -> String {
    let s = (now_ms - then_ms).max(0) / 1000;
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        7200..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// A histogram as a table of bars, one row per bucket.
fn histogram_table(title: &str, h: &Histogram) -> String {
    let mut out = format!("<h2>{}</h2><table>", esc(title));
    let max = h.counts.iter().copied().max().unwrap_or(0).max(1);
    for (i, c) in h.counts.iter().enumerate() {
        let le = BOUNDS_S
            .get(i)
            .map_or("+Inf".into(), |b| format!("≤ {}", seconds(*b)));
        let _ = write!(
            out,
            "<tr><td>{le}</td><td>{c}</td><td style=text-align:left><span class=bar style=width:{}px></span></td></tr>",
            c * 300 / max
        );
    }
    out.push_str("</table>");
    out
}

/// Seconds as people say them: `45 s`, `15 min`, `2 h`.
fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s} s")
    } else if s < 3600.0 {
        format!("{} min", s / 60.0)
    } else {
        format!("{} h", s / 3600.0)
    }
}
