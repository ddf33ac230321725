//! The bridge as a real process (`evd bridge`), with kill -9 and restart.

use std::path::Path;

use anyhow::Result;

use crate::oracle::{TYPES, topic};
use crate::process::EvdProcess;

pub struct BridgeProcess {
    pub process: EvdProcess,
    edge: String,
    central: String,
}

/// Every topic the pipeline forwards edge → central (events and audit).
pub fn forward_topics() -> Vec<String> {
    TYPES
        .iter()
        .chain(&["LogLine"])
        .map(|t| topic(t))
        .chain(["evd.audit".to_string()])
        .collect()
}

impl BridgeProcess {
    /// Writes `dir/bridge.toml` (group `group_id`) and starts the bridge.
    pub fn start(dir: &Path, edge: &str, central: &str, group_id: &str) -> Result<BridgeProcess> {
        std::fs::create_dir_all(dir)?;
        let metrics_addr = format!("127.0.0.1:{}", crate::free_port());
        let config = dir.join("bridge.toml");
        let mut bridge = BridgeProcess {
            process: EvdProcess::new("bridge", dir, config, metrics_addr),
            edge: edge.to_string(),
            central: central.to_string(),
        };
        bridge.write_config(group_id)?;
        bridge.spawn()?;
        Ok(bridge)
    }

    fn write_config(&self, group_id: &str) -> Result<()> {
        let topics: Vec<String> = forward_topics().iter().map(|t| format!("{t:?}")).collect();
        let session = crate::consumer_proc::group_settings_table();
        std::fs::write(
            &self.process.config,
            format!(
                r#"group_id = "{group_id}"
metrics_listen = "{metrics}"

[edge]
bootstrap_servers = "{edge}"
consumer = {session}

[central]
bootstrap_servers = "{central}"
consumer = {session}

[forward]
topics = [{topics}]
"#,
                metrics = self.process.metrics_addr,
                edge = self.edge,
                central = self.central,
                topics = topics.join(", "),
            ),
        )?;
        Ok(())
    }

    pub fn spawn(&mut self) -> Result<()> {
        self.process.spawn(|p| p.metric("ready").is_some())
    }

    pub fn restart(&mut self) -> Result<()> {
        self.process.kill9()?;
        self.spawn()
    }

    /// kill -9, then start under a new group: no committed offsets, as if they were
    /// deleted. The bridge must start from the earliest offsets.
    pub fn restart_without_offsets(&mut self, new_group: &str) -> Result<()> {
        self.process.kill9()?;
        self.write_config(new_group)?;
        self.spawn()
    }

    pub fn metric(&self, name: &str) -> Option<u64> {
        self.process.metric(name)
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
