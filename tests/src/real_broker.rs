//! A real Kafka-protocol broker process (tansu) for end-to-end and fault tests.
//!
//! The binary is found as `$EVD_TANSU`, else `tansu` on `PATH`, else
//! `~/.cargo/bin/tansu`; `scripts/install-test-deps` installs it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::fault_proxy::FaultProxy;
use crate::kafka;

pub struct RealBroker {
    dir: TempDir,
    port: u16,
    binary: PathBuf,
    child: Option<Child>,
    /// When set, the broker advertises this proxy and clients go through it.
    proxy: Option<FaultProxy>,
    /// When set, the broker advertises this port of a front the test runs (TLS).
    front_port: Option<u16>,
}

impl RealBroker {
    /// Starts a broker on a free port with fresh storage and waits until it answers.
    pub fn start() -> Result<RealBroker> {
        Self::launch(crate::free_port(), None, None)
    }

    /// Like [`start`](Self::start), behind a [`FaultProxy`]: the broker advertises the
    /// proxy's address, so every client connection passes through it.
    pub fn start_behind_proxy() -> Result<RealBroker> {
        let port = crate::free_port();
        let proxy = FaultProxy::start(&format!("127.0.0.1:{port}"))?;
        Self::launch(port, Some(proxy), None)
    }

    /// Starts a broker that advertises `front_port`, where the test runs a front of its
    /// own (a [`crate::tls_front::TlsFront`]); [`direct_bootstrap`](Self::direct_bootstrap)
    /// reaches the broker itself.
    pub fn start_advertising(front_port: u16) -> Result<RealBroker> {
        Self::launch(crate::free_port(), None, Some(front_port))
    }

    fn launch(port: u16, proxy: Option<FaultProxy>, front_port: Option<u16>) -> Result<RealBroker> {
        let mut broker = RealBroker {
            dir: tempfile::Builder::new().prefix("evd-tansu-").tempdir()?,
            port,
            binary: tansu_binary()?,
            child: None,
            proxy,
            front_port,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// The broker's own plaintext address (metadata still names the advertised one).
    pub fn direct_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where clients connect: the proxy when there is one.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port())
    }

    /// Whether the broker itself (not the proxy) answers a metadata request on a new
    /// connection within `timeout`.
    pub fn answers_directly(&self, timeout: Duration) -> bool {
        // Metadata names the advertised (proxy) address, but the request goes direct.
        kafka::metadata_answers(&format!("127.0.0.1:{}", self.port), timeout)
    }

    fn advertised_port(&self) -> u16 {
        match (&self.proxy, self.front_port) {
            (Some(proxy), _) => proxy.port(),
            (None, Some(front)) => front,
            (None, None) => self.port,
        }
    }

    /// The proxy in front of the broker (`start_behind_proxy`).
    pub fn proxy(&self) -> Option<&FaultProxy> {
        self.proxy.as_ref()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) -> Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port());
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))?;
        let child = Command::new(&self.binary)
            .arg("broker")
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            // tansu resolves the sqlite path against its working directory.
            .args(["--storage-engine", "sqlite://broker.db"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "tansu exited with {status} during start; log:\n{}",
                    self.log_tail()
                );
            }
            let address = match self.front_port {
                Some(_) => self.direct_bootstrap(),
                None => self.bootstrap(),
            };
            if kafka::metadata_answers(&address, Duration::from_secs(2)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "tansu did not answer metadata within {timeout:?}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the broker's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn signal(&self, signal: libc::c_int) -> Result<()> {
        let child = self.child.as_ref().context("broker is not running")?;
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        if unsafe { libc::kill(child.id() as libc::pid_t, signal) } != 0 {
            bail!("kill({signal}) failed: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// `kill -9` the broker and reap it. Data written so far stays in its storage.
    pub fn kill(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.signal(libc::SIGKILL)?;
            self.child.take().expect("checked above").wait()?;
        }
        Ok(())
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// `SIGSTOP`: the broker keeps its sockets but answers nothing.
    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// `SIGCONT` after [`pause`](Self::pause).
    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        kafka::create_topic(&self.bootstrap(), name, partitions)
    }
}

impl Drop for RealBroker {
    fn drop(&mut self) {
        let _ = self.resume();
        let _ = self.kill();
    }
}

fn tansu_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("EVD_TANSU") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"));
    let in_cargo_home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    on_path
        .chain(in_cargo_home)
        .find(|p| p.is_file())
        .context("tansu not found: run scripts/install-test-deps (or set EVD_TANSU)")
}
