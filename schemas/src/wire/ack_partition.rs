//! Which partition of the acks topic carries an agent's acks: Kafka's Java-compatible
//! murmur2 partitioner over the agent id (librdkafka's `murmur2_random` for non-empty
//! keys). Every producer of acks (consumers, the bridge) is configured with
//! [`PARTITIONER`], so an agent reads exactly one partition and ack traffic per agent
//! does not grow with the number of agents.

/// The librdkafka `partitioner` every acks producer is fixed to.
pub const PARTITIONER: &str = "murmur2_random";

/// The partition of `partitions` that acks keyed `agent_id` land in.
pub fn partition_for(agent_id: &str, partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    ((murmur2(agent_id.as_bytes()) & 0x7fff_ffff) % partitions as u32) as i32
}

/// Kafka's murmur2 (seed `0x9747b28c`), as its Java client computes it.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Kafka's own client tests pin for its murmur2.
    #[test]
    fn murmur2_matches_kafkas_reference_values() {
        for (key, want) in [
            ("21", -973_932_308i32),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key.as_bytes()) as i32, want, "{key}");
        }
    }

    #[test]
    fn partitions_are_in_range() {
        for n in 1..40 {
            for id in ["a", "host-1", "a-much-longer-agent-identifier.example"] {
                assert!((0..n).contains(&partition_for(id, n)));
            }
        }
        assert_eq!(partition_for("a", 0), 0);
    }
}
