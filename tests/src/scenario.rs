//! Fault scenarios on real processes: the reliability suite's runner, shared by the
//! CI scenarios (`tests/tests/reliability.rs`) and the soak binary.
//!
//! A run starts a test bed (one site, or edge + bridge + central), drives the oracle's
//! load through the agent while a fault thread injects faults drawn from the
//! scenario's list at seeded random moments, then heals everything, waits until the
//! agent's spool has drained (every batch acked end to end) and judges the output with
//! the checker. The seed is printed; `EVD_SEED=<seed>` replays the same schedule.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::RealBroker;
use crate::agent_proc::{AgentOptions, AgentProcess};
use crate::bed::{Broker, TestBed};
use crate::bridge_proc::BridgeProcess;
use crate::checker::{Places, Verdict, check};
use crate::consumer_proc::{
    ConsumerOptions, ConsumerProcess, count_rows, drain_status, is_drained,
};
use crate::load::{Load, LoadPlan, OracleLog};
use crate::rng::Rng;

mod inject;
pub use inject::{LONGEST_BROKER_OUTAGE, LONGEST_HOLD};
use inject::{bridge_status, inject};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `kill -9` the agent and start it again.
    KillAgent,
    /// `kill -9` the consumer and start it again.
    KillConsumer,
    /// `kill -9` the bridge and start it again.
    KillBridge,
    /// `kill -9` the bridge and start it under a new group: its offsets are gone.
    BridgeLosesOffsets,
    /// `kill -9` a broker and start it again on the same data.
    RestartBroker,
    /// `SIGSTOP` a broker for 2–5 s.
    PauseBroker,
    /// `SIGSTOP` the agent for 2–5 s (clients wait, nothing is refused).
    PauseAgent,
    /// `SIGSTOP` the consumer for 2–4 s, under its 10 s session timeout (agents
    /// retransmit meanwhile; the consumer drops the copies). Not in [`ALL`](Self::ALL):
    /// a consumer paused while joining its group was sometimes never assigned a
    /// partition again by tansu 0.6.0 (EVD_SEED=1795339433958992040 in F2, about one
    /// run in three), which would make CI flaky for a broker's sake.
    PauseConsumer,
    /// Reset every client connection to a broker.
    CutConnections,
    /// A partition: nothing reaches a broker for 3–8 s, connections stay open.
    Blackhole,
    /// A slow link to a broker for 5–10 s: +50 ms each way, 1 MB/s per connection.
    SlowLink,
}

impl Fault {
    /// Every kind, for the mixed scenario and the soak.
    pub const ALL: [Fault; 10] = [
        Fault::KillAgent,
        Fault::KillConsumer,
        Fault::KillBridge,
        Fault::BridgeLosesOffsets,
        Fault::RestartBroker,
        Fault::PauseBroker,
        Fault::PauseAgent,
        Fault::Blackhole,
        Fault::CutConnections,
        Fault::SlowLink,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::KillAgent => "agent kill -9",
            Fault::KillConsumer => "consumer kill -9",
            Fault::KillBridge => "bridge kill -9",
            Fault::BridgeLosesOffsets => "bridge offsets lost",
            Fault::RestartBroker => "broker kill -9",
            Fault::PauseBroker => "broker paused",
            Fault::PauseAgent => "agent paused",
            Fault::PauseConsumer => "consumer paused",
            Fault::CutConnections => "connections cut",
            Fault::Blackhole => "partition",
            Fault::SlowLink => "slow link",
        }
    }

    fn needs_bridge(self) -> bool {
        matches!(self, Fault::KillBridge | Fault::BridgeLosesOffsets)
    }
}

pub struct Scenario {
    pub name: String,
    /// Edge + bridge + central instead of one cluster.
    pub two_sites: bool,
    pub faults: Vec<Fault>,
    pub load: LoadPlan,
    /// Gap between faults, drawn from this range (ms).
    pub fault_gap_ms: (u64, u64),
    /// Test-only switches of the agent (`EVD_TEST_DROP_ACKS_PERCENT`, …).
    pub agent_env: Vec<(String, String)>,
    /// Test-only switches of the consumer (`EVD_TEST_STORE_FAULTS`, …).
    pub consumer_env: Vec<(String, String)>,
    pub flush_interval_ms: u64,
    pub drain_limit: Duration,
    /// Print a progress line this often (soak).
    pub report_every: Option<Duration>,
    /// Halfway through the load: wait for the spool to drain, `kill -9` the agent,
    /// delete its spool and start it again with the same id and keys (a replaced disk,
    /// an ephemeral volume). The new spool starts at batch seq 1 again.
    pub recreate_spool_midway: bool,
}

impl Scenario {
    /// A scenario of `events` events with the usual settings.
    pub fn new(name: &str, faults: &[Fault], events: u64) -> Scenario {
        Scenario {
            name: name.to_string(),
            two_sites: faults.iter().any(|f| f.needs_bridge()),
            faults: faults.to_vec(),
            load: LoadPlan {
                clients: 4,
                total: Some(events),
                until: None,
                rate_per_s: None,
                slice: 1_000,
            },
            fault_gap_ms: (1_000, 3_000),
            agent_env: Vec::new(),
            consumer_env: Vec::new(),
            flush_interval_ms: 1_000,
            drain_limit: Duration::from_secs(240),
            report_every: None,
            recreate_spool_midway: false,
        }
    }
}

/// The processes of a run.
pub struct Bed {
    pub edge: RealBroker,
    pub central: Option<RealBroker>,
    pub agent: AgentProcess,
    pub consumer: ConsumerProcess,
    pub bridge: Option<BridgeProcess>,
    pub dir: TempDir,
    bridge_groups: u32,
}

impl Bed {
    pub fn start(s: &Scenario) -> anyhow::Result<Bed> {
        let mut builder = TestBed::builder()
            .behind_proxy()
            .consumer(ConsumerOptions {
                env: s.consumer_env.clone(),
                ..ConsumerOptions::new("c1", s.flush_interval_ms)
            })
            .agent(
                "host-r",
                AgentOptions {
                    retransmit_after_ms: 5_000,
                    env: s.agent_env.clone(),
                    ..AgentOptions::default()
                },
            );
        if s.two_sites {
            builder = builder.bridged();
        }
        let TestBed {
            mut consumers,
            mut agents,
            bridge,
            broker,
            central,
            dir,
            ..
        } = builder.start()?;
        let (Some(consumer), Some(agent)) = (consumers.pop(), agents.pop()) else {
            anyhow::bail!("the bed started no agent or consumer");
        };
        let Broker::Real(edge) = broker else {
            anyhow::bail!("the scenario runs on tansu");
        };
        Ok(Bed {
            edge,
            central,
            agent,
            consumer,
            bridge,
            dir,
            bridge_groups: 0,
        })
    }

    fn broker(&mut self, pick_central: bool) -> &mut RealBroker {
        match (&mut self.central, pick_central) {
            (Some(c), true) => c,
            _ => &mut self.edge,
        }
    }

    /// `(process, pid)` of everything running, for RSS.
    pub fn pids(&self) -> Vec<(&'static str, Option<u32>)> {
        let mut pids = vec![
            ("agent", self.agent.pid()),
            ("consumer", self.consumer.process.pid()),
            ("edge", self.edge.pid()),
        ];
        if let Some(b) = &self.bridge {
            pids.push(("bridge", b.process.pid()));
        }
        if let Some(c) = &self.central {
            pids.push(("central", c.pid()));
        }
        pids
    }

    pub fn places(&self) -> Places {
        let mut clusters = vec![("edge".to_string(), self.edge.bootstrap())];
        if let Some(c) = &self.central {
            clusters.push(("central".to_string(), c.bootstrap()));
        }
        Places {
            spools: vec![self.agent.dir.join("spool")],
            clusters,
        }
    }

    pub fn out_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("out")
    }
}

/// What a run saw.
pub struct Report {
    pub name: String,
    pub seed: u64,
    pub faults: BTreeMap<&'static str, u32>,
    pub acked: u64,
    pub resends: u64,
    pub drain_secs: f64,
    pub total_secs: f64,
    pub verdict: Verdict,
    /// The consumer's counters at the end (`duplicates_dropped`, `store_retries`, …).
    pub consumer_metrics: BTreeMap<&'static str, u64>,
    /// Highest RSS seen per process (MiB), when progress was reported.
    pub max_rss_mib: BTreeMap<&'static str, u64>,
    /// evd processes that exited on their own (last log line each); they were
    /// restarted, but under the injected faults none should exit.
    pub exits: Vec<String>,
}

impl Report {
    /// One line of figures (and where lost ids were, if any).
    pub fn figures(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(f, n)| format!("{n}× {f}"))
            .collect();
        format!(
            "{}: {} events acked ({} short sends resent); faults: {}; processes exited on their own: {:?}; consumer {:?}; {}; drained {:.1}s after the load; {:.0}s in all (EVD_SEED={})",
            self.name,
            self.acked,
            self.resends,
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(", ")
            },
            self.exits,
            self.consumer_metrics,
            self.verdict.summary(),
            self.drain_secs,
            self.total_secs,
            self.seed
        )
    }

    /// lost = dup = phantom = 0 and no process exited on its own.
    pub fn ok(&self) -> bool {
        self.verdict.ok() && self.exits.is_empty()
    }

    /// Panics with the figures unless [`ok`](Self::ok).
    pub fn assert_exactly_once(&self) {
        assert!(self.ok(), "{}", self.figures());
    }
}

/// Runs `s` to its verdict. Panics if the bed cannot start or the spool never drains.
pub async fn run(s: Scenario) -> Report {
    let started = Instant::now();
    let mut rng = Rng::from_env(&s.name);
    let seed = rng.seed();
    let bed = Arc::new(Mutex::new(Bed::start(&s).expect("starting the test bed")));
    let (socket, log_path) = {
        let b = bed.lock().unwrap();
        (b.agent.socket(), b.dir.path().join("oracle.log"))
    };
    let load = Load::new(socket, OracleLog::create(&log_path).expect("oracle log"));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Set while the bed does an operator's step of its own (the spool re-creation).
    let hold = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let faults = {
        let (bed, done, hold) = (bed.clone(), done.clone(), hold.clone());
        let (list, gap) = (s.faults.clone(), s.fault_gap_ms);
        tokio::task::spawn_blocking(move || {
            let mut exits = Vec::new();
            let counts = inject(&bed, &done, &hold, &list, gap, &mut rng, &mut exits);
            (counts, exits)
        })
    };
    let reporter = s.report_every.map(|every| {
        let (bed, load, done) = (bed.clone(), load.clone(), done.clone());
        tokio::spawn(async move { report_progress(bed, load, done, every).await })
    });
    if s.recreate_spool_midway {
        let half = LoadPlan {
            total: s.load.total.map(|t| t / 2),
            ..s.load
        };
        load.run(half).await;
        // No faults while the spool drains and is re-created: killing a consumer with
        // nothing to consume is killing it while it joins (see `wait_working`).
        hold.store(true, std::sync::atomic::Ordering::SeqCst);
        recreate_spool(&bed, &s.name, s.drain_limit, seed).await;
        hold.store(false, std::sync::atomic::Ordering::SeqCst);
    }
    load.run(s.load).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (faults, exits) = faults.await.expect("fault thread");
    let load_ended = Instant::now();
    loop {
        let drained = {
            let b = bed.lock().unwrap();
            let drained = is_drained(&b.agent);
            assert!(
                drained || load_ended.elapsed() < s.drain_limit,
                "{}: spool did not drain (EVD_SEED={seed}): {}{}",
                s.name,
                drain_status(&b.agent, &b.consumer.process),
                bridge_status(&b)
            );
            drained
        };
        if drained {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_secs = load_ended.elapsed().as_secs_f64();
    let max_rss_mib = match reporter {
        Some(r) => r.await.unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let acked = OracleLog::read(&load.log_path()).expect("reading the oracle log");
    let b = bed.lock().unwrap();
    let out = b.out_dir();
    let places = b.places();
    let sent_below = load.sent_below();
    let consumer_metrics = ["duplicates_dropped", "store_retries", "batches_consumed"]
        .into_iter()
        .map(|m| (m, b.consumer.process.metric(m).unwrap_or(0)))
        .collect();
    let verdict = tokio::task::block_in_place(|| check(&out, &acked, Some(sent_below), &places));
    let report = Report {
        name: s.name.clone(),
        seed,
        faults,
        acked: acked.len() as u64,
        resends: load.resends(),
        drain_secs,
        total_secs: started.elapsed().as_secs_f64(),
        verdict,
        consumer_metrics,
        max_rss_mib,
        exits,
    };
    println!("{}", report.figures());
    report
}

/// Waits until the agent's spool has drained (seen twice, 1.2 s apart, from the same
/// agent process: batches seal within 100 ms and gauges follow within a turn), then
/// `kill -9`s the agent, deletes its spool and starts it again under the same id.
async fn recreate_spool(bed: &Mutex<Bed>, name: &str, limit: Duration, seed: u64) {
    let since = Instant::now();
    let mut seen: Option<u32> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let mut b = bed.lock().expect("bed lock");
        assert!(
            since.elapsed() < limit,
            "{name}: spool did not drain before the wipe (EVD_SEED={seed}): {}",
            drain_status(&b.agent, &b.consumer.process)
        );
        let pid = b.agent.pid();
        if !is_drained(&b.agent) || pid.is_none() {
            seen = None;
            continue;
        }
        if seen != pid {
            seen = pid;
            continue;
        }
        println!(
            "  t+{:.1}s spool drained: agent kill -9, spool deleted, agent restarted",
            since.elapsed().as_secs_f64()
        );
        b.agent.kill9().expect("agent kill -9");
        std::fs::remove_dir_all(b.agent.dir.join("spool")).expect("deleting the spool");
        b.agent.restart().expect("agent restart");
        return;
    }
}

/// Soak progress: a line per `every` with acked, landed, in flight, dup, spool bytes and
/// the RSS of each process.
async fn report_progress(
    bed: Arc<Mutex<Bed>>,
    load: Arc<Load>,
    done: Arc<std::sync::atomic::AtomicBool>,
    every: Duration,
) -> BTreeMap<&'static str, u64> {
    let mut max_rss = BTreeMap::new();
    let started = Instant::now();
    println!(
        "{:>5} {:>10} {:>10} {:>9} {:>5} {:>11}  rss MiB",
        "min", "acked", "landed", "in flight", "dup", "spool bytes"
    );
    loop {
        let deadline = Instant::now() + every;
        while Instant::now() < deadline {
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                return max_rss;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let acked = load.acked();
        let (out, spool, rss) = {
            let b = bed.lock().unwrap();
            let rss: Vec<String> = b
                .pids()
                .into_iter()
                .map(|(name, pid)| {
                    let mib = pid.and_then(rss_mib).unwrap_or(0);
                    let max = max_rss.entry(name).or_insert(0);
                    *max = mib.max(*max);
                    format!("{name} {mib}")
                })
                .collect();
            (b.out_dir(), b.agent.metric("spool_bytes"), rss.join(", "))
        };
        let (rows, distinct) = tokio::task::spawn_blocking(move || count_rows(&out))
            .await
            .expect("count task")
            .unwrap_or_else(|e| {
                eprintln!("progress: counting rows failed: {e}");
                (0, 0)
            });
        println!(
            "{:>5.0} {:>10} {:>10} {:>9} {:>5} {:>11}  {rss}",
            started.elapsed().as_secs_f64() / 60.0,
            acked,
            distinct,
            acked.saturating_sub(distinct),
            rows - distinct,
            spool.map_or("-".into(), |b| b.to_string()),
        );
    }
}

/// Resident set size of `pid` in MiB.
pub fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}
