//! The auditor as a real process (`evd ops`): it scans the bed's output, reads the
//! audit topic and closes hours; its dashboard and metrics share one listener.

use std::path::Path;

use anyhow::Result;

use crate::agent_proc::{example_registry_dir, test_master_keyring};
use crate::process::EvdProcess;

/// Knobs tests change. The default policy is short so hours close within a test:
/// scans every 300 ms, late after 1 s, every tier's deadline 10 s.
#[derive(Debug, Clone)]
pub struct AuditorOptions {
    /// TOML lines for the top of `ops.toml` (scan interval, lateness, deadlines).
    pub policy: String,
    /// Environment of the process (test-only switches such as the clock offset).
    pub env: Vec<(String, String)>,
}

impl Default for AuditorOptions {
    fn default() -> Self {
        AuditorOptions {
            policy: "scan_interval_ms = 300\nlate_after_ms = 1000\ndeadline_high_ms = 10000\n\
                     deadline_normal_ms = 10000\ndeadline_low_ms = 10000\n"
                .into(),
            env: Vec::new(),
        }
    }
}

/// Writes a config and keyring under `dir` and starts an auditor over `out` (a local
/// `file://` store) and the audit topic on `bootstrap`; returns once it has scanned.
pub fn start_auditor(
    dir: &Path,
    bootstrap: &str,
    out: &Path,
    opts: AuditorOptions,
) -> Result<EvdProcess> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("master.toml"), test_master_keyring().to_toml())?;
    let listen = format!("127.0.0.1:{}", crate::free_port());
    let config = dir.join("ops.toml");
    std::fs::write(
        &config,
        format!(
            "auditor_id = \"ops-test\"\nregistry_dir = \"{registry}\"\nkeyring_path = \"master.toml\"\n\
             output_url = \"file://{out}\"\nlisten = \"{listen}\"\n{policy}\
             [kafka]\nbootstrap_servers = \"{bootstrap}\"\n",
            registry = example_registry_dir().display(),
            out = out.display(),
            policy = opts.policy,
        ),
    )?;
    let mut ops = EvdProcess::new("ops", dir, config, listen);
    ops.env = opts.env;
    ops.spawn(|p| p.metric("files_scanned_total").is_some())?;
    Ok(ops)
}
