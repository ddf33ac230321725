//! librdkafka's in-process `MockCluster`, owned by a dedicated thread because it is not
//! `Send`. The handle forwards fault-injection commands to that thread.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

type Reply = mpsc::Sender<Result<()>>;

enum Command {
    CreateTopic(String, i32, Reply),
    BrokerDown(i32, Reply),
    BrokerUp(i32, Reply),
    RequestErrors(RDKafkaApiKey, Vec<RDKafkaRespErr>, Reply),
    ClearRequestErrors(RDKafkaApiKey, Reply),
    RoundTripTime(i32, Duration, Reply),
    PartitionLeader(String, i32, Option<i32>, Reply),
}

pub struct MockBroker {
    bootstrap: String,
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl MockBroker {
    /// Starts a mock cluster with `brokers` brokers (ids 1..=brokers) on 127.0.0.1.
    pub fn start(brokers: i32) -> Result<MockBroker> {
        let (commands, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String>>();
        let thread = std::thread::Builder::new()
            .name("mock-cluster".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("MockCluster::new: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Runs until every handle is dropped.
                for cmd in rx {
                    let (result, reply) = match cmd {
                        Command::CreateTopic(name, partitions, r) => {
                            (cluster.create_topic(&name, partitions, 1), r)
                        }
                        Command::BrokerDown(id, r) => (cluster.broker_down(id), r),
                        Command::BrokerUp(id, r) => (cluster.broker_up(id), r),
                        Command::RequestErrors(api, errors, r) => {
                            cluster.request_errors(api, &errors);
                            (Ok(()), r)
                        }
                        Command::ClearRequestErrors(api, r) => {
                            cluster.clear_request_errors(api);
                            (Ok(()), r)
                        }
                        Command::RoundTripTime(id, delay, r) => {
                            (cluster.broker_round_trip_time(id, delay), r)
                        }
                        Command::PartitionLeader(topic, partition, leader, r) => {
                            (cluster.partition_leader(&topic, partition, leader), r)
                        }
                    };
                    let _ = reply.send(result.map_err(|e| anyhow!("{e}")));
                }
            })?;
        let bootstrap = ready_rx.recv().context("mock cluster thread died")??;
        Ok(MockBroker {
            bootstrap,
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn call(&self, make: impl FnOnce(Reply) -> Command) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .as_ref()
            .expect("present until drop")
            .send(make(tx))
            .map_err(|_| anyhow!("mock cluster thread is gone"))?;
        rx.recv().context("mock cluster thread is gone")?
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.call(|r| Command::CreateTopic(name.to_string(), partitions, r))
    }

    /// Every event type's topic with `partitions` partitions, plus the acks and audit
    /// topics (one partition each), as `oracle::create_pipeline_topics` on a broker.
    pub fn create_pipeline_topics(&self, partitions: i32) -> Result<()> {
        for t in crate::oracle::TYPES.iter().chain(&["LogLine"]) {
            self.create_topic(&crate::oracle::topic(t), partitions)?;
        }
        self.create_topic("evd.acks", 1)?;
        self.create_topic("evd.audit", 1)
    }

    pub fn broker_down(&self, id: i32) -> Result<()> {
        self.call(|r| Command::BrokerDown(id, r))
    }

    pub fn broker_up(&self, id: i32) -> Result<()> {
        self.call(|r| Command::BrokerUp(id, r))
    }

    /// The next requests of `api` fail with `errors`, one each, in order.
    pub fn request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) -> Result<()> {
        self.call(|r| Command::RequestErrors(api, errors.to_vec(), r))
    }

    pub fn clear_request_errors(&self, api: RDKafkaApiKey) -> Result<()> {
        self.call(|r| Command::ClearRequestErrors(api, r))
    }

    pub fn round_trip_time(&self, id: i32, delay: Duration) -> Result<()> {
        self.call(|r| Command::RoundTripTime(id, delay, r))
    }

    /// Moves a partition's leadership to broker `leader`; `None` leaves it without a
    /// leader (nothing can be produced to it until one is set again).
    pub fn partition_leader(&self, topic: &str, partition: i32, leader: Option<i32>) -> Result<()> {
        self.call(|r| Command::PartitionLeader(topic.to_string(), partition, leader, r))
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
