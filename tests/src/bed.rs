//! One builder for the end-to-end tests: a broker (tansu, or MockCluster for fault
//! injection) with the pipeline topics, or two sites joined by a bridge, then
//! consumers, agents and an auditor as real processes under one temp dir, so a test
//! file states only its scenario.
//!
//! ```no_run
//! # use tests::bed::TestBed;
//! # use tests::agent_proc::AgentOptions;
//! # use tests::consumer_proc::ConsumerOptions;
//! let bed = TestBed::builder()
//!     .consumer(ConsumerOptions::default())
//!     .agent("host-a", AgentOptions::default())
//!     .start()
//!     .unwrap();
//! let socket = bed.agent().socket(); // send events here, then read bed.out() back
//! ```
//!
//! Layout under [`TestBed::dir`]: `agent-<id>/` per agent, `consumer-<id>/` per
//! consumer, `bridge/`, `ops/`, `out/` the consumers' shared output.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::agent_proc::{AgentOptions, AgentProcess};
use crate::auditor_proc::{AuditorOptions, start_auditor};
use crate::bridge_proc::BridgeProcess;
use crate::consumer_proc::{ConsumerOptions, ConsumerProcess};
use crate::oracle::create_pipeline_topics;
use crate::process::EvdProcess;
use crate::{MockBroker, RealBroker};

/// A running pipeline; dropping it stops every process and removes the temp dir.
pub struct TestBed {
    pub auditor: Option<EvdProcess>,
    pub consumers: Vec<ConsumerProcess>,
    pub agents: Vec<AgentProcess>,
    /// Between the sites, when the bed is [`bridged`](BedBuilder::bridged); an
    /// `Option` so a test thread can take it to kill it, and put it back.
    pub bridge: Option<BridgeProcess>,
    /// Where the agents produce (the edge site when bridged).
    pub broker: Broker,
    /// Where the consumers read, when bridged.
    pub central: Option<RealBroker>,
    pub dir: tempfile::TempDir,
}

/// The bed's Kafka: a tansu process, or librdkafka's MockCluster.
pub enum Broker {
    Real(RealBroker),
    Mock(MockBroker),
}

impl Broker {
    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Real(b) => b.bootstrap(),
            Broker::Mock(m) => m.bootstrap().to_string(),
        }
    }

    /// The tansu process (a test that kills or pauses it).
    pub fn real(&mut self) -> &mut RealBroker {
        match self {
            Broker::Real(b) => b,
            Broker::Mock(_) => panic!("the bed runs on MockCluster"),
        }
    }

    /// The MockCluster (a test that injects its faults).
    pub fn mock(&self) -> &MockBroker {
        match self {
            Broker::Mock(m) => m,
            Broker::Real(_) => panic!("the bed runs on tansu"),
        }
    }
}

/// Which Kafka the bed starts.
#[derive(Clone, Copy)]
enum Kafka {
    /// tansu; both sites when bridged.
    Real {
        behind_proxy: bool,
        bridged: bool,
    },
    Mock {
        brokers: i32,
    },
}

/// What [`TestBed::builder`] starts, in this order: the broker(s), the topics, the
/// bridge, the consumers, the agents, the auditor.
pub struct BedBuilder {
    partitions: i32,
    kafka: Kafka,
    consumers: Vec<ConsumerOptions>,
    agents: Vec<(String, AgentOptions)>,
    auditor: Option<AuditorOptions>,
}

impl TestBed {
    /// A broker with the pipeline topics of 3 partitions each, nothing else yet.
    pub fn builder() -> BedBuilder {
        BedBuilder {
            partitions: 3,
            kafka: Kafka::Real {
                behind_proxy: false,
                bridged: false,
            },
            consumers: Vec::new(),
            agents: Vec::new(),
            auditor: None,
        }
    }

    /// Where the agents produce.
    pub fn bootstrap(&self) -> String {
        self.broker.bootstrap()
    }

    /// Where the consumers read: the central site when bridged, else the broker.
    pub fn consumer_bootstrap(&self) -> String {
        self.central
            .as_ref()
            .map_or_else(|| self.broker.bootstrap(), RealBroker::bootstrap)
    }

    /// The bridge (panics when it was taken and not put back).
    pub fn bridge(&self) -> &BridgeProcess {
        self.bridge.as_ref().expect("the bed has a bridge")
    }

    /// The consumers' shared output directory (a `file://` store).
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// The first agent.
    pub fn agent(&self) -> &AgentProcess {
        self.agents.first().expect("the bed has an agent")
    }

    /// The first consumer.
    pub fn consumer(&self) -> &ConsumerProcess {
        self.consumers.first().expect("the bed has a consumer")
    }

    /// Starts one more agent on the bed's broker.
    pub fn add_agent(&mut self, agent_id: &str, opts: AgentOptions) -> Result<&mut AgentProcess> {
        let dir = agent_dir(self.dir.path(), agent_id);
        let agent = AgentProcess::start(&dir, agent_id, &self.bootstrap(), opts)?;
        self.agents.push(agent);
        Ok(self.agents.last_mut().expect("just pushed"))
    }

    /// Starts one more consumer on the bed's broker, writing to [`out`](Self::out).
    pub fn add_consumer(&mut self, opts: ConsumerOptions) -> Result<&mut ConsumerProcess> {
        let dir = self.dir.path().join(format!("consumer-{}", opts.id));
        let consumer = ConsumerProcess::start(&dir, &self.consumer_bootstrap(), &self.out(), opts)?;
        self.consumers.push(consumer);
        Ok(self.consumers.last_mut().expect("just pushed"))
    }
}

impl TestBed {
    /// Starts the auditor (`evd ops`) over [`out`](Self::out) and the consumers'
    /// cluster, state under `ops/`.
    pub fn add_auditor(&mut self, opts: AuditorOptions) -> Result<&mut EvdProcess> {
        let dir = self.dir.path().join("ops");
        let ops = start_auditor(&dir, &self.consumer_bootstrap(), &self.out(), opts)?;
        Ok(self.auditor.insert(ops))
    }

    /// The auditor (panics when the bed has none).
    pub fn auditor(&self) -> &EvdProcess {
        self.auditor.as_ref().expect("the bed has an auditor")
    }
}

/// Where the bed keeps agent `agent_id`'s config and spool.
pub fn agent_dir(bed_dir: &Path, agent_id: &str) -> PathBuf {
    bed_dir.join(format!("agent-{agent_id}"))
}

impl BedBuilder {
    /// Partitions of each pipeline topic.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Clients reach each tansu broker through a fault proxy (`broker.real().proxy()`).
    pub fn behind_proxy(mut self) -> Self {
        if let Kafka::Real { bridged, .. } = self.kafka {
            self.kafka = Kafka::Real {
                behind_proxy: true,
                bridged,
            };
        }
        self
    }

    /// MockCluster with `brokers` brokers instead of tansu (`broker.mock()` injects
    /// its faults).
    pub fn mock(mut self, brokers: i32) -> Self {
        self.kafka = Kafka::Mock { brokers };
        self
    }

    /// Two sites: agents on an edge broker, consumers on a central one, a bridge
    /// (group `bridge`) between them.
    pub fn bridged(mut self) -> Self {
        if let Kafka::Real { behind_proxy, .. } = self.kafka {
            self.kafka = Kafka::Real {
                behind_proxy,
                bridged: true,
            };
        }
        self
    }

    pub fn consumer(mut self, opts: ConsumerOptions) -> Self {
        self.consumers.push(opts);
        self
    }

    pub fn agent(mut self, agent_id: &str, opts: AgentOptions) -> Self {
        self.agents.push((agent_id.to_string(), opts));
        self
    }

    /// An auditor, started last.
    pub fn auditor(mut self, opts: AuditorOptions) -> Self {
        self.auditor = Some(opts);
        self
    }

    pub fn start(self) -> Result<TestBed> {
        let dir = tempfile::tempdir()?;
        let (broker, central) = match self.kafka {
            Kafka::Real {
                behind_proxy,
                bridged,
            } => {
                let start = || -> Result<RealBroker> {
                    let broker = if behind_proxy {
                        RealBroker::start_behind_proxy()?
                    } else {
                        RealBroker::start()?
                    };
                    create_pipeline_topics(&broker.bootstrap(), self.partitions)?;
                    Ok(broker)
                };
                let edge = start()?;
                let central = if bridged { Some(start()?) } else { None };
                (Broker::Real(edge), central)
            }
            Kafka::Mock { brokers } => {
                let mock = MockBroker::start(brokers)?;
                mock.create_pipeline_topics(self.partitions)?;
                (Broker::Mock(mock), None)
            }
        };
        let bridge = match &central {
            Some(central) => Some(BridgeProcess::start(
                &dir.path().join("bridge"),
                &broker.bootstrap(),
                &central.bootstrap(),
                "bridge",
            )?),
            None => None,
        };
        let mut bed = TestBed {
            auditor: None,
            consumers: Vec::new(),
            agents: Vec::new(),
            bridge,
            broker,
            central,
            dir,
        };
        for opts in self.consumers {
            bed.add_consumer(opts)?;
        }
        for (agent_id, opts) in self.agents {
            bed.add_agent(&agent_id, opts)?;
        }
        if let Some(opts) = self.auditor {
            bed.add_auditor(opts)?;
        }
        Ok(bed)
    }
}
