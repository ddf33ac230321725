//! `/`: every event type × the window's hours. A cell says what is missing
//! (published − delivered − quarantined), colored by the hour's state; a click opens
//! the hour's detail, which names the hosts and batch seqs.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{esc, hour_header, page};
use crate::audit::HourReport;
use crate::auditor::Shared;

/// The cell's text and tooltip: what is missing, or ✓.
pub(super) fn cell_text(r: &HourReport) -> (String, String) {
    let tooltip = format!(
        "{}: {} published, {} delivered, {} quarantined, {} missing",
        r.state.as_str(),
        r.published,
        r.delivered,
        r.quarantined,
        r.missing
    );
    let text = if r.missing > 0 {
        format!("−{}", r.missing)
    } else if r.quarantined > 0 {
        format!("✓ ({} quar.)", r.quarantined)
    } else if r.published == 0 {
        "·".to_string()
    } else {
        "✓".to_string()
    };
    (text, tooltip)
}

pub(super) fn page_html(shared: &Shared) -> String {
    let now = shared.clock.now_ms();
    let state = shared.state();
    let mut hours = state.active_hours(shared.window_hours);
    hours.reverse();
    let mut body = String::new();
    body.push_str(
        "<p class=legend><span class=st-complete>closed complete</span><span class=st-open>open, on time</span>\
         <span class=st-late>late</span><span class=st-incomplete>incomplete: data loss</span><span class=st-unverified>unverified: hosts never reported</span>\
         <span class=st-quarantine>quarantine</span> A cell shows the events <b>missing</b> \
         (published − delivered − quarantined), or ✓ when none is; click it for the hosts and batches.</p>",
    );
    if hours.is_empty() {
        body.push_str("<p id=empty>No agent has reported yet.</p>");
    }
    body.push_str("<table id=grid><tr><th>event type</th><th>tier</th>");
    for h in &hours {
        let _ = write!(body, "<th>{}</th>", hour_header(*h));
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
            let (text, tooltip) = cell_text(&r);
            let _ = write!(
                body,
                "<td class=\"cell st-{st}\" data-type=\"{t}\" data-hour=\"{hn}\" data-state=\"{st}\" \
                 data-missing=\"{m}\" title=\"{tip}\"><a href=\"/hour/{t}/{hn}\">{text}</a></td>",
                st = r.state.as_str(),
                t = esc(ty),
                hn = h.0,
                m = r.missing,
                tip = esc(&tooltip),
            );
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        "<p>{} files scanned, {} hours closed, {} quarantined batches. Refreshes every 30 s.</p>\
         <script>document.querySelectorAll('td.cell').forEach(td=>td.addEventListener('click',()=>\
         location.href=td.querySelector('a').getAttribute('href')));\
         setTimeout(()=>location.reload(),30000);</script>",
        shared.files_scanned.load(Ordering::Relaxed),
        shared.hours_closed.load(Ordering::Relaxed),
        shared.quarantined_batches.load(Ordering::Relaxed)
    );
    page("evd — what is missing, by event type and hour", &body)
}
