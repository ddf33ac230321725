//! Why a spool call failed, by what the caller does next.

use evd_schemas::SpoolId;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool is at its size limit: refuse the event (backpressure), keep going.
    #[error("spool full: {used} of {max} bytes used")]
    Full { used: u64, max: u64 },
    /// The spool belongs to another agent id; fix the config or the spool path.
    #[error(
        "spool belongs to agent {found:?}, but this agent is {configured:?}; an agent id never changes for a spool"
    )]
    WrongAgent { found: String, configured: String },
    /// Segments of two spool incarnations in one directory (files copied between
    /// spools?): refuse to start rather than mix their batch seqs.
    #[error(
        "segment {segment} belongs to spool {found}, the rest of the spool to {spool}; do not copy segments between spools"
    )]
    MixedSpools {
        segment: u64,
        found: SpoolId,
        spool: SpoolId,
    },
    /// The disk has too little room left for another event (the spool keeps a
    /// segment's worth free so batches can still be sealed and acks recorded): refuse
    /// the event (backpressure), keep going. Space freed on the disk is found again.
    #[error("spool full: the disk has {free} bytes free, {reserve} are kept for batching")]
    DiskFull { free: u64, reserve: u64 },
    /// A write, sync or read failed: the process must stop; data may not be durable.
    #[error("spool I/O failed (fatal): {0}")]
    Io(#[from] std::io::Error),
    /// A caller asked for a batch the spool does not hold.
    #[error("batch {0} is not in the spool")]
    UnknownBatch(u64),
    /// A sealed frame read again for a (re)send fails its CRC: the disk changed it
    /// after it was written. The batch is not sent and stays unacked (it shows in
    /// the heartbeat's oldest unacked batch); an ack for an earlier send still frees it.
    #[error("sealed frame of batch {0} fails its checksum on re-read (changed on disk); not sent")]
    CorruptSealed(u64),
}
