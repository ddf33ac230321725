//! `evd quarantine list | show | replay --config consumer.toml`: what the consumers
//! set aside, and replaying refused events once the registry is fixed
//! (`evd_consumer::replay` has the rules).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use evd_consumer::commit::Output;
use evd_consumer::config::ConsumerConfig;
use evd_consumer::layout;
use evd_consumer::replay::{self, ReplayError};
use evd_consumer::storage::output_from_url;
use evd_ops::load;
use evd_schemas::Registry;
use evd_schemas::keys::MasterKeyring;
use evd_schemas::wire::batch;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

#[derive(Args)]
pub struct QuarantineArgs {
    /// The consumer config: its output, keyring, registry and `[parquet]` are used.
    #[arg(long)]
    config: PathBuf,
    #[command(subcommand)]
    command: QuarantineCommand,
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// Every quarantined item: reason, type, hour, agent, events; `replayed` once done.
    List,
    /// One item (a name from `list`), decoded where it can be.
    Show { name: String },
    /// Replay items (names from `list`, or every one with `--all`): a document's
    /// events are written once the registry accepts them, exactly once per event; a
    /// whole batch (`….bin`) that opens now (a key was added, a type deployed) is
    /// produced to its type's topic again, where the consumers deliver it once
    /// (their ledger drops a batch already delivered).
    Replay {
        names: Vec<String>,
        #[arg(long)]
        all: bool,
    },
}

pub fn run(args: QuarantineArgs) -> Result<ExitCode> {
    let config = crate::cli_consumer::load_consumer_config(&args.config)?;
    let output = output_from_url(&config.output_url).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match args.command {
            QuarantineCommand::List => list(&output).await,
            QuarantineCommand::Show { name } => {
                let keys = load::master_keyring(&config.keyring_path)?;
                let registry = load::registry_dir(&config.registry_dir)?;
                show(&output, &keys, &registry, &name).await
            }
            QuarantineCommand::Replay { names, all } => {
                let keys = load::master_keyring(&config.keyring_path)?;
                let registry = load::registry_dir(&config.registry_dir)?;
                let names = if all {
                    let mut every = documents(&output).await?;
                    every.extend(batches(&output).await?);
                    every
                } else if names.is_empty() {
                    bail!("name the items to replay (see `evd quarantine list`), or --all");
                } else {
                    names
                };
                let mut failed = 0;
                // One Kafka client for every batch replayed, made at the first.
                let mut producer = None;
                for name in names {
                    let done = if name.ends_with(".jsonl") {
                        replay_document(&output, &keys, &registry, &config, &name).await?
                    } else {
                        replay_batch(&output, &keys, &registry, &config, &mut producer, &name)
                            .await?
                    };
                    failed += u32::from(!done);
                }
                Ok(if failed > 0 {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
        }
    })
}

/// Replays one schema-quarantine document; `false` if its events still fail.
async fn replay_document(
    output: &Output,
    keys: &MasterKeyring,
    registry: &Registry,
    config: &ConsumerConfig,
    name: &str,
) -> Result<bool> {
    match replay::replay_events(output, keys, registry, &config.parquet, name).await {
        Ok(r) => {
            println!(
                "{name}: {} events written (flush {}): {}",
                r.events,
                r.flush_id,
                r.files.join(", ")
            );
            Ok(true)
        }
        Err(e @ (ReplayError::StillInvalid { .. } | ReplayError::TooOld { .. })) => {
            println!("{e}");
            Ok(false)
        }
        Err(e) => Err(anyhow::Error::new(e).context(name.to_string())),
    }
}

/// Produces a quarantined batch to its type's topic again if it opens now; `false`
/// if it still does not. A `.replayed.json` note (create-only) records it.
async fn replay_batch(
    output: &Output,
    keys: &MasterKeyring,
    registry: &Registry,
    config: &ConsumerConfig,
    producer: &mut Option<FutureProducer>,
    name: &str,
) -> Result<bool> {
    let base = name.trim_end_matches(".bin").trim_end_matches(".json");
    let marker = format!("{base}.replayed.json");
    if output.store.head(&output.path(&marker)).await.is_ok() {
        println!("{base}: replayed before (a second copy would be dropped by the consumers)");
        return Ok(true);
    }
    let bytes = read(output, &format!("{base}.bin")).await?;
    let opened = match batch::open(keys, &bytes) {
        Ok(o) => o,
        Err(e) => {
            println!("{base}: still does not open: {e}");
            return Ok(false);
        }
    };
    let meta = &opened.header.meta;
    let Some(ty) = registry.get(&meta.event_type) else {
        println!(
            "{base}: type {:?} is still not in the registry",
            meta.event_type
        );
        return Ok(false);
    };
    let producer = match producer {
        Some(p) => p,
        None => producer.insert(
            evd_runtime::kafka::client_config(&evd_consumer::kafka_clients::acks_producer(
                &config.kafka,
            ))?
            .create()
            .context("kafka producer")?,
        ),
    };
    let topic = ty.topic();
    let (partition, offset) = producer
        .send(
            FutureRecord::to(&topic)
                .key(&meta.agent_id)
                .payload(bytes.as_ref()),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))
        .map(|d| (d.partition, d.offset))?;
    let note = serde_json::json!({
        "replayed_at_ms": evd_schemas::clock::unix_now_ms(),
        "topic": topic, "partition": partition, "offset": offset,
    });
    output
        .create(&output.path(&marker), note.to_string().into_bytes())
        .await?;
    println!(
        "{base}: produced to {topic} [{partition}] @ {offset}: batch {}/{} of {} events",
        meta.origin(),
        meta.batch_seq,
        meta.event_count
    );
    Ok(true)
}

/// The batches kept whole.
async fn batches(output: &Output) -> Result<Vec<String>> {
    Ok(names_under(output, layout::QUARANTINE_DIR)
        .await?
        .into_iter()
        .filter(|n| n.ends_with(".bin"))
        .collect())
}

/// One object's bytes, the error naming it.
async fn read(output: &Output, rel: &str) -> Result<bytes::Bytes> {
    let object = output
        .store
        .get(&output.path(rel))
        .await
        .with_context(|| rel.to_string())?;
    Ok(object.bytes().await?)
}

async fn names_under(output: &Output, dir: &str) -> Result<Vec<String>> {
    let listed: Vec<object_store::ObjectMeta> = output
        .store
        .list(Some(&output.path(dir)))
        .try_collect()
        .await?;
    let mut names: Vec<String> = listed
        .iter()
        .map(|m| output.relative(&m.location))
        .collect();
    names.sort();
    Ok(names)
}

/// The schema-quarantine documents.
async fn documents(output: &Output) -> Result<Vec<String>> {
    Ok(
        names_under(output, &format!("{}/schema", layout::QUARANTINE_DIR))
            .await?
            .into_iter()
            .filter(|n| n.ends_with(".jsonl"))
            .collect(),
    )
}

async fn replayed(output: &Output, doc: &str) -> bool {
    let flush_id = replay::replay_flush_id(doc);
    output
        .store
        .head(&output.path(&layout::done(&flush_id)))
        .await
        .is_ok()
}

async fn list(output: &Output) -> Result<ExitCode> {
    println!(
        "{:<12} {:<22} {:<14} {:>7}  name",
        "reason", "type", "hour", "events"
    );
    for doc in documents(output).await? {
        let events = replay::read_events(output, &doc).await?;
        let mut by: std::collections::BTreeMap<(String, String, String), u64> = Default::default();
        for e in &events {
            let ty = e.event_type.clone().unwrap_or_else(|| "?".into());
            let hour = e
                .bucket_hour
                .map_or("?".into(), |h| evd_schemas::Hour(h).to_string());
            *by.entry((e.reason.split(':').next().unwrap_or("").into(), ty, hour))
                .or_default() += 1;
        }
        let done = if replayed(output, &doc).await {
            "  (replayed)"
        } else {
            ""
        };
        for ((reason, ty, hour), n) in by {
            let reason = if reason.is_empty() {
                "schema".into()
            } else {
                reason
            };
            println!(
                "{:<12} {ty:<22} {hour:<14} {n:>7}  {doc}{done}",
                truncate(&reason, 12)
            );
        }
    }
    for name in names_under(output, layout::QUARANTINE_DIR).await? {
        let Some(base) = name.strip_suffix(".bin") else {
            continue;
        };
        let reason = base.split('/').nth(1).unwrap_or("?");
        let bytes = read(output, &name).await?;
        let (ty, hour, events) = match batch::peek_header(&bytes) {
            Ok(h) => (
                h.meta.event_type,
                h.meta.bucket_hour.to_string(),
                h.meta.event_count.to_string(),
            ),
            Err(_) => ("?".into(), "?".into(), "?".into()),
        };
        let marker = output.path(&format!("{base}.replayed.json"));
        let done = if output.store.head(&marker).await.is_ok() {
            ", replayed"
        } else {
            ""
        };
        println!("{reason:<12} {ty:<22} {hour:<14} {events:>7}  {name}  (whole batch{done})");
    }
    Ok(ExitCode::SUCCESS)
}

fn truncate(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

async fn show(
    output: &Output,
    keys: &evd_schemas::keys::MasterKeyring,
    registry: &evd_schemas::Registry,
    name: &str,
) -> Result<ExitCode> {
    if name.ends_with(".jsonl") {
        let events = replay::read_events(output, name).await?;
        println!(
            "{name}: {} events{}",
            events.len(),
            if replayed(output, name).await {
                ", replayed"
            } else {
                ""
            }
        );
        for e in events {
            let now = match registry.check_line(e.body.as_bytes(), usize::MAX) {
                Ok(_) => "valid now".to_string(),
                Err(why) => format!("still fails: {why}"),
            };
            println!(
                "{}/{}/{} event {}: was {}; {now}\n  {}",
                e.agent_id, e.spool_id, e.batch_seq, e.event_seq, e.reason, e.body
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let base = name.trim_end_matches(".bin").trim_end_matches(".json");
    let note = read(output, &format!("{base}.json")).await?;
    println!("{}", String::from_utf8_lossy(&note));
    let bytes = read(output, &format!("{base}.bin")).await?;
    match batch::peek_header(&bytes) {
        Ok(h) => println!(
            "claimed header (not authenticated): agent {} spool {} batch {} type {} hour {} events {}",
            h.meta.agent_id,
            h.meta.spool_id,
            h.meta.batch_seq,
            h.meta.event_type,
            h.meta.bucket_hour,
            h.meta.event_count
        ),
        Err(e) => println!("header does not parse: {e}"),
    }
    match batch::open(keys, &bytes) {
        Ok(opened) => {
            let known = registry.get(&opened.header.meta.event_type).is_some();
            println!(
                "opens with the current keyring: {} events; type {} the registry",
                opened.records().len(),
                if known { "is in" } else { "is not in" }
            );
            for r in opened.records().iter().take(5) {
                println!("  {} {}", r.event_seq, String::from_utf8_lossy(r.body));
            }
        }
        Err(e) => println!("does not open with the current keyring: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}
