//! `evd ops`: the auditor and dashboard, and the on-call commands that query it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use evd_consumer::storage::output_from_url;
use evd_ops::auditor::Shared;
use evd_ops::auditor_role::{self, AuditorParts};
use evd_ops::config::OpsConfig;
use evd_ops::load;
use evd_producer::clock::Clock;
use evd_runtime::Stop as CancellationToken;

#[derive(clap::Args)]
pub struct OpsArgs {
    /// Run the auditor and dashboard with this config.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<OpsCommand>,
}

#[derive(clap::Subcommand)]
enum OpsCommand {
    /// Recent hours per event type; exit code 1 when any hour has open data loss.
    Status {
        /// The running auditor's address (its `listen`).
        #[arg(long, default_value = "http://127.0.0.1:9300")]
        url: String,
    },
    /// One (type, hour) in detail; exit code 1 when it closed with data loss.
    Hour {
        event_type: String,
        /// `YYYY-MM-DDTHH` (UTC).
        hour: String,
        #[arg(long, default_value = "http://127.0.0.1:9300")]
        url: String,
    },
}

pub fn run(args: OpsArgs) -> Result<ExitCode> {
    match (args.command, args.config) {
        (Some(OpsCommand::Status { url }), _) => status(&url),
        (
            Some(OpsCommand::Hour {
                event_type,
                hour,
                url,
            }),
            _,
        ) => hour_detail(&url, &event_type, &hour),
        (None, Some(config)) => run_auditor(&config),
        (None, None) => {
            bail!("evd ops: give --config FILE to run the auditor, or a subcommand (status, hour)")
        }
    }
}

/// Reads an ops config; relative paths are resolved against its directory.
pub fn load_ops_config(path: &Path) -> Result<OpsConfig> {
    let (origin, text) = evd_ops::load::config_text(path)?;
    let mut config = OpsConfig::from_toml(&origin, &text)?;
    evd_ops::kafka_check::check_clients(
        &origin,
        &text,
        &[config.kafka.audit_consumer(&config.auditor_id)],
    )?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for relative in [&mut config.registry_dir, &mut config.keyring_path] {
        if relative.is_relative() {
            *relative = dir.join(&*relative);
        }
    }
    Ok(config)
}

fn run_auditor(path: &Path) -> Result<ExitCode> {
    let config = load_ops_config(path)?;
    let registry = load::registry_dir(&config.registry_dir)?;
    let keys = load::master_keyring(&config.keyring_path)?;
    let output = output_from_url(&config.output_url).map_err(anyhow::Error::msg)?;
    let clock: Arc<dyn Clock> = evd_producer::clock::system_or_test_clock();
    let shared = Shared::new(&registry, config.policy(), clock, config.window_hours);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        evd_ops::signals::cancel_on_terminate(stop.clone())?;
        let listener = evd_ops::http::bind(&config.listen).await?;
        tracing::info!(
            auditor_id = %config.auditor_id,
            output = %config.output_url,
            kafka = %config.kafka.bootstrap_servers,
            kafka_options = ?config.kafka.options.keys().collect::<Vec<_>>(),
            "auditor started; dashboard on http://{}/ (ready once the audit topic is read)",
            config.listen
        );
        let parts = AuditorParts {
            config,
            output,
            shared,
            keys,
            listener,
        };
        auditor_role::run(parts, stop).await?;
        anyhow::Ok(())
    })?;
    tracing::info!("auditor stopped");
    Ok(ExitCode::SUCCESS)
}

/// A plain HTTP/1.0 GET; returns the body of a 200 response.
fn get(url: &str, path: &str) -> Result<String> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).with_context(|| {
        format!("connecting to the auditor at {url} (is `evd ops --config …` running?)")
    })?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    // Any HTTP version: the server answers a 1.0 request in 1.0.
    if head.split_whitespace().nth(1) != Some("200") {
        bail!(
            "{url}{path}: {}",
            head.lines().next().unwrap_or("no response")
        );
    }
    Ok(body.to_string())
}

fn status(url: &str) -> Result<ExitCode> {
    let reports: Vec<serde_json::Value> = serde_json::from_str(&get(url, "/api/hours")?)?;
    println!(
        "{:<24} {:<14} {:<11} {:>10} {:>10} {:>8} {:>8} {:>8}",
        "event type", "hour", "state", "published", "delivered", "missing", "quarant", "skew"
    );
    let (mut loss, mut unverified) = (0, 0);
    for r in &reports {
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        let state = r["state"].as_str().unwrap_or("?");
        if state == "incomplete" && n("missing") > 0 {
            loss += 1;
        }
        if state == "unverified" {
            unverified += 1;
        }
        println!(
            "{:<24} {:<14} {:<11} {:>10} {:>10} {:>8} {:>8} {:>8}",
            r["event_type"].as_str().unwrap_or("?"),
            r["hour"].as_str().unwrap_or("?"),
            state,
            n("published"),
            n("delivered"),
            n("missing"),
            n("quarantined"),
            n("skew")
        );
    }
    if unverified > 0 {
        println!(
            "UNVERIFIED: {unverified} hour(s) closed while hosts alive in them never reported \
             (evd ops hour TYPE HOUR names them)"
        );
    }
    if loss > 0 {
        println!("DATA LOSS: {loss} hour(s) closed incomplete (evd ops hour TYPE HOUR for detail)");
    }
    Ok(if loss + unverified > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn hour_detail(url: &str, event_type: &str, hour: &str) -> Result<ExitCode> {
    let h = evd_schemas::Hour::parse(hour)
        .with_context(|| format!("{hour:?}: expected YYYY-MM-DDTHH"))?;
    let body = get(url, &format!("/api/hour/{event_type}/{}", h.0))?;
    let r: serde_json::Value = serde_json::from_str(&body)?;
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    println!("{event_type} {h}: {}", r["state"].as_str().unwrap_or("?"));
    println!(
        "  published {}  delivered {}  quarantined {}  missing {}  duplicates {}  skew {}",
        n("published"),
        n("delivered"),
        n("quarantined"),
        n("missing"),
        n("duplicates"),
        n("skew")
    );
    for a in r["agents"].as_array().into_iter().flatten() {
        println!(
            "  host {:<20} published {:>8} delivered {:>8} missing {:>6} reported {} missing batch seqs {}",
            a["agent_id"].as_str().unwrap_or("?"),
            a["published"],
            a["delivered"],
            a["missing"],
            a["reported"],
            a["missing_batch_seqs"]
        );
    }
    if let Some(files) = r["closed"]["files"].as_array() {
        println!("  closed with {} files", files.len());
    }
    let loss = r["state"] == "incomplete" && n("missing") > 0;
    Ok(if loss || r["state"] == "unverified" {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
