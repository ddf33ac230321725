//! Acks fan-out for simulated agents: how many ack records Kafka hands out when every
//! agent reads every partition of `evd.acks` (before) and when each reads only its
//! home partition (`wire::ack_partition`, now), for 1,000 agents each acked
//! `ACKS_PER_AGENT` times, over several partition counts. Counts follow from where
//! each agent's acks land, computed with the partition function librdkafka uses
//! (checked against librdkafka in `tests/tests/acks_fanout.rs`).
//!
//! `cargo run --release -p tests --bin acks-fanout [agents]`

use evd_schemas::wire::ack_partition::partition_for;

const ACKS_PER_AGENT: u64 = 60; // one flush a minute for an hour

fn main() {
    let agents: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000);
    let ids: Vec<String> = (0..agents).map(|i| format!("host-{i:05}")).collect();
    let produced = agents as u64 * ACKS_PER_AGENT;
    println!(
        "{agents} agents x {ACKS_PER_AGENT} acks = {produced} ack records produced per hour\n"
    );
    println!(
        "| partitions | records read, every agent reads all | records read, home partition only | per agent (max) | amplification |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for partitions in [1, 12, 64, 256, 1024] {
        let mut per_partition = vec![0u64; partitions as usize];
        for id in &ids {
            per_partition[partition_for(id, partitions) as usize] += 1;
        }
        let before = produced * agents as u64;
        // Each agent reads every ack record of its home partition.
        let after: u64 = per_partition.iter().map(|n| n * n * ACKS_PER_AGENT).sum();
        let max = per_partition.iter().max().copied().unwrap_or(0) * ACKS_PER_AGENT;
        println!(
            "| {partitions} | {before} | {after} | {max} | {:.1}x |",
            after as f64 / produced as f64
        );
    }
}
