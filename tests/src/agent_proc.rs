//! The agent as a real process (`evd agent`), with kill -9 and restart on its spool.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use evd_schemas::{Key, MasterKeyring};

/// The master keyring every test uses (consumers and test readers hold it).
pub fn test_master_keyring() -> MasterKeyring {
    MasterKeyring::new([(1, Key([0x5a; 32]))])
}

/// The example registry shipped with the repo.
pub fn example_registry_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry")
}

/// The `evd` binary of the same build profile as the running test or bench
/// (`cargo test --workspace` builds it): next to it, or one level up from `deps/`.
pub fn evd_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own binary path");
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("evd"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no evd binary near {}: build it (cargo test --workspace)",
                exe.display()
            )
        })
}

pub struct AgentProcess {
    pub dir: PathBuf,
    pub agent_id: String,
    child: Option<Child>,
    config: PathBuf,
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
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            retransmit_after_ms: 30_000,
            extra: String::new(),
            socket_extra: String::new(),
            registry_dir: None,
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
        std::fs::write(
            &config,
            format!(
                r#"agent_id = "{agent_id}"
registry_dir = "{registry}"
keyring_path = "agent-keys.toml"
retransmit_after_ms = {retransmit}
heartbeat_interval_ms = 1000
metrics_listen = "127.0.0.1:{metrics_port}"

[socket]
path = "run/agent.sock"
{socket_extra}

[spool]
dir = "spool"
segment_bytes = 4194304

[kafka]
bootstrap_servers = "{bootstrap}"
{extra}
"#,
                registry = opts
                    .registry_dir
                    .clone()
                    .unwrap_or_else(example_registry_dir)
                    .display(),
                retransmit = opts.retransmit_after_ms,
                metrics_port = crate::free_port(),
                extra = opts.extra,
                socket_extra = opts.socket_extra,
            ),
        )?;
        let mut agent = AgentProcess {
            dir: dir.to_path_buf(),
            agent_id: agent_id.to_string(),
            child: None,
            config,
        };
        agent.spawn()?;
        Ok(agent)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/agent.sock")
    }

    pub fn metrics_url(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.config).ok()?;
        let line = text.lines().find(|l| l.starts_with("metrics_listen"))?;
        Some(line.split('"').nth(1)?.to_string())
    }

    /// One metric's value from the agent's `/metrics`.
    pub fn metric(&self, name: &str) -> Option<u64> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.metrics_url()?).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).ok()?;
        let prefix = format!("evd_agent_{name} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
    }

    fn spawn(&mut self) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))?;
        let child = Command::new(evd_binary())
            .args(["agent", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting evd agent")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("agent exited with {status}:\n{}", self.log_tail());
            }
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("agent socket did not come up:\n{}", self.log_tail())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn restart(&mut self) -> Result<()> {
        self.kill9()?;
        self.spawn()
    }

    /// Sends a signal to the running agent.
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(true);
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        Ok(child.wait()?.success())
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
