//! The auditor's per-batch state, kept small: the batches not settled yet (`settle`)
//! can be millions at internet scale while consumers lag (`docs/capacity.md`), so keys
//! share their incarnation and a batch's rows take no allocation of their own in the
//! usual case.

use std::collections::HashSet;
use std::sync::Arc;

use evd_schemas::{Hour, Origin};

/// An agent incarnation, shared by every per-batch key that names it: one allocation
/// per incarnation, not one per batch (`origins` interns them).
pub(super) type OriginRef = Arc<Origin>;

/// The interned copy of `origin` (created on first sight).
pub(super) fn intern(origins: &mut HashSet<OriginRef>, origin: &Origin) -> OriginRef {
    if let Some(known) = origins.get(origin) {
        return known.clone();
    }
    let new = Arc::new(origin.clone());
    origins.insert(new.clone());
    new
}

/// A batch's rows per folder hour. Nearly every batch lands in one folder, so that
/// case takes no allocation of its own; `Many` stays sorted by hour.
#[derive(Debug, Clone)]
pub(super) enum Landed {
    One((Hour, u64)),
    Many(Vec<(Hour, u64)>),
}

impl Landed {
    pub(super) fn add(&mut self, hour: Hour, rows: u64) {
        match self {
            Landed::One((h, n)) if *h == hour => *n += rows,
            Landed::One(first) => {
                let mut all = vec![*first, (hour, rows)];
                all.sort_unstable_by_key(|(h, _)| *h);
                *self = Landed::Many(all);
            }
            Landed::Many(all) => match all.binary_search_by_key(&hour, |(h, _)| *h) {
                Ok(i) => all[i].1 += rows,
                Err(i) => all.insert(i, (hour, rows)),
            },
        }
    }

    /// (folder hour, rows), by hour.
    pub(super) fn per_hour(&self) -> &[(Hour, u64)] {
        match self {
            Landed::One(one) => std::slice::from_ref(one),
            Landed::Many(all) => all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_add_up_per_folder_hour_in_hour_order() {
        let mut landed = Landed::One((Hour(5), 10));
        landed.add(Hour(5), 1);
        assert_eq!(landed.per_hour(), &[(Hour(5), 11)]);
        landed.add(Hour(3), 2);
        landed.add(Hour(4), 3);
        landed.add(Hour(3), 4);
        assert_eq!(
            landed.per_hour(),
            &[(Hour(3), 6), (Hour(4), 3), (Hour(5), 11)]
        );
    }

    #[test]
    fn an_incarnation_is_interned_once() {
        let mut origins = HashSet::new();
        let a = intern(
            &mut origins,
            &Origin::new("host-a", evd_schemas::SpoolId(1)),
        );
        let b = intern(
            &mut origins,
            &Origin::new("host-a", evd_schemas::SpoolId(1)),
        );
        let c = intern(
            &mut origins,
            &Origin::new("host-a", evd_schemas::SpoolId(2)),
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(origins.len(), 2);
    }
}
