//! Any `evd <role> --config FILE` as a child process: kill -9, restart, signals, logs
//! and its `/metrics`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

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
                "no evd binary near {}: build it: cargo test --workspace builds it (or cargo build -p evd-ops)",
                exe.display()
            )
        })
}

pub struct EvdProcess {
    role: &'static str,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub metrics_addr: String,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl EvdProcess {
    pub fn new(
        role: &'static str,
        dir: &Path,
        config: PathBuf,
        metrics_addr: String,
    ) -> EvdProcess {
        EvdProcess {
            role,
            dir: dir.to_path_buf(),
            config,
            metrics_addr,
            env: Vec::new(),
            child: None,
        }
    }

    /// Starts the process and waits until `ready` says so (or it exits).
    pub fn spawn(&mut self, ready: impl Fn(&EvdProcess) -> bool) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(evd_binary())
            .arg(self.role)
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting evd {}", self.role))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "evd {} exited with {status}:\n{}",
                    self.role,
                    self.log_tail()
                );
            }
            if ready(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "evd {} did not become ready:\n{}",
            self.role,
            self.log_tail()
        )
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.role))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs (false after it exited, e.g. an injected abort).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait()?;
        }
        Ok(())
    }

    pub fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// SIGTERM and wait; returns whether it exited 0.
    pub fn terminate(&mut self) -> Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(true);
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        Ok(child.wait()?.success())
    }

    /// `GET path` on the process's HTTP address: status and body, `None` when nothing
    /// answers.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.metrics_addr).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Some((status, body.to_string()))
    }

    /// One metric's value from `/metrics`: `evd_<role>_<name>_total` for a counter,
    /// `evd_<role>_<name>` otherwise, summed over its label sets.
    pub fn metric(&self, name: &str) -> Option<u64> {
        let (_, body) = self.http_get("/metrics")?;
        metric_value(&body, name)
    }
}

/// The value of `name` in an exposition text (see [`EvdProcess::metric`]).
pub fn metric_value(text: &str, name: &str) -> Option<u64> {
    let (counter, plain) = (format!("_{name}_total"), format!("_{name}"));
    let mut found = None;
    for line in text.lines().filter(|l| l.starts_with("evd_")) {
        let series = line.split(['{', ' ']).next().unwrap_or("");
        let role = series
            .strip_suffix(counter.as_str())
            .or_else(|| series.strip_suffix(plain.as_str()));
        // `evd_<role>` has exactly one underscore: `_x` must not match `evd_a_b_x`.
        if role.is_some_and(|r| r.matches('_').count() == 1) {
            let v: f64 = line.rsplit(' ').next()?.trim().parse().ok()?;
            *found.get_or_insert(0) += v as u64;
        }
    }
    found
}

impl Drop for EvdProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
