//! `evd topics plan|create|check`: the Kafka topics a role's config uses, with the
//! settings evd needs of them. [`plan`] is pure; [`create`] and [`check`] talk to the
//! cluster with the role's own `[kafka.options]` (security), through rdkafka's admin
//! client and metadata.
//!
//! | topic | partitions | why |
//! |---|---|---|
//! | `evd.events.<Type>` per registry type | `--partitions` (12) | batches; consumers split them |
//! | `evd.acks` | `--partitions` (12) | end-to-end acks; each agent reads one partition |
//! | `evd.audit` | `--partitions` (12) | heartbeats and announcements the auditor reads |
//!
//! Every topic gets `min.insync.replicas` (replication − 1, at least 1), so `acks=all`
//! means what it says; retention covers a week of outage for events and acks, and the
//! auditor's window plus a day for the audit topic (it rebuilds its state from it).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

const DAY_MS: u64 = 24 * 3_600_000;

/// What the topics are for and how large.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub partitions: i32,
    pub replication: i32,
    /// The auditor's window in hours (the audit topic's retention covers it).
    pub window_hours: u64,
}

/// One topic as evd wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    pub configs: BTreeMap<&'static str, String>,
    pub purpose: &'static str,
}

/// The topics of a role: its event topics, and the acks and audit topics it uses.
pub fn plan(
    event_topics: &[String],
    acks_topic: Option<&str>,
    audit_topic: Option<&str>,
    settings: &PlanSettings,
) -> Vec<TopicPlan> {
    let min_insync = (settings.replication - 1).max(1).to_string();
    let topic = |name: &str, retention_ms: u64, purpose| TopicPlan {
        name: name.to_string(),
        partitions: settings.partitions,
        replication: settings.replication,
        configs: BTreeMap::from([
            ("min.insync.replicas", min_insync.clone()),
            ("retention.ms", retention_ms.to_string()),
        ]),
        purpose,
    };
    let mut out: Vec<TopicPlan> = event_topics
        .iter()
        .map(|t| topic(t, 7 * DAY_MS, "event batches"))
        .collect();
    if let Some(acks) = acks_topic {
        out.push(topic(acks, 7 * DAY_MS, "end-to-end acks"));
    }
    if let Some(audit) = audit_topic {
        let retention = settings.window_hours * 3_600_000 + DAY_MS;
        out.push(topic(audit, retention, "heartbeats and announcements"));
    }
    out
}

/// The plan as a table for people.
pub fn render(plans: &[TopicPlan]) -> String {
    let mut out = String::from("topic\tpartitions\treplication\tconfigs\tpurpose\n");
    for p in plans {
        let configs: Vec<String> = p.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            p.name,
            p.partitions,
            p.replication,
            configs.join(","),
            p.purpose
        ));
    }
    out
}

/// Creates the planned topics; an existing topic is left as it is. One line per topic.
pub async fn create(config: &ClientConfig, plans: &[TopicPlan]) -> Result<Vec<String>, String> {
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|e| format!("admin client: {e}"))?;
    let new: Vec<NewTopic<'_>> = plans
        .iter()
        .map(|p| {
            let mut topic = NewTopic::new(
                &p.name,
                p.partitions,
                TopicReplication::Fixed(p.replication),
            );
            for (k, v) in &p.configs {
                topic = topic.set(k, v);
            }
            topic
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new.iter(), &options)
        .await
        .map_err(|e| format!("creating topics: {e}"))?;
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for result in results {
        match result {
            Ok(name) => lines.push(format!("created {name}")),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                lines.push(format!("exists  {name} (left as it is)"))
            }
            Err((name, code)) => failed.push(format!("{name}: {code}")),
        }
    }
    if failed.is_empty() {
        Ok(lines)
    } else {
        Err(format!("not created: {}", failed.join("; ")))
    }
}

/// What `check` found: topics missing (the role cannot work), and findings that do
/// not stop it (fewer partitions than planned).
#[derive(Debug, Default)]
pub struct CheckReport {
    pub present: Vec<String>,
    pub missing: Vec<String>,
    pub notes: Vec<String>,
}

/// Checks that every planned topic exists, from the cluster's metadata.
pub fn check(config: &ClientConfig, plans: &[TopicPlan]) -> Result<CheckReport, String> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("metadata client: {e}"))?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(15))
        .map_err(|e| format!("cluster metadata: {e}"))?;
    let found: BTreeMap<&str, usize> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name(), t.partitions().len()))
        .collect();
    let mut report = CheckReport::default();
    for p in plans {
        match found.get(p.name.as_str()) {
            None | Some(0) => report.missing.push(p.name.clone()),
            Some(&n) => {
                report.present.push(p.name.clone());
                if (n as i32) < p.partitions {
                    report.notes.push(format!(
                        "{} has {n} partitions (planned {}): consumers beyond {n} idle",
                        p.name, p.partitions
                    ));
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_covers_the_audit_window_and_sets_min_insync() {
        let settings = PlanSettings {
            partitions: 6,
            replication: 3,
            window_hours: 48,
        };
        let plans = plan(
            &["evd.events.PageView".into()],
            Some("evd.acks"),
            Some("evd.audit"),
            &settings,
        );
        assert_eq!(plans.len(), 3);
        assert!(
            plans
                .iter()
                .all(|p| p.configs["min.insync.replicas"] == "2")
        );
        let audit = plans.iter().find(|p| p.name == "evd.audit").unwrap();
        assert_eq!(
            audit.configs["retention.ms"],
            (72 * 3_600_000u64).to_string()
        );
        let single = plan(
            &[],
            None,
            Some("a"),
            &PlanSettings {
                replication: 1,
                ..settings
            },
        );
        assert_eq!(single[0].configs["min.insync.replicas"], "1");
        assert!(
            render(&plans)
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("evd.events.PageView\t6\t3\t")
        );
    }
}
