//! A local S3 server (moto, from PyPI) for the consumer's S3 path.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct MotoServer {
    pub port: u16,
    child: Child,
}

impl MotoServer {
    pub fn start() -> Result<MotoServer> {
        let port = crate::free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting moto (scripts/install-test-deps installs it)")?;
        let server = MotoServer { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("moto did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment that points object_store (and boto3) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn boto(&self, script: &str, args: &[&str]) -> Result<()> {
        let status = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .status()?;
        anyhow::ensure!(status.success(), "boto3 script failed");
        Ok(())
    }

    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.boto(
            "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1]).create_bucket(Bucket=sys.argv[2])",
            &[&self.endpoint(), bucket],
        )
    }

    /// Copies every object under `bucket/prefix` into `dir` (same relative paths).
    pub fn download(&self, bucket: &str, prefix: &str, dir: &Path) -> Result<()> {
        let script = r#"
import boto3, os, sys
endpoint, bucket, prefix, out = sys.argv[1:5]
s3 = boto3.client('s3', endpoint_url=endpoint)
for page in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix + '/'):
    for obj in page.get('Contents', []):
        rel = obj['Key'][len(prefix) + 1:]
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(bucket, obj['Key'], path)
"#;
        self.boto(
            script,
            &[&self.endpoint(), bucket, prefix, &dir.display().to_string()],
        )
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
