//! A TLS-terminating front (stunnel) before a plaintext broker: clients speak TLS to
//! the front, which forwards to the broker. The certificate is made per test with the
//! `openssl` command (a throwaway CA and a server certificate for 127.0.0.1), so the
//! clients verify the broker as they would in production.
//!
//! `scripts/install-test-deps` installs stunnel4 and openssl.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct TlsFront {
    port: u16,
    ca: PathBuf,
    child: Child,
}

impl TlsFront {
    /// A free port the front will listen on; start the broker advertising it, then
    /// call [`start`](Self::start).
    pub fn reserve_port() -> u16 {
        crate::free_port()
    }

    /// Starts stunnel on `port`, forwarding to `target` (`host:port`), with a fresh CA
    /// and certificate under `dir`.
    pub fn start(dir: &Path, port: u16, target: &str) -> Result<TlsFront> {
        std::fs::create_dir_all(dir)?;
        make_certificates(dir)?;
        let conf = dir.join("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\noutput = {log}\n\n[kafka]\naccept = 127.0.0.1:{port}\nconnect = {target}\ncert = {cert}\nkey = {key}\n",
                log = dir.join("stunnel.log").display(),
                cert = dir.join("server.pem").display(),
                key = dir.join("server.key").display(),
            ),
        )?;
        let binary = ["stunnel4", "stunnel"]
            .into_iter()
            .find(|b| which(b))
            .context("stunnel is not installed: run scripts/install-test-deps")?;
        let child = Command::new(binary)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let front = TlsFront {
            port,
            ca: dir.join("ca.pem"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("stunnel did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(front)
    }

    /// `host:port` for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA that signed the front's certificate (`ssl.ca.location`).
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// The librdkafka settings a client needs for this front, as a TOML inline table.
    pub fn client_options_toml(&self) -> String {
        format!(
            r#"{{ "security.protocol" = "SSL", "ssl.ca.location" = "{}" }}"#,
            self.ca.display()
        )
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA, and a server certificate for 127.0.0.1 / localhost signed by it.
fn make_certificates(dir: &Path) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("running openssl (install it: scripts/install-test-deps)")?;
        if !out.status.success() {
            bail!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=evd test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ])
}
