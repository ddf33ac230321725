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

use crate::audit::{CellState, HourReport, histogram::BOUNDS_S};
use crate::auditor::Shared;
use crate::http::Response;

/// The auditor's HTTP server: `/metrics`, `/healthz`, `/readyz` (ready once the
/// audit topic is caught up) and the pages of [`route`].
pub fn router(shared: Arc<Shared>) -> axum::Router {
    let (for_metrics, for_ready, for_pages) = (shared.clone(), shared.clone(), shared);
    crate::http::with_pages(
        crate::http::role_router(
            Arc::new(move || metrics(&for_metrics)),
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

/// Prometheus text. Labels are event type and tier; per-host labels appear only on the
/// lost-events gauge, where on-call needs the host.
pub fn metrics(shared: &Shared) -> String {
    let now = shared.clock.now_ms();
    let reports = reports(shared);
    let state = shared.state();
    let mut out = String::new();
    let counters = [
        ("evd_ops_files_scanned_total", &shared.files_scanned),
        ("evd_ops_rows_scanned_total", &shared.rows_scanned),
        ("evd_ops_hours_closed_total", &shared.hours_closed),
        ("evd_ops_audit_records_total", &shared.audit_records),
        ("evd_ops_audit_undecodable_total", &shared.audit_undecodable),
        (
            "evd_ops_audit_unauthenticated_total",
            &shared.audit_unauthenticated,
        ),
        ("evd_ops_scan_errors_total", &shared.scan_errors),
        ("evd_ops_lock_recoveries_total", &shared.lock_recoveries),
        ("evd_ops_bad_objects_total", &shared.bad_objects),
    ];
    for (name, c) in counters {
        let _ = writeln!(
            out,
            "# TYPE {name} counter\n{name} {}",
            c.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# TYPE evd_ops_quarantined_batches gauge\nevd_ops_quarantined_batches {}",
        shared.quarantined_batches.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE evd_ops_audit_caught_up gauge\nevd_ops_audit_caught_up {}",
        u8::from(shared.audit_caught_up.load(Ordering::Relaxed))
    );
    for (ty, tier) in state.types() {
        let labels = format!("event_type=\"{ty}\",tier=\"{}\"", tier.as_str());
        let mine: Vec<&HourReport> = reports.iter().filter(|r| r.event_type == ty).collect();
        for st in [
            CellState::Open,
            CellState::Late,
            CellState::Complete,
            CellState::Quarantine,
            CellState::Incomplete,
            CellState::Unverified,
        ] {
            let n = mine.iter().filter(|r| r.state == st).count();
            let _ = writeln!(
                out,
                "evd_ops_hours{{{labels},state=\"{}\"}} {n}",
                st.as_str()
            );
        }
        let loss = mine.iter().filter(|r| r.open_loss()).count();
        let _ = writeln!(out, "evd_ops_open_loss_hours{{{labels}}} {loss}");
        let unverified = mine.iter().filter(|r| r.unverified()).count();
        let _ = writeln!(out, "evd_ops_unverified_hours{{{labels}}} {unverified}");
        for r in mine.iter().filter(|r| r.unverified()) {
            for agent in r.unreported_agents() {
                let _ = writeln!(
                    out,
                    "evd_ops_unreported_host_hours{{{labels},hour=\"{}\",agent_id=\"{}\"}} 1",
                    r.hour,
                    evd_schemas::metrics_text::label_value(&agent),
                );
            }
        }
        for r in mine.iter().filter(|r| r.open_loss()) {
            for a in r.agents.iter().filter(|a| a.missing > 0) {
                let _ = writeln!(
                    out,
                    "evd_ops_lost_events{{{labels},hour=\"{}\",agent_id=\"{}\",spool_id=\"{}\"}} {}",
                    r.hour,
                    evd_schemas::metrics_text::label_value(&a.agent_id),
                    a.spool_id,
                    a.missing
                );
            }
        }
        let quarantined: u64 = mine.iter().map(|r| r.quarantined).sum();
        let _ = writeln!(out, "evd_ops_quarantined_events{{{labels}}} {quarantined}");
        let oldest_unclosed = mine
            .iter()
            .filter(|r| !r.state.is_closed() && Hour(r.hour_number).end_ms() <= now)
            .map(|r| (now - Hour(r.hour_number).end_ms()) / 1000)
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "evd_ops_oldest_unclosed_hour_age_seconds{{{labels}}} {oldest_unclosed}"
        );
        if let Some(last) = mine.iter().find(|r| r.closed.is_some()) {
            let m = last.closed.as_ref().expect("filtered");
            let ratio = |n: u64| {
                if last.published == 0 {
                    1.0
                } else {
                    n as f64 / last.published as f64
                }
            };
            let timeliness =
                m.closed_at_ms.saturating_sub(Hour(m.hour_number).end_ms()) as f64 / 1000.0;
            let _ = writeln!(
                out,
                "evd_ops_completeness_ratio{{{labels}}} {}",
                ratio(last.delivered)
            );
            let _ = writeln!(out, "evd_ops_skew_ratio{{{labels}}} {}", ratio(last.skew));
            let _ = writeln!(out, "evd_ops_timeliness_seconds{{{labels}}} {timeliness}");
        }
        let (lateness, latency) = state.histograms(ty);
        lateness.render(&mut out, "evd_ops_lateness_seconds", &labels);
        latency.render(&mut out, "evd_ops_delivery_latency_seconds", &labels);
    }
    let _ = writeln!(
        out,
        "# HELP evd_ops_agent_concurrent_spools Spool incarnations of one agent id live at once (over 1: two hosts share the id, or a spool was copied)."
    );
    let _ = writeln!(out, "# TYPE evd_ops_agent_concurrent_spools gauge");
    let _ = writeln!(
        out,
        "# HELP evd_ops_agent_seq_regressions Heartbeats of one agent id whose batch seq went backwards (a spool restored from an old copy)."
    );
    let _ = writeln!(out, "# TYPE evd_ops_agent_seq_regressions gauge");
    for a in state.identity_alarms() {
        let id = evd_schemas::metrics_text::label_value(&a.agent_id);
        let _ = writeln!(
            out,
            "evd_ops_agent_concurrent_spools{{agent_id=\"{id}\"}} {}",
            a.concurrent_spools.len()
        );
        let _ = writeln!(
            out,
            "evd_ops_agent_seq_regressions{{agent_id=\"{id}\"}} {}",
            a.seq_regressions
        );
    }
    let hosts = state.hosts();
    let _ = writeln!(out, "evd_ops_hosts {}", hosts.len());
    // Per agent id, its newest incarnation (a re-created spool replaces the old one);
    // hosts silent past `host_retire_after_ms` are decommissioned and left out.
    let mut newest: std::collections::BTreeMap<&str, &crate::audit::HostReport> =
        std::collections::BTreeMap::new();
    for h in &hosts {
        let e = newest.entry(h.agent_id.as_str()).or_insert(h);
        if h.last_heartbeat_ms > e.last_heartbeat_ms {
            *e = h;
        }
    }
    let retire_before = now - shared.policy.host_retire_after_ms;
    let (live, retired): (Vec<&crate::audit::HostReport>, Vec<_>) = newest
        .values()
        .copied()
        .partition(|h| h.last_heartbeat_ms >= retire_before);
    let _ = writeln!(
        out,
        "# HELP evd_ops_hosts_retired Agent ids silent longer than host_retire_after_ms.\n\
         # TYPE evd_ops_hosts_retired gauge\nevd_ops_hosts_retired {}",
        retired.len()
    );
    type HostValue = fn(&crate::audit::HostReport, i64) -> i64;
    let per_host: [(&str, &str, HostValue); 3] = [
        (
            "evd_ops_host_heartbeat_age_seconds",
            "Seconds since the host's last heartbeat.",
            |h, now| (now - h.last_heartbeat_ms) / 1000,
        ),
        (
            "evd_ops_host_spool_bytes",
            "Bytes in the host's spool at its last heartbeat.",
            |h, _| h.spool_bytes as i64,
        ),
        (
            "evd_ops_host_oldest_unacked_age_seconds",
            "Age of the host's oldest unacked batch (0 = none).",
            |h, now| {
                if h.oldest_unacked_ms > 0 {
                    (now - h.oldest_unacked_ms) / 1000
                } else {
                    0
                }
            },
        ),
    ];
    for (name, help, value) in per_host {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for h in &live {
            let _ = writeln!(
                out,
                "{name}{{agent_id=\"{}\"}} {}",
                evd_schemas::metrics_text::label_value(&h.agent_id),
                value(h, now)
            );
        }
    }
    let _ = writeln!(
        out,
        "evd_ops_unacked_batches {}",
        hosts.iter().map(|h| h.unacked_batches).sum::<u64>()
    );
    out
}
