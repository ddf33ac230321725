//! `evd validate --connect FILE`: the offline checks, then the object store and the
//! Kafka cluster the file names ([`evd_ops::probe`]).

use std::path::Path;

use anyhow::{Result, bail};
use evd_consumer::storage::output_from_url;
use evd_ops::probe;
use evd_schemas::kafka_client::cluster_client;

use crate::{ConfigKind, cli_bridge, cli_consumer, cli_ops, cli_topics};

/// Probes what a config of `kind` at `path` names; prints each step.
pub fn run(path: &Path, kind: ConfigKind) -> Result<()> {
    let output_url = match kind {
        ConfigKind::Consumer => Some(cli_consumer::load_consumer_config(path)?.output_url),
        ConfigKind::Ops => Some(cli_ops::load_ops_config(path)?.output_url),
        ConfigKind::Agent | ConfigKind::Bridge => None,
    };
    if let Some(url) = output_url {
        let output = output_from_url(&url).map_err(anyhow::Error::msg)?;
        let runtime = tokio::runtime::Runtime::new()?;
        for step in runtime
            .block_on(probe::probe_store(&output))
            .map_err(|e| anyhow::anyhow!("object store {url}: {e}"))?
        {
            println!("  store: {step}");
        }
    }
    if kind == ConfigKind::Bridge {
        // Both clusters, whichever routes are on.
        let config = cli_bridge::load_bridge_config(path)?;
        for (side, cluster) in [("edge", &config.edge), ("central", &config.central)] {
            let spec = cluster_client(
                "bridge probe",
                &cluster.bootstrap_servers,
                evd_bridge::kafka_clients::paths(side).options,
                &cluster.options,
            );
            let settings = spec.settings().map_err(anyhow::Error::msg)?;
            let brokers = probe::probe_kafka(&settings.into_iter().collect())
                .map_err(|e| anyhow::anyhow!("{side} cluster: {e}"))?;
            println!("  kafka {side}: {brokers} broker(s) answer");
        }
        return Ok(());
    }
    let (plans, client) = cli_topics::plan_for(path, 12, 3)?;
    let brokers = probe::probe_kafka(&client).map_err(anyhow::Error::msg)?;
    println!("  kafka: {brokers} broker(s) answer");
    let report = evd_ops::topics::check(&client, &plans).map_err(anyhow::Error::msg)?;
    if !report.missing.is_empty() {
        bail!(
            "topics missing: {} (create them: evd topics create --config {})",
            report.missing.join(", "),
            path.display()
        );
    }
    println!("  kafka: the role's {} topics exist", report.present.len());
    Ok(())
}
