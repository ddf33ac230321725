//! `/hosts`: every agent incarnation — when it was last seen, how old its spool's
//! oldest unacked batch is, and what it is missing over the window, with links to
//! the cells.

use std::collections::BTreeMap;
use std::fmt::Write;

use evd_schemas::SpoolId;

use super::{ago, esc, page, time};
use crate::auditor::Shared;

/// One cell a host is missing events in.
struct Gap {
    event_type: String,
    hour_number: u32,
    hour: String,
    missing: u64,
}

pub(super) fn page_html(shared: &Shared) -> String {
    let now = shared.clock.now_ms();
    let state = shared.state();
    // (host, spool) → the cells it is missing events in, over the window.
    let mut missing: BTreeMap<(String, SpoolId), Vec<Gap>> = BTreeMap::new();
    for r in state.reports(now, &shared.policy, shared.window_hours) {
        for a in r.agents.iter().filter(|a| a.missing > 0) {
            missing
                .entry((a.agent_id.clone(), a.spool_id))
                .or_default()
                .push(Gap {
                    event_type: r.event_type.clone(),
                    hour_number: r.hour_number,
                    hour: r.hour.clone(),
                    missing: a.missing,
                });
        }
    }
    let mut body = String::from(
        "<table id=hosts><tr><th>host</th><th>spool</th><th>last seen</th><th>spool bytes</th>\
         <th>unacked batches</th><th>oldest unacked (spool age)</th><th>missing (window)</th>\
         <th>where</th><th>next batch seq</th><th>reported before</th></tr>",
    );
    for h in state.hosts() {
        let spool_age = if h.oldest_unacked_ms > 0 {
            ago(now, h.oldest_unacked_ms).replace(" ago", "")
        } else {
            "—".into()
        };
        let gaps = missing
            .get(&(h.agent_id.clone(), h.spool_id))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let total: u64 = gaps.iter().map(|g| g.missing).sum();
        let links: Vec<String> = gaps
            .iter()
            .map(|g| {
                format!(
                    "<a href=\"/hour/{t}/{hn}\">{t} {h}: {n}</a>",
                    t = esc(&g.event_type),
                    hn = g.hour_number,
                    h = esc(&g.hour),
                    n = g.missing
                )
            })
            .collect();
        let _ = write!(
            body,
            "<tr class={cls} data-agent=\"{id}\"><td class=name>{id}</td><td>{}</td><td>{} ({})</td>\
             <td>{}</td><td>{}</td><td>{spool_age}</td><td>{total}</td><td style=text-align:left>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            h.spool_id,
            time(h.last_heartbeat_ms),
            ago(now, h.last_heartbeat_ms),
            h.spool_bytes,
            h.unacked_batches,
            links.join("<br>"),
            h.next_batch_seq,
            esc(&h.reported_before),
            cls = if total > 0 { "st-incomplete" } else { "ok" },
            id = esc(&h.agent_id),
        );
    }
    body.push_str("</table>");
    page("evd — hosts", &body)
}
