//! `evd`: one binary for every role. Subcommands stay thin; logic lives in the crates.

mod cli_agent;
mod cli_bridge;
mod cli_consumer;
mod cli_demo;
mod cli_keys;
mod cli_ops;
mod cli_probe;
mod cli_quarantine;
mod cli_topics;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use evd_ops::load;

#[derive(Parser)]
#[command(
    name = "evd",
    version,
    about = "evd: event delivery that loses nothing it acked"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr as text or as one JSON object per line. Levels come from
    /// `RUST_LOG` (default `info`; e.g. `RUST_LOG=warn,evd_consumer=debug`).
    #[arg(long, global = true, value_enum, default_value_t = evd_ops::logging::LogFormat::Text)]
    log_format: evd_ops::logging::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Check a registry directory, a keyring file or a config file, and say what is wrong.
    Validate {
        /// A registry directory, or a TOML file (keyring or config).
        path: PathBuf,
        /// Also touch what a config names: write, create-only twice, read and delete a
        /// probe object in the output store; reach the Kafka cluster with the role's
        /// settings and check its topics exist.
        #[arg(long)]
        connect: bool,
    },
    /// Check that a changed registry may replace the current one (compatibility rule).
    RegistryCheck {
        /// The registry in production.
        old: PathBuf,
        /// The proposed registry.
        new: PathBuf,
    },
    /// Create and derive keys.
    #[command(subcommand)]
    Keys(cli_keys::KeysCommand),
    /// What the consumers set aside: list, show, and replay refused events once the
    /// registry accepts them.
    Quarantine(cli_quarantine::QuarantineArgs),
    /// What the registry means for readers of the buckets.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Run the agent (socket → spool → batches → Kafka, freed by end-to-end acks).
    Agent {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a consumer (Kafka → Parquet on object storage → acks).
    Consumer {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a broker-bridge: event topics edge → central, acks central → edge.
    Bridge {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the auditor and dashboard (`--config`), or ask it (`status`, `hour`).
    Ops(cli_ops::OpsArgs),
    /// Send event lines from stdin to an agent's socket; exit 1 if any is refused.
    Send {
        #[arg(long)]
        socket: PathBuf,
        /// Print only errors, not one `{"ok":SEQ}` per event.
        #[arg(long)]
        quiet: bool,
    },
    /// Run the whole pipeline in-process with a load generator and the dashboard.
    Demo(cli_demo::DemoArgs),
    /// The Kafka topics a config's role uses: print the plan, create them, or check
    /// that they exist (exit 1 naming the missing ones).
    Topics(cli_topics::TopicsArgs),
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Print the table definition of an event type's bucket (Hive layout
    /// `<location>/<Type>/date=…/hour=…/*.parquet`) for an SQL engine.
    Ddl {
        /// The registry directory.
        #[arg(long)]
        registry: PathBuf,
        #[arg(long, value_enum)]
        dialect: evd_ops::ddl::Dialect,
        /// Where the consumers write: the output URL (`s3://bucket/prefix`) or, for
        /// `file://` outputs, the directory.
        #[arg(long)]
        location: String,
        /// Define the closed-hours table instead (`<Type>_closed_hours`, one file per
        /// closed hour, written by the auditor with `[combine] enabled`).
        #[arg(long)]
        closed_hours: bool,
        /// The event type.
        event_type: String,
    },
}

fn schema(cmd: SchemaCommand) -> Result<ExitCode> {
    let SchemaCommand::Ddl {
        registry,
        dialect,
        location,
        closed_hours,
        event_type,
    } = cmd;
    let table = if closed_hours {
        evd_ops::ddl::Table::ClosedHours
    } else {
        evd_ops::ddl::Table::Live
    };
    let registry = load::registry_dir(&registry)?;
    let Some(ty) = registry.get(&event_type) else {
        bail!("event type {event_type:?} is not in the registry");
    };
    print!("{}", evd_ops::ddl::ddl(ty, dialect, table, &location));
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    evd_ops::logging::init(cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("evd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { path, connect } => validate(&path, connect),
        Command::RegistryCheck { old, new } => registry_check(&old, &new),
        Command::Keys(cmd) => cli_keys::run(cmd),
        Command::Schema(cmd) => schema(cmd),
        Command::Quarantine(args) => cli_quarantine::run(args),
        Command::Agent { config } => cli_agent::run_agent(&config),
        Command::Send { socket, quiet } => cli_agent::run_send(&socket, quiet),
        Command::Consumer { config } => cli_consumer::run_consumer(&config),
        Command::Ops(args) => cli_ops::run(args),
        Command::Demo(args) => cli_demo::run(args),
        Command::Topics(args) => cli_topics::run(args),
        Command::Bridge { config } => cli_bridge::run_bridge(&config),
    }
}

fn validate(path: &Path, connect: bool) -> Result<ExitCode> {
    if path.is_dir() {
        let registry = load::registry_dir(path)?;
        println!(
            "{}: registry OK, {} event types",
            path.display(),
            registry.len()
        );
        for ty in registry.types() {
            println!(
                "  {} v{} (tier {}, owner {}, topic {}, {} fields)",
                ty.name,
                ty.version,
                ty.tier.as_str(),
                ty.owner,
                ty.topic(),
                ty.fields.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (_, text) = load::config_text(path)?;
    if text.lines().any(|l| l.trim_start().starts_with("kind")) && text.contains("[[keys]]") {
        if text.contains("\"master\"") {
            let ring = load::master_keyring(path)?;
            println!(
                "{}: master keyring OK, key ids {:?}",
                path.display(),
                ring.key_ids().collect::<Vec<_>>()
            );
        } else {
            let ring = load::agent_keyring(path)?;
            println!(
                "{}: agent keyring OK for agent {:?}",
                path.display(),
                ring.agent_id()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let kind = config_kind(path, &text)?;
    validate_config(path, kind)?;
    if connect {
        cli_probe::run(path, kind)?;
        println!(
            "{}: connected: the store and the cluster answer as evd needs",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Keys only an ops config has; a file with `output_url` and none of them is read as a
/// consumer config (the two share every required key).
const OPS_ONLY_KEYS: [&str; 9] = [
    "auditor_id",
    "host_retire_after_ms",
    "listen",
    "scan_interval_ms",
    "late_after_ms",
    "deadline_high_ms",
    "deadline_normal_ms",
    "deadline_low_ms",
    "window_hours",
];

/// The role a config file configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfigKind {
    Agent,
    Consumer,
    Bridge,
    Ops,
}

/// Which config a file is, from its top-level keys.
fn config_kind(path: &Path, text: &str) -> Result<ConfigKind> {
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not TOML", path.display()))?;
    let has = |k: &str| table.contains_key(k);
    Ok(if has("spool") || has("socket") {
        ConfigKind::Agent
    } else if has("output_url") && !OPS_ONLY_KEYS.iter().any(|k| has(k)) {
        ConfigKind::Consumer
    } else if has("edge") && has("central") {
        ConfigKind::Bridge
    } else if has("output_url") {
        ConfigKind::Ops
    } else {
        bail!(
            "{}: not a registry directory, keyring, or agent/consumer/bridge/ops config",
            path.display()
        )
    })
}

/// Which config a file is; then the same loading as at start, including the registry
/// and keyring it names.
fn validate_config(path: &Path, kind: ConfigKind) -> Result<()> {
    match kind {
        ConfigKind::Agent => {
            let config = cli_agent::load_agent_config(path)?;
            let registry = load::registry_dir(&config.registry_dir)?;
            load::agent_keyring(&config.keyring_path)?;
            evd_producer::tail::shell::check_sources(&config.sources, &registry)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            println!(
                "{}: agent config OK (agent {:?})",
                path.display(),
                config.agent_id()
            );
        }
        ConfigKind::Consumer => {
            let config = cli_consumer::load_consumer_config(path)?;
            let registry = load::registry_dir(&config.registry_dir)?;
            config
                .parquet
                .check_columns(&registry)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            load::master_keyring(&config.keyring_path)?;
            println!(
                "{}: consumer config OK (output {})",
                path.display(),
                config.output_url
            );
        }
        ConfigKind::Bridge => {
            let config = cli_bridge::load_bridge_config(path)?;
            println!(
                "{}: bridge config OK ({} → {})",
                path.display(),
                config.edge.bootstrap_servers,
                config.central.bootstrap_servers
            );
        }
        ConfigKind::Ops => {
            let config = cli_ops::load_ops_config(path)?;
            load::registry_dir(&config.registry_dir)?;
            load::master_keyring(&config.keyring_path)?;
            println!(
                "{}: ops config OK (dashboard on {})",
                path.display(),
                config.listen
            );
        }
    }
    Ok(())
}

fn registry_check(old: &Path, new: &Path) -> Result<ExitCode> {
    let old = load::registry_dir(old)?;
    let new = load::registry_dir(new)?;
    let mut problems = 0;
    for ty in old.types() {
        match new.get(&ty.name) {
            None => {
                println!(
                    "{}: removed (existing buckets stay; producers must stop sending it)",
                    ty.name
                );
            }
            Some(next) => {
                if let Err(why) = evd_schemas::registry::check_evolution(ty, next) {
                    println!("{why}");
                    problems += 1;
                }
            }
        }
    }
    if problems > 0 {
        bail!("{problems} incompatible change(s)");
    }
    println!("compatible");
    Ok(ExitCode::SUCCESS)
}
