//! The agent as a real process (`evd agent`), with kill -9 and restart on its spool.

use std::path::{Path, PathBuf};

use anyhow::Result;
use evd_schemas::{Key, MasterKeyring};

use crate::process::EvdProcess;
pub use crate::process::evd_binary;

/// The master keyring every test uses (consumers and test readers hold it).
pub fn test_master_keyring() -> MasterKeyring {
    MasterKeyring::new([(1, Key([0x5a; 32]))])
}

/// The example registry shipped with the repo.
pub fn example_registry_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry")
}

pub struct AgentProcess {
    pub dir: PathBuf,
    pub agent_id: String,
    pub process: EvdProcess,
}

/// Knobs tests change; everything else uses the agent's defaults.
pub struct AgentOptions {
    pub retransmit_after_ms: u64,
    /// TOML lines for the `[kafka]` table.
    pub extra: String,
    /// TOML lines for the `[socket]` table.
    pub socket_extra: String,
    /// Registry directory; the example registry when unset.
    pub registry_dir: Option<PathBuf>,
    /// Environment of the agent process (test-only fault switches).
    pub env: Vec<(String, String)>,
    /// TOML appended at the end of the config (`[[sources]]`, `[tailer]`).
    pub tail: String,
    /// TOML lines for the `[spool]` table (`max_bytes = …`).
    pub spool_extra: String,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            retransmit_after_ms: 30_000,
            extra: String::new(),
            socket_extra: String::new(),
            registry_dir: None,
            env: Vec::new(),
            tail: String::new(),
            spool_extra: String::new(),
        }
    }
}

impl AgentProcess {
    /// Writes a config, keyring and spool under `dir` and starts the agent.
    pub fn start(
        dir: &Path,
        agent_id: &str,
        bootstrap: &str,
        opts: AgentOptions,
    ) -> Result<AgentProcess> {
        std::fs::create_dir_all(dir)?;
        let keyring = dir.join("agent-keys.toml");
        if !keyring.exists() {
            std::fs::write(
                &keyring,
                test_master_keyring()
                    .derive_agent_keyring(agent_id)
                    .to_toml(),
            )?;
        }
        let config = dir.join("agent.toml");
        let metrics_addr = format!("127.0.0.1:{}", crate::free_port());
        std::fs::write(
            &config,
            format!(
                r#"agent_id = "{agent_id}"
registry_dir = "{registry}"
keyring_path = "agent-keys.toml"
retransmit_after_ms = {retransmit}
heartbeat_interval_ms = 1000
metrics_listen = "{metrics_addr}"

[socket]
path = "run/agent.sock"
{socket_extra}

[spool]
dir = "spool"
segment_bytes = 4194304
{spool_extra}

[kafka]
bootstrap_servers = "{bootstrap}"
{extra}

{tail}
"#,
                registry = opts
                    .registry_dir
                    .clone()
                    .unwrap_or_else(example_registry_dir)
                    .display(),
                retransmit = opts.retransmit_after_ms,
                extra = opts.extra,
                socket_extra = opts.socket_extra,
                tail = opts.tail,
                spool_extra = opts.spool_extra,
            ),
        )?;
        let mut agent = AgentProcess {
            dir: dir.to_path_buf(),
            agent_id: agent_id.to_string(),
            process: EvdProcess::new("agent", dir, config, metrics_addr),
        };
        agent.process.env = opts.env;
        agent.spawn()?;
        Ok(agent)
    }

    fn spawn(&mut self) -> Result<()> {
        let socket = self.socket();
        self.process
            .spawn(|_| std::os::unix::net::UnixStream::connect(&socket).is_ok())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/agent.sock")
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn metric(&self, name: &str) -> Option<u64> {
        self.process.metric(name)
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    pub fn kill9(&mut self) -> Result<()> {
        self.process.kill9()
    }

    pub fn restart(&mut self) -> Result<()> {
        self.process.kill9()?;
        self.spawn()
    }

    pub fn signal(&self, signal: libc::c_int) {
        self.process.signal(signal)
    }

    pub fn terminate(&mut self) -> Result<bool> {
        self.process.terminate()
    }
}
