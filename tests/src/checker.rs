//! The oracle's checker: the Parquet output against the acked ids.
//!
//! - **lost**: acked, not in the output;
//! - **dup**: in the output more than once;
//! - **phantom**: in the output, never sent (ids at or above what the load handed out);
//! - **unlisted**: final files no committed manifest accounts for.
//!
//! For every lost id it finds where the id last was: still in an agent's spool, on a
//! cluster's event topics, in quarantine — or nowhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use evd_schemas::wire::batch;

use crate::agent_proc::test_master_keyring;
use crate::consumer_proc::{ParquetReadBack, files_not_in_manifests, read_back};
use crate::oracle::TestReader;

/// Where to look for lost ids.
#[derive(Default)]
pub struct Places {
    /// Agent spool directories.
    pub spools: Vec<PathBuf>,
    /// `(name, bootstrap)` of each cluster whose event topics to read.
    pub clusters: Vec<(String, String)>,
}

pub struct Verdict {
    pub acked: usize,
    pub rows: u64,
    pub lost: Vec<u64>,
    pub dup: Vec<u64>,
    pub phantom: Vec<u64>,
    pub unlisted: Vec<String>,
    /// Lost ids by where they were found last.
    pub lost_at: BTreeMap<String, Vec<u64>>,
    pub back: ParquetReadBack,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.dup.is_empty()
            && self.phantom.is_empty()
            && self.unlisted.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} acked, {} rows; lost {}, dup {}, phantom {}, unlisted files {}",
            self.acked,
            self.rows,
            self.lost.len(),
            self.dup.len(),
            self.phantom.len(),
            self.unlisted.len()
        );
        for (place, ids) in &self.lost_at {
            s.push_str(&format!(
                "\n  lost ids last seen {place}: {} (e.g. {:?})",
                ids.len(),
                &ids[..ids.len().min(5)]
            ));
        }
        if !self.dup.is_empty() {
            s.push_str(&format!(
                "\n  dup e.g. {:?}",
                &self.dup[..self.dup.len().min(5)]
            ));
        }
        s
    }
}

/// Reads the output of `out_dir` back (DuckDB) and judges it against `acked`.
pub fn check(out_dir: &Path, acked: &[u64], sent_below: Option<u64>, places: &Places) -> Verdict {
    let back = read_back(out_dir).expect("reading the output back");
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|id| !back.ids.contains_key(id))
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    let dup = back
        .ids
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let phantom = sent_below.map_or_else(Vec::new, |max| {
        back.ids.keys().copied().filter(|id| *id >= max).collect()
    });
    let unlisted = files_not_in_manifests(out_dir, &back.files).expect("reading manifests");
    let lost_at = if lost.is_empty() {
        BTreeMap::new()
    } else {
        locate(&lost, out_dir, places)
    };
    Verdict {
        acked: acked.len(),
        rows: back.ids.values().map(|&n| u64::from(n)).sum(),
        lost,
        dup,
        phantom,
        unlisted,
        lost_at,
        back,
    }
}

/// Where each of `lost` was last: the latest stage of the pipeline that still has it.
fn locate(lost: &[u64], out_dir: &Path, places: &Places) -> BTreeMap<String, Vec<u64>> {
    let mut at: BTreeMap<u64, String> = lost.iter().map(|&id| (id, "nowhere".into())).collect();
    let mut mark = |found: &BTreeSet<u64>, place: &str| {
        for id in found {
            if let Some(p) = at.get_mut(id) {
                *p = place.to_string();
            }
        }
    };
    for dir in &places.spools {
        mark(
            &ids_in_dir(dir, "seg"),
            &format!("in agent spool {}", dir.display()),
        );
    }
    for (name, bootstrap) in &places.clusters {
        match ids_on_cluster(bootstrap, lost) {
            Ok(found) => mark(&found, &format!("on the {name} cluster's event topics")),
            Err(e) => eprintln!("checker: reading {name}: {e}"),
        }
    }
    mark(
        &ids_in_dir(&out_dir.join("_quarantine"), ""),
        "in quarantine",
    );
    let mut by_place: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (id, place) in at {
        by_place.entry(place).or_default().push(id);
    }
    by_place
}

fn ids_on_cluster(bootstrap: &str, lost: &[u64]) -> Result<BTreeSet<u64>> {
    let mut reader = TestReader::new(bootstrap, test_master_keyring(), false)?;
    let missing: BTreeSet<u64> = reader
        .wait_for(lost, Duration::from_secs(20))
        .into_iter()
        .collect();
    Ok(lost
        .iter()
        .copied()
        .filter(|id| !missing.contains(id))
        .collect())
}

/// Ids in every file under `dir` (recursively) whose name ends with `ext`: event lines
/// in clear (spool event frames, schema quarantine) and sealed batches (opened).
fn ids_in_dir(dir: &Path, ext: &str) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return ids;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            ids.extend(ids_in_dir(&path, ext));
        } else if path.to_string_lossy().ends_with(ext)
            && let Ok(bytes) = std::fs::read(&path)
        {
            ids.extend(event_ids_in(&bytes));
            if let Ok(opened) = batch::open(&test_master_keyring(), &bytes) {
                for rec in opened.records() {
                    ids.extend(event_ids_in(rec.body));
                }
            }
        }
    }
    ids
}

/// Every `e<n>` that follows an `event_id` key in `bytes` (JSON, possibly escaped).
pub fn event_ids_in(bytes: &[u8]) -> Vec<u64> {
    const KEY: &[u8] = b"event_id";
    let mut ids = Vec::new();
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(KEY.len()).position(|w| w == KEY) {
        let mut j = i + pos + KEY.len();
        while j < bytes.len() && matches!(bytes[j], b'"' | b'\\' | b':' | b' ') {
            j += 1;
        }
        if bytes.get(j) == Some(&b'e') {
            let digits: Vec<u8> = bytes[j + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            if let Ok(id) = String::from_utf8_lossy(&digits).parse() {
                ids.push(id);
            }
        }
        i = j.max(i + pos + 1);
    }
    ids
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_ids_in_plain_and_escaped_json() {
        let text = br#"{"event_id":"e12","x":1} {\"event_id\":\"e7\"} event_id e"#;
        assert_eq!(super::event_ids_in(text), vec![12, 7]);
    }
}
