//! The oracle's load generator: clients send events with unique ids (and `event_id`
//! idempotency keys) over the agent's socket, resend what was not acked across agent
//! restarts and refusals, and append every acked id to an fsynced **oracle log** before
//! counting it. What the log holds is the truth the checker holds the output to.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::oracle::send_until_acked;

/// Acked ids, one decimal per line, fsynced after every append.
pub struct OracleLog {
    file: File,
    path: PathBuf,
}

impl OracleLog {
    pub fn create(path: &Path) -> Result<OracleLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(OracleLog {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn append(&mut self, ids: &[u64]) -> Result<()> {
        let mut text = String::with_capacity(ids.len() * 8);
        for id in ids {
            text.push_str(&id.to_string());
            text.push('\n');
        }
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every id in the log at `path`.
    pub fn read(path: &Path) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        for line in BufReader::new(File::open(path)?).lines() {
            ids.push(line?.trim().parse()?);
        }
        Ok(ids)
    }
}

/// How much to send.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    pub clients: u64,
    /// Stop taking new ids after this many (scenarios).
    pub total: Option<u64>,
    /// Stop taking new ids at this time (soak).
    pub until: Option<Instant>,
    /// Events per second over all clients; `None`: as fast as acks come.
    pub rate_per_s: Option<u64>,
    /// Ids a client takes at a time.
    pub slice: u64,
}

/// What the clients share: the next id, the log, counters a reporter can read.
pub struct Load {
    socket: PathBuf,
    next_id: AtomicU64,
    acked: AtomicU64,
    refused_or_cut: AtomicU64,
    log: Mutex<OracleLog>,
}

impl Load {
    pub fn new(socket: PathBuf, log: OracleLog) -> Arc<Load> {
        Arc::new(Load {
            socket,
            next_id: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            refused_or_cut: AtomicU64::new(0),
            log: Mutex::new(log),
        })
    }

    /// Ids below this were handed to a client (anything at or above is a phantom).
    pub fn sent_below(&self) -> u64 {
        self.next_id.load(Ordering::SeqCst)
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Sends that came back short (agent killed, spool full): resent.
    pub fn resends(&self) -> u64 {
        self.refused_or_cut.load(Ordering::Relaxed)
    }

    pub fn log_path(&self) -> PathBuf {
        self.log.lock().expect("log lock").path().to_path_buf()
    }

    /// Runs `plan.clients` clients to the end of the plan; every id taken is acked
    /// (and logged) before a client stops.
    pub async fn run(self: &Arc<Load>, plan: LoadPlan) {
        let mut handles = Vec::new();
        for _ in 0..plan.clients {
            let load = self.clone();
            handles.push(tokio::spawn(async move { load.client(plan).await }));
        }
        for h in handles {
            h.await.expect("load client");
        }
    }

    async fn client(&self, plan: LoadPlan) {
        let started = Instant::now();
        let mut sent_here = 0u64;
        loop {
            if plan.until.is_some_and(|t| Instant::now() >= t) {
                return;
            }
            let first = self.next_id.fetch_add(plan.slice, Ordering::SeqCst);
            let mut last = first + plan.slice;
            if let Some(total) = plan.total {
                if first >= total {
                    return;
                }
                last = last.min(total);
            }
            let short = send_until_acked(&self.socket, (first..last).collect(), |got| {
                self.log
                    .lock()
                    .expect("log lock")
                    .append(got)
                    .expect("appending to the oracle log");
                self.acked.fetch_add(got.len() as u64, Ordering::Relaxed);
            })
            .await;
            self.refused_or_cut.fetch_add(short, Ordering::Relaxed);
            sent_here += last - first;
            if let Some(rate) = plan.rate_per_s {
                let per_client = (rate as f64 / plan.clients as f64).max(1.0);
                let due = started + Duration::from_secs_f64(sent_here as f64 / per_client);
                tokio::time::sleep_until(due.into()).await;
            }
        }
    }
}
