//! `/hour/<type>/<hour>`: one cell in full — the counts, every host with what it is
//! missing (batch seq ranges), the closed marker, lateness and delivery latency.

use std::fmt::Write;

use super::{esc, histogram_table, page, time};
use crate::audit::HourReport;

pub(super) fn page_html(r: &HourReport) -> String {
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
    body.push_str(
        "<h2>hosts</h2><table id=agents><tr><th>host</th><th>spool</th><th>published</th><th>delivered</th>\
         <th>quarantined</th><th>missing</th><th>missing batch seqs</th><th>reported</th></tr>",
    );
    let mut agents: Vec<_> = r.agents.iter().collect();
    // The hosts with something missing first: that is what on-call came for.
    agents.sort_by_key(|a| std::cmp::Reverse(a.missing));
    for a in agents {
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
            "<tr class={cls} data-agent=\"{id}\" data-missing-seqs=\"{seqs}\"><td class=name>{id}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{seqs}</td><td>{}</td></tr>",
            a.spool_id,
            a.published,
            a.delivered,
            a.quarantined,
            a.missing,
            if a.reported { "yes" } else { "no" },
            cls = if a.missing > 0 { "st-incomplete" } else { "ok" },
            id = esc(&a.agent_id),
            seqs = ranges.join(", "),
        );
    }
    body.push_str("</table>");
    if let Some(m) = &r.closed {
        let _ = write!(
            body,
            "<h2>closed</h2><p>at {} by {}; {} files:</p><ul>",
            time(m.closed_at_ms),
            esc(&m.closed_by),
            m.files.len()
        );
        for f in &m.files {
            let _ = write!(body, "<li>{} ({} bytes)</li>", esc(&f.path), f.bytes);
        }
        body.push_str("</ul>");
    }
    body.push_str(&histogram_table(
        "lateness (receive time − service ts)",
        &r.lateness,
    ));
    body.push_str(&histogram_table(
        "delivery latency (receive → committed)",
        &r.delivery_latency,
    ));
    page(&format!("{} {} UTC", r.event_type, r.hour), &body)
}
