//! `evd topics plan|create|check --config <role config>` ([`evd_ops::topics`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use evd_ops::topics::{self, PlanSettings, TopicPlan};
use evd_schemas::kafka_client::cluster_client;
use rdkafka::ClientConfig;

use crate::{ConfigKind, cli_agent, cli_consumer, cli_ops, config_kind};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TopicsAction {
    /// Print the topics and their settings; touches nothing.
    Plan,
    /// Create the topics that are missing (existing ones are left as they are).
    Create,
    /// Exit 1 if a topic the role needs is missing.
    Check,
}

#[derive(Debug, Args)]
pub struct TopicsArgs {
    action: TopicsAction,
    /// An agent, consumer or ops config: its topics, cluster and `[kafka.options]`.
    #[arg(long)]
    config: PathBuf,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Replicas of each topic (`min.insync.replicas` is one less, at least 1).
    #[arg(long, default_value_t = 3)]
    replication: i32,
}

pub fn run(args: TopicsArgs) -> Result<ExitCode> {
    let (plans, client) = plan_for(&args.config, args.partitions, args.replication)?;
    match args.action {
        TopicsAction::Plan => print!("{}", topics::render(&plans)),
        TopicsAction::Create => {
            let runtime = tokio::runtime::Runtime::new()?;
            for line in runtime
                .block_on(topics::create(&client, &plans))
                .map_err(anyhow::Error::msg)?
            {
                println!("{line}");
            }
        }
        TopicsAction::Check => {
            let report = topics::check(&client, &plans).map_err(anyhow::Error::msg)?;
            for name in &report.present {
                println!("ok      {name}");
            }
            for note in &report.notes {
                println!("note    {note}");
            }
            for name in &report.missing {
                println!("MISSING {name}");
            }
            if !report.missing.is_empty() {
                bail!(
                    "{} topic(s) missing: create them with `evd topics create --config {}`",
                    report.missing.len(),
                    args.config.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The role's topics and an admin client configuration with its cluster and options.
pub fn plan_for(
    path: &Path,
    partitions: i32,
    replication: i32,
) -> Result<(Vec<TopicPlan>, ClientConfig)> {
    let (_, text) = evd_ops::load::config_text(path)?;
    let mut settings = PlanSettings {
        partitions,
        replication,
        window_hours: 48,
    };
    let (events, acks, audit, bootstrap, options) = match config_kind(path, &text)? {
        ConfigKind::Agent => {
            let c = cli_agent::load_agent_config(path)?;
            let registry = evd_ops::load::registry_dir(&c.registry_dir)?;
            let events = registry.types().map(|t| t.topic()).collect();
            let k = c.kafka;
            (
                events,
                Some(k.acks_topic),
                Some(k.audit_topic),
                k.bootstrap_servers,
                k.options,
            )
        }
        ConfigKind::Consumer => {
            let c = cli_consumer::load_consumer_config(path)?;
            let registry = evd_ops::load::registry_dir(&c.registry_dir)?;
            let k = c.kafka;
            let events = registry
                .types()
                .filter(|t| k.event_types.is_empty() || k.event_types.contains(&t.name))
                .map(|t| t.topic())
                .collect();
            (
                events,
                Some(k.acks_topic),
                None,
                k.bootstrap_servers,
                k.options,
            )
        }
        ConfigKind::Ops => {
            let c = cli_ops::load_ops_config(path)?;
            settings.window_hours = c.window_hours as u64;
            let k = c.kafka;
            (
                Vec::new(),
                None,
                Some(k.audit_topic),
                k.bootstrap_servers,
                k.options,
            )
        }
        ConfigKind::Bridge => bail!(
            "{}: a bridge uses the topics of the sites it joins: run `evd topics` with the agents' and consumers' configs of each site",
            path.display()
        ),
    };
    let plans = topics::plan(&events, acks.as_deref(), audit.as_deref(), &settings);
    let spec = cluster_client("topics admin", &bootstrap, "kafka.options", &options);
    let settings = spec.settings().map_err(anyhow::Error::msg)?;
    Ok((plans, settings.into_iter().collect()))
}
