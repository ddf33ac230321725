//! Client idempotency keys: which `event_id`s the agent made durable recently, and
//! under which event seq. Sans-IO: time is a parameter.
//!
//! An id is remembered until `expires_us` (receive time + window, or agent start +
//! window for ids recovered from the spool). The spool keeps the segments holding
//! these events for the same window, so a crash does not forget them.

use std::collections::{HashMap, VecDeque};

pub struct IdWindow {
    window_us: i64,
    seqs: HashMap<String, (u64, i64)>,
    /// (expires_us, id) in insertion order; expiry times only grow per insert.
    order: VecDeque<(i64, String)>,
}

impl IdWindow {
    pub fn new(window_us: i64) -> IdWindow {
        IdWindow {
            window_us,
            seqs: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.window_us > 0
    }

    /// The seq `id` was stored under, if it is still within the window.
    pub fn get(&mut self, id: &str, now_us: i64) -> Option<u64> {
        self.expire(now_us);
        self.seqs.get(id).map(|(seq, _)| *seq)
    }

    /// Remembers `id` → `seq` until `since_us` + window.
    pub fn insert(&mut self, id: String, seq: u64, since_us: i64) {
        if !self.is_on() {
            return;
        }
        let expires = since_us + self.window_us;
        self.order.push_back((expires, id.clone()));
        self.seqs.insert(id, (seq, expires));
    }

    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    fn expire(&mut self, now_us: i64) {
        while let Some((expires, _)) = self.order.front() {
            if *expires > now_us {
                break;
            }
            let (expires, id) = self.order.pop_front().expect("front exists");
            // Only forget the id if this entry is its latest (it was not re-inserted).
            if self.seqs.get(&id).is_some_and(|(_, e)| *e == expires) {
                self.seqs.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remembered_for_the_window_only() {
        let mut w = IdWindow::new(1_000);
        w.insert("a".into(), 7, 0);
        assert_eq!(w.get("a", 999), Some(7));
        assert_eq!(w.get("b", 999), None);
        assert_eq!(w.get("a", 1_000), None);
        assert!(w.is_empty());
        let mut off = IdWindow::new(0);
        off.insert("a".into(), 1, 0);
        assert_eq!(off.get("a", 0), None);
    }
}
