//! Wake-ups for the tailer: inotify (through `notify`) on the directories its
//! patterns name, so a new line is read as soon as it is written instead of at the
//! next poll. Polling stays the source of truth: a wake-up only ends a poll interval
//! early; a missed or failed watch costs latency, never a line.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

pub struct Wake {
    watcher: Option<RecommendedWatcher>,
    rx: Receiver<()>,
    watched: BTreeSet<PathBuf>,
}

impl Wake {
    /// Without inotify (an error creating the watcher) the tailer just polls.
    pub fn new() -> Wake {
        let (tx, rx) = sync_channel::<()>(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                nudge(&tx);
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("tail: no file-change notifications ({e}); polling only");
                None
            }
        };
        Wake {
            watcher,
            rx,
            watched: BTreeSet::new(),
        }
    }

    /// Watches exactly `dirs` (adding new ones, dropping gone ones).
    pub fn watch(&mut self, dirs: BTreeSet<PathBuf>) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        for gone in self.watched.difference(&dirs) {
            let _ = watcher.unwatch(gone);
        }
        let mut now = BTreeSet::new();
        for dir in dirs {
            // A directory that does not exist (yet) is polled; it is tried again
            // at the next call.
            if self.watched.contains(&dir)
                || watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok()
            {
                now.insert(dir);
            }
        }
        self.watched = now;
    }

    /// Waits until something under a watched directory changes, or `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let _ = self.rx.recv_timeout(timeout);
    }
}

impl Default for Wake {
    fn default() -> Wake {
        Wake::new()
    }
}

/// One pending wake-up is enough: the next poll reads everything there is.
fn nudge(tx: &SyncSender<()>) {
    match tx.try_send(()) {
        Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
    }
}
