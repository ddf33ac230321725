//! evd's cross-crate test bed: real broker processes and an in-process MockCluster.
//!
//! - [`RealBroker`]: a `tansu` Kafka-protocol broker process on 127.0.0.1 with sqlite
//!   storage in a temp dir; kill -9, pause and restart it on the same data.
//! - [`MockBroker`]: librdkafka's `MockCluster` on its own thread (it is not `Send`),
//!   driven through a handle: broker down/up, request errors, round-trip time.
//! - [`kafka`]: small rdkafka helpers shared by the tests.
//! - [`bed::TestBed`]: one builder for an end-to-end pipeline (tansu, MockCluster or
//!   two bridged sites; topics, consumers, agents, auditor) so a test file states only
//!   its scenario.

pub mod agent_proc;
pub mod auditor_proc;
pub mod bed;
pub mod bridge_proc;
pub mod checker;
pub mod clocked;
pub mod consumer_proc;
pub mod fault_proxy;
pub mod kafka;
pub mod load;
mod mock_broker;
pub mod moto;
pub mod oracle;
pub mod process;
mod real_broker;
pub mod rng;
pub mod scenario;
pub mod tls_front;

pub use mock_broker::MockBroker;
pub use real_broker::RealBroker;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port on 127.0.0.1")
}
