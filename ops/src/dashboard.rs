//! The auditor's HTTP face: the dashboard (server-rendered HTML, a few lines of JS),
//! the JSON API behind it and the Prometheus metrics. Everything is rendered from a
//! snapshot of `auditor::Shared` per request.
//!
//! Routes: `/` (grid of types × hours), `/hour/<type>/<hour number>` (a cell's detail),
//! `/hosts`, `/api/hours`, `/api/hour/<type>/<hour number>`, `/api/hosts`, `/metrics`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use evd_schemas::Hour;

use crate::audit::{HourReport, histogram::BOUNDS_S};
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
        [""] => Response::ok(HTML, grid_page(shared)),
        ["hosts"] => Response::ok(HTML, hosts_page(shared)),
        ["hour", ty, hour] => match cell(shared, ty, hour) {
            Ok(r) => Response::ok(HTML, hour_page(&r)),
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
         <nav><a href=\"/\">hours</a><a href=\"/hosts\">hosts</a><a href=\"/api/hours\">/api/hours</a>\
         <a href=\"/metrics\">/metrics</a></nav><h1>{}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    )
}

fn grid_page(shared: &Shared) -> String {
    let now = shared.clock.now_ms();
    let state = shared.state();
    let mut hours = state.active_hours(shared.window_hours);
    hours.reverse();
    let mut body = String::new();
    let _ = write!(
        body,
        "<p class=legend><span class=st-complete>closed complete</span><span class=st-open>open, on time</span>\
         <span class=st-late>late</span><span class=st-incomplete>incomplete: data loss</span><span class=st-unverified>unverified: hosts never reported</span>\
         <span class=st-quarantine>quarantine</span> Cells show delivered / published events.</p>"
    );
    if hours.is_empty() {
        body.push_str("<p id=empty>No agent has reported yet.</p>");
    }
    body.push_str("<table id=grid><tr><th>event type</th><th>tier</th>");
    for h in &hours {
        let _ = write!(body, "<th>{}</th>", esc(&h.to_string()));
    }
    body.push_str("</tr>");
    for (ty, tier) in state.types() {
        let _ = write!(
            body,
            "<tr><td class=name>{}</td><td>{}</td>",
            esc(ty),
            tier.as_str()
        );
        for h in &hours {
            let r = state.report(ty, *h, now, &shared.policy);
            let _ = write!(
                body,
                "<td class=\"cell st-{st}\" data-type=\"{t}\" data-hour=\"{hn}\" data-state=\"{st}\" title=\"{st}\">\
                 <a href=\"/hour/{t}/{hn}\">{d}/{p}</a></td>",
                st = r.state.as_str(),
                t = esc(ty),
                hn = h.0,
                d = r.delivered,
                p = r.published
            );
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        "<p>{} files scanned, {} hours closed, {} quarantined batches. Refreshes every 5 s.</p>\
         <script>document.querySelectorAll('td.cell').forEach(td=>td.addEventListener('click',()=>\
         location.href=td.querySelector('a').getAttribute('href')));\
         setTimeout(()=>location.reload(),5000);</script>",
        shared.files_scanned.load(Ordering::Relaxed),
        shared.hours_closed.load(Ordering::Relaxed),
        shared.quarantined_batches.load(Ordering::Relaxed)
    );
    page("evd — completeness by event type and hour", &body)
}

fn hour_page(r: &HourReport) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<p id=state class=st-{st}>state: <b>{st}</b> (tier {tier})</p><table>\
         <tr><th>published</th><th>delivered</th><th>quarantined</th><th>missing</th><th>duplicates</th><th>skew (landed later)</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        r.published,
        r.delivered,
        r.quarantined,
        r.missing,
        r.duplicates,
        r.skew,
        st = r.state.as_str(),
        tier = r.tier
    );
    body.push_str("<h2>hosts</h2><table><tr><th>host</th><th>spool</th><th>published</th><th>delivered</th><th>quarantined</th><th>missing</th><th>missing batch seqs</th><th>reported</th></tr>");
    for a in &r.agents {
        let ranges: Vec<String> = a
            .missing_batch_seqs
            .iter()
            .map(|(x, y)| {
                if x == y {
                    x.to_string()
                } else {
                    format!("{x}–{y}")
                }
            })
            .collect();
        let _ = write!(
            body,
            "<tr><td class=name>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.agent_id),
            a.spool_id,
            a.published,
            a.delivered,
            a.quarantined,
            a.missing,
            ranges.join(", "),
            if a.reported { "yes" } else { "no" }
        );
    }
    body.push_str("</table>");
    if let Some(m) = &r.closed {
        let _ = write!(
            body,
            "<h2>closed</h2><p>at {} ms by {}; {} files:</p><ul>",
            m.closed_at_ms,
            esc(&m.closed_by),
            m.files.len()
        );
        for f in &m.files {
            let _ = write!(body, "<li>{} ({} bytes)</li>", esc(&f.path), f.bytes);
        }
        body.push_str("</ul>");
    }
    for (title, h) in [
        ("lateness (receive time − service ts)", &r.lateness),
        (
            "delivery latency (receive → committed)",
            &r.delivery_latency,
        ),
    ] {
        let _ = write!(body, "<h2>{title}</h2><table>");
        let max = h.counts.iter().copied().max().unwrap_or(0).max(1);
        for (i, c) in h.counts.iter().enumerate() {
            let le = BOUNDS_S
                .get(i)
                .map_or("+Inf".into(), |b| format!("≤ {b} s"));
            let _ = write!(
                body,
                "<tr><td>{le}</td><td>{c}</td><td style=text-align:left><span class=bar style=width:{}px></span></td></tr>",
                c * 300 / max
            );
        }
        body.push_str("</table>");
    }
    page(&format!("{} {}", r.event_type, r.hour), &body)
}

fn hosts_page(shared: &Shared) -> String {
    let now = shared.clock.now_ms();
    let mut body = String::from(
        "<table id=hosts><tr><th>host</th><th>spool</th><th>last heartbeat</th><th>spool bytes</th><th>unacked batches</th>\
         <th>oldest unacked</th><th>next batch seq</th><th>reported before</th><th>batches announced</th></tr>",
    );
    for h in shared.state().hosts() {
        let oldest = if h.oldest_unacked_ms > 0 {
            format!("{} s ago", (now - h.oldest_unacked_ms) / 1000)
        } else {
            "—".into()
        };
        let _ = write!(
            body,
            "<tr><td class=name>{}</td><td>{}</td><td>{} s ago</td><td>{}</td><td>{}</td><td>{oldest}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.agent_id),
            h.spool_id,
            (now - h.last_heartbeat_ms) / 1000,
            h.spool_bytes,
            h.unacked_batches,
            h.next_batch_seq,
            h.reported_before,
            h.batches_announced
        );
    }
    body.push_str("</table>");
    page("evd — hosts", &body)
}
