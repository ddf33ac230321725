//! The closed-hours table (`[combine]` in the auditor's config): once an hour is
//! closed, its files are combined into one, so readers of closed hours open one file
//! per (type, hour) instead of one per consumer flush.
//!
//! - `queue`: the pure core, which hours still need combining and when to retry;
//! - `hour`: combining one hour (reads the consumers' files, one atomic put);
//! - `schema`: the one schema an hour's files fit (optional columns added within a
//!   version), pure;
//! - [`run`]: the loop, beside the auditor's scan, every `scan_interval_ms`.
//!
//! Readers never see a duplicate or a partial hour in either table: the consumers'
//! files are not touched, and a combined file appears whole, after its hour's
//! marker (whose `files` it holds, in order), and never changes.

pub mod hour;
pub mod queue;
pub mod schema;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use evd_consumer::commit::Output;
use evd_runtime::error_chain;

use crate::auditor::Shared;
use crate::config::OpsConfig;
use hour::{Outcome, combine_hour};
use queue::{CombineQueue, Job};

/// Combines closed hours until `stop`.
pub async fn run(
    config: &OpsConfig,
    output: &Output,
    shared: Arc<Shared>,
    stop: evd_runtime::Stop,
) {
    let mut queue = CombineQueue::default();
    let mut tick = tokio::time::interval(Duration::from_millis(config.scan_interval_ms));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        offer_closed_hours(&shared, &mut queue);
        while let Some(job) = queue.due(shared.clock.now_ms()).cloned() {
            let outcome = tokio::select! {
                outcome = combine_hour(output, &job, &config.combine) => outcome,
                _ = stop.cancelled() => return,
            };
            record(&shared, &mut queue, &job, outcome);
        }
    }
}

/// Offers every closed hour of the window the queue does not know yet.
fn offer_closed_hours(shared: &Shared, queue: &mut CombineQueue) {
    queue.prune(shared.window_floor());
    let state = shared.state();
    for marker in state.closed_markers() {
        let hour = evd_schemas::Hour(marker.hour_number);
        if !queue.knows(&marker.event_type, hour) {
            queue.offer(Job {
                event_type: marker.event_type.clone(),
                hour,
                state: marker.state,
                files: marker.files.clone(),
            });
        }
    }
}

fn record(
    shared: &Shared,
    queue: &mut CombineQueue,
    job: &Job,
    outcome: Result<Outcome, crate::auditor::OpsError>,
) {
    let (ty, hour) = (&job.event_type, job.hour);
    match outcome {
        Ok(Outcome::Written { files, rows, bytes }) => {
            tracing::info!("combined {ty} {hour}: {files} files, {rows} rows, {bytes} bytes");
            shared.hours_combined.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Outcome::AlreadyThere | Outcome::Empty) => {}
        Ok(Outcome::NotCombinable(why)) => {
            tracing::warn!("not combining {ty} {hour}: {why}; its files stay the only copy");
            shared.hours_not_combined.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::warn!(
                "combining {ty} {hour}: {} (retrying later)",
                error_chain(&e)
            );
            shared.combine_errors.fetch_add(1, Ordering::Relaxed);
            queue.failed(ty, hour, shared.clock.now_ms());
            return;
        }
    }
    queue.finished(ty, hour);
}
