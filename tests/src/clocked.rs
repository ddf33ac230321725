//! A bed moved through hours by an injected clock: one mock broker, one consumer, an
//! agent `host-a` and an auditor, the agent and auditor reading their time from a
//! clock-offset file (`EVD_TEST_CLOCK_OFFSET_FILE`, test builds only).

use std::path::PathBuf;

use anyhow::Result;
use evd_schemas::Hour;

use crate::agent_proc::AgentOptions;
use crate::auditor_proc::AuditorOptions;
use crate::bed::TestBed;
use crate::consumer_proc::ConsumerOptions;

pub struct ClockedBed {
    pub bed: TestBed,
    pub clock_file: PathBuf,
    /// The first hour of the run (two hours ahead of the wall clock, so the first
    /// hour's events are all in it); the clock starts 5 s into it.
    pub base: Hour,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ClockedBed {
    /// Starts the bed over a mock cluster with `partitions` per topic; `auditor.env`
    /// gets the clock added.
    pub fn start(
        partitions: i32,
        consumer: ConsumerOptions,
        mut auditor: AuditorOptions,
    ) -> Result<ClockedBed> {
        let bed = TestBed::builder()
            .mock(1)
            .partitions(partitions)
            .consumer(consumer)
            .start()?;
        let clock_file = bed.dir.path().join("clock-offset-ms");
        let clocked = ClockedBed {
            base: Hour::from_unix_ms(now_ms()).next().next(),
            clock_file,
            bed,
        };
        clocked.set_clock(clocked.base, 5);
        let clock_env = (
            "EVD_TEST_CLOCK_OFFSET_FILE".to_string(),
            clocked.clock_file.display().to_string(),
        );
        let mut clocked = clocked;
        let agent = AgentOptions {
            env: vec![clock_env.clone()],
            ..AgentOptions::default()
        };
        clocked.bed.add_agent("host-a", agent)?;
        auditor.env.push(clock_env);
        clocked.bed.add_auditor(auditor)?;
        Ok(clocked)
    }

    /// Moves the agent's and auditor's clocks to `secs` into `hour`. (Jumping further
    /// would pass the closing deadline of the hour before at once.)
    pub fn set_clock(&self, hour: Hour, secs: i64) {
        let offset = hour.start_ms() + secs * 1000 - now_ms();
        std::fs::write(&self.clock_file, offset.to_string()).expect("the clock file");
    }
}
