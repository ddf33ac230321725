//! `validate`: what the types of `agent.toml` cannot say (ranges, sizes that must fit
//! each other and Kafka's message limit, settings evd owns).

use evd_schemas::Invalid;

use super::AgentConfig;

/// Settings evd owns; a config that tries to change them is refused.
const FIXED_PRODUCER_KEYS: [&str; 4] = [
    "enable.idempotence",
    "acks",
    "bootstrap.servers",
    "transactional.id",
];

/// librdkafka's default `message.max.bytes`.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// Room for the Kafka record around a sealed batch (key = agent id, headers, framing).
const KAFKA_RECORD_MARGIN: usize = 1_024;

impl AgentConfig {
    /// A sealed batch must fit in one Kafka message, or it is acked to clients and can
    /// never be produced: the largest batch (`batch.max_bytes`, or one longest line),
    /// incompressible, against the producer's `message.max.bytes`.
    fn check_fits_kafka_messages(&self) -> Result<(), Invalid> {
        let limit = match self.kafka.producer.get("message.max.bytes") {
            Some(v) => v.parse::<usize>().map_err(|_| {
                Invalid::at(
                    "kafka.producer",
                    format!("message.max.bytes = {v:?} is not a number of bytes"),
                )
            })?,
            None => LIBRDKAFKA_MESSAGE_MAX_BYTES,
        };
        let line = self
            .sources
            .iter()
            .map(|s| s.max_line_bytes)
            .chain([self.socket.max_line_bytes])
            .max()
            .unwrap_or(0);
        let one_line = line + evd_schemas::wire::record::RECORD_OVERHEAD;
        let (key, plaintext) = if self.batch.max_bytes >= one_line {
            ("batch.max_bytes", self.batch.max_bytes)
        } else {
            ("socket.max_line_bytes", one_line)
        };
        let worst = evd_schemas::wire::batch::max_sealed_len(plaintext) + KAFKA_RECORD_MARGIN;
        if worst > limit {
            return Err(Invalid::at(
                key,
                format!(
                    "a sealed batch can reach {worst} bytes (batch.max_bytes {}, longest line {line}) \
                     but Kafka messages are limited to {limit} (message.max.bytes): lower the limit, \
                     or raise message.max.bytes in [kafka.producer] and the topics' max.message.bytes",
                    self.batch.max_bytes
                ),
            ));
        }
        Ok(())
    }
}

impl evd_schemas::ValidatedConfig for AgentConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(id) = &self.agent_id {
            evd_schemas::origin::check_id(id)
                .map_err(|e| Invalid::at("agent_id", e.to_string()))?;
        }
        self.check_socket()?;
        self.check_fits_kafka_messages()?;
        self.check_batch_and_spool()?;
        if let Some(key) = self
            .kafka
            .producer
            .keys()
            .find(|k| FIXED_PRODUCER_KEYS.contains(&k.as_str()))
        {
            return Err(Invalid::at(
                "kafka.producer",
                format!("`{key}` is fixed by evd and may not be set"),
            ));
        }
        if self.retransmit_after_ms < 1_000 {
            return Err(Invalid::at(
                "retransmit_after_ms",
                "must be at least 1000".into(),
            ));
        }
        self.check_sources()
    }
}

impl AgentConfig {
    fn check_socket(&self) -> Result<(), Invalid> {
        if self.socket.mode > 0o777 {
            return Err(Invalid::at(
                "socket.mode",
                format!("{:#o} is not a file mode (0o000..=0o777)", self.socket.mode),
            ));
        }
        if self.socket.max_line_bytes == 0 || self.socket.max_line_bytes > 16 << 20 {
            return Err(Invalid::at(
                "socket.max_line_bytes",
                "must be 1..=16777216".into(),
            ));
        }
        Ok(())
    }

    fn check_batch_and_spool(&self) -> Result<(), Invalid> {
        if self.batch.max_events == 0 {
            return Err(Invalid::at("batch.max_events", "must be at least 1".into()));
        }
        if self.batch.max_bytes == 0 || self.batch.max_bytes > 32 << 20 {
            return Err(Invalid::at(
                "batch.max_bytes",
                "must be 1..=33554432".into(),
            ));
        }
        if !(1..=22).contains(&self.batch.zstd_level) {
            return Err(Invalid::at("batch.zstd_level", "must be 1..=22".into()));
        }
        if self.spool.segment_bytes < 4096 {
            return Err(Invalid::at(
                "spool.segment_bytes",
                "must be at least 4096".into(),
            ));
        }
        if self.spool.max_bytes
            < 4 * self
                .spool
                .segment_bytes
                .min(self.batch.max_bytes as u64 * 4)
        {
            return Err(Invalid::at(
                "spool.max_bytes",
                "too small for the segment and batch sizes".into(),
            ));
        }
        Ok(())
    }

    /// File sources and the tailer that reads them.
    fn check_sources(&self) -> Result<(), Invalid> {
        let mut names = std::collections::BTreeSet::new();
        for source in &self.sources {
            if source.include.is_empty() {
                return Err(Invalid::at(
                    "sources.include",
                    "needs at least one pattern".into(),
                ));
            }
            for pattern in source.include.iter().chain(&source.exclude) {
                crate::tail::Pattern::new(pattern)
                    .map_err(|e| Invalid::at("sources.include", format!("bad pattern {e}")))?;
            }
            if let Some(m) = &source.multiline {
                m.spec().map_err(|e| Invalid::at("sources.multiline", e))?;
                if source.format != crate::tail::LineFormat::Text {
                    return Err(Invalid::at(
                        "sources.multiline",
                        "joins lines of `text` sources only".into(),
                    ));
                }
                if m.max_lines == 0 || m.max_bytes == 0 || m.max_bytes > 16 << 20 {
                    return Err(Invalid::at(
                        "sources.multiline",
                        "max_lines must be > 0 and max_bytes 1..=16777216".into(),
                    ));
                }
            }
            let name = source.display_name();
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(Invalid::at(
                    "sources.name",
                    format!("{name:?}: every source needs its own name"),
                ));
            }
            if source.max_line_bytes == 0 || source.max_line_bytes > 16 << 20 {
                return Err(Invalid::at(
                    "sources.max_line_bytes",
                    "must be 1..=16777216".into(),
                ));
            }
        }
        if !self.sources.is_empty()
            && self.spool.dedup_window_ms < 10 * self.tailer.poll_interval_ms
        {
            // Tailed lines' positions ride in their event ids; the spool must keep them
            // well past the checkpoint that follows each poll.
            return Err(Invalid::at(
                "spool.dedup_window_ms",
                "must be at least 10 × tailer.poll_interval_ms when files are tailed".into(),
            ));
        }
        let t = &self.tailer;
        if t.poll_interval_ms == 0 || t.read_chunk_bytes == 0 || t.max_poll_bytes == 0 {
            return Err(Invalid::at(
                "tailer",
                "poll_interval_ms, read_chunk_bytes and max_poll_bytes must be > 0".into(),
            ));
        }
        Ok(())
    }
}
