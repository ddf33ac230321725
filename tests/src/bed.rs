//! One builder for the end-to-end tests: a real broker with the pipeline topics, then
//! consumers and agents as real processes under one temp dir, so a test file states
//! only its scenario.
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
//! consumer, `out/` the consumers' shared output.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::RealBroker;
use crate::agent_proc::{AgentOptions, AgentProcess};
use crate::consumer_proc::{ConsumerOptions, ConsumerProcess};
use crate::oracle::create_pipeline_topics;

/// A running pipeline; dropping it stops every process and removes the temp dir.
pub struct TestBed {
    pub consumers: Vec<ConsumerProcess>,
    pub agents: Vec<AgentProcess>,
    pub broker: RealBroker,
    pub dir: tempfile::TempDir,
}

/// What [`TestBed::builder`] starts, in this order: the broker, the topics, the
/// consumers, the agents.
pub struct BedBuilder {
    partitions: i32,
    behind_proxy: bool,
    consumers: Vec<ConsumerOptions>,
    agents: Vec<(String, AgentOptions)>,
}

impl TestBed {
    /// A broker with the pipeline topics of 3 partitions each, nothing else yet.
    pub fn builder() -> BedBuilder {
        BedBuilder {
            partitions: 3,
            behind_proxy: false,
            consumers: Vec::new(),
            agents: Vec::new(),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.broker.bootstrap()
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
        let agent = AgentProcess::start(&dir, agent_id, &self.broker.bootstrap(), opts)?;
        self.agents.push(agent);
        Ok(self.agents.last_mut().expect("just pushed"))
    }

    /// Starts one more consumer on the bed's broker, writing to [`out`](Self::out).
    pub fn add_consumer(&mut self, opts: ConsumerOptions) -> Result<&mut ConsumerProcess> {
        let dir = self.dir.path().join(format!("consumer-{}", opts.id));
        let consumer = ConsumerProcess::start(&dir, &self.broker.bootstrap(), &self.out(), opts)?;
        self.consumers.push(consumer);
        Ok(self.consumers.last_mut().expect("just pushed"))
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

    /// Clients reach the broker through a fault proxy (`broker.proxy()`).
    pub fn behind_proxy(mut self) -> Self {
        self.behind_proxy = true;
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

    pub fn start(self) -> Result<TestBed> {
        let broker = if self.behind_proxy {
            RealBroker::start_behind_proxy()?
        } else {
            RealBroker::start()?
        };
        create_pipeline_topics(&broker.bootstrap(), self.partitions)?;
        let mut bed = TestBed {
            consumers: Vec::new(),
            agents: Vec::new(),
            broker,
            dir: tempfile::tempdir()?,
        };
        for opts in self.consumers {
            bed.add_consumer(opts)?;
        }
        for (agent_id, opts) in self.agents {
            bed.add_agent(&agent_id, opts)?;
        }
        Ok(bed)
    }
}
