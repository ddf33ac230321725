//! Every object name of the commit protocol, relative to the output prefix. The
//! consumer writes these and the auditor reads them (`evd_ops::auditor`): both sides
//! take names from here and nowhere else. `commit` documents what each object means.
//!
//! ```text
//! <type>/date=YYYY-MM-DD/hour=HH/<flush_id>-<n>.parquet   data_file
//! <type>/date=YYYY-MM-DD/hour=HH/_CLOSED.json             closed_marker
//! closed-hours/<type>/date=YYYY-MM-DD/hour=HH/<type>-<YYYY-MM-DDTHH>.parquet
//!                                                          closed_hour_file
//! _evd/staging/<flush_id>/<n>.parquet                      staging_file
//! _evd/manifests/<flush_id>.json                           manifest
//! _evd/archive/manifests/<flush_id>.json                   archived_manifest
//! _evd/corrupt/manifests/<flush_id>.json                   corrupt_manifest
//! _evd/done/<flush_id>                                     done
//! _evd/pending/<flush_id>                                  pending
//! _evd/closing/<type>/<hour number>                        closing
//! _evd/ledger/<generation, 20 digits>.json                 ledger_snapshot
//! _evd/probe/<nonce>                                       probe (evd validate --connect)
//! _quarantine/schema/<flush_id>.jsonl                      quarantined_events
//! _quarantine/<reason>/[<agent>-<spool>-<seq>-]<digest>    quarantined_batch (+ .bin, .json)
//! ```

use evd_schemas::{Hour, Origin};

pub const STAGING_DIR: &str = "_evd/staging";
pub const MANIFESTS_DIR: &str = "_evd/manifests";
pub const ARCHIVED_MANIFESTS_DIR: &str = "_evd/archive/manifests";
pub const CORRUPT_MANIFESTS_DIR: &str = "_evd/corrupt/manifests";
pub const DONE_DIR: &str = "_evd/done";
pub const PENDING_DIR: &str = "_evd/pending";
pub const LEDGER_DIR: &str = "_evd/ledger";
pub const QUARANTINE_DIR: &str = "_quarantine";
/// The closed-hours table: one combined file per closed (type, hour). Its name has a
/// `-`, which no type name can have, so it never collides with a type's folder.
pub const CLOSED_HOURS_DIR: &str = "closed-hours";
/// The file name of an hour's closed marker.
pub const CLOSED_MARKER: &str = "_CLOSED.json";

/// An hour's folder: `<type>/date=YYYY-MM-DD/hour=HH`.
pub fn hour_dir(event_type: &str, hour: Hour) -> String {
    format!("{event_type}/{}", hour.partition_path())
}

/// The `n`th data file of a flush, in the hour it is committed to.
pub fn data_file(event_type: &str, hour: Hour, flush_id: &str, n: usize) -> String {
    format!("{}/{flush_id}-{n}.parquet", hour_dir(event_type, hour))
}

/// A data file's name moved to another hour (late data, `closing`).
pub fn moved_data_file(final_path: &str, event_type: &str, hour: Hour) -> String {
    let name = final_path.rsplit('/').next().unwrap_or_default();
    format!("{}/{name}", hour_dir(event_type, hour))
}

pub fn closed_marker(event_type: &str, hour: Hour) -> String {
    format!("{}/{CLOSED_MARKER}", hour_dir(event_type, hour))
}

/// The one file holding every row of a closed (type, hour), written by the auditor's
/// combiner from the files its closed marker lists.
pub fn closed_hour_file(event_type: &str, hour: Hour) -> String {
    format!(
        "{CLOSED_HOURS_DIR}/{}/{event_type}-{hour}.parquet",
        hour_dir(event_type, hour)
    )
}

/// The `n`th staged file of a flush (`name` is `<n>.parquet`).
pub fn staging_file(flush_id: &str, name: &str) -> String {
    format!("{STAGING_DIR}/{flush_id}/{name}")
}

pub fn manifest(flush_id: &str) -> String {
    format!("{MANIFESTS_DIR}/{flush_id}.json")
}

/// `file_name` is a manifest's file name (`<flush_id>.json`).
pub fn archived_manifest(file_name: &str) -> String {
    format!("{ARCHIVED_MANIFESTS_DIR}/{file_name}")
}

/// `file_name` is a manifest's file name (`<flush_id>.json`).
pub fn corrupt_manifest(file_name: &str) -> String {
    format!("{CORRUPT_MANIFESTS_DIR}/{file_name}")
}

pub fn done(flush_id: &str) -> String {
    format!("{DONE_DIR}/{flush_id}")
}

pub fn pending(flush_id: &str) -> String {
    format!("{PENDING_DIR}/{flush_id}")
}

/// The auditor's intent to close an hour.
pub fn closing(event_type: &str, hour: Hour) -> String {
    format!("_evd/closing/{event_type}/{}", hour.0)
}

pub fn ledger_snapshot(generation: u64) -> String {
    format!("{LEDGER_DIR}/{generation:020}.json")
}

pub fn probe(nonce: u64) -> String {
    format!("_evd/probe/{nonce:x}")
}

/// The events of one flush that failed validation, one JSON line each.
pub fn quarantined_events(flush_id: &str) -> String {
    format!("{QUARANTINE_DIR}/schema/{flush_id}.jsonl")
}

/// A whole batch kept for `reason` (without the `.bin` / `.json` suffix). `claimed` is
/// the agent, spool and seq its header claims, when it parses (unauthenticated).
pub fn quarantined_batch(reason: &str, claimed: Option<(&Origin, u64)>, digest: &str) -> String {
    match claimed {
        Some((origin, seq)) => format!(
            "{QUARANTINE_DIR}/{reason}/{}-{}-{seq}-{digest}",
            origin.agent_id, origin.spool_id
        ),
        None => format!("{QUARANTINE_DIR}/{reason}/{digest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evd_schemas::SpoolId;

    #[test]
    fn names_match_the_documented_layout() {
        let h = Hour(493_127);
        let dir = format!("PageView/{}", h.partition_path());
        assert_eq!(
            data_file("PageView", h, "c-1-000001", 2),
            format!("{dir}/c-1-000001-2.parquet")
        );
        assert_eq!(
            moved_data_file(&data_file("PageView", h, "f", 0), "PageView", h.next()),
            data_file("PageView", h.next(), "f", 0)
        );
        assert_eq!(closed_marker("PageView", h), format!("{dir}/_CLOSED.json"));
        assert_eq!(
            closed_hour_file("PageView", h),
            format!("closed-hours/{dir}/PageView-{h}.parquet")
        );
        assert_eq!(staging_file("f", "0.parquet"), "_evd/staging/f/0.parquet");
        assert_eq!(manifest("f"), "_evd/manifests/f.json");
        assert_eq!(archived_manifest("f.json"), "_evd/archive/manifests/f.json");
        assert_eq!(closing("PageView", h), "_evd/closing/PageView/493127");
        assert_eq!(ledger_snapshot(7), "_evd/ledger/00000000000000000007.json");
        let origin = Origin::new("host-a", SpoolId(0x10));
        assert_eq!(
            quarantined_batch("bad_tag", Some((&origin, 5)), "ab"),
            format!("_quarantine/bad_tag/host-a-{}-5-ab", SpoolId(0x10))
        );
        assert_eq!(
            quarantined_batch("malformed", None, "ab"),
            "_quarantine/malformed/ab"
        );
    }
}
