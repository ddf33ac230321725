//! `evd schema ddl`: the table definition of an event type's bucket for an SQL
//! engine, over the Hive layout the consumers write
//! (`<location>/<Type>/date=YYYY-MM-DD/hour=HH/*.parquet`). Columns come from the
//! same Arrow schema the consumer writes, so the two cannot drift apart.

use arrow_schema::{DataType, Field};
use evd_schemas::EventType;

/// The engines a definition can be printed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// A DuckDB view over `read_parquet` (every column cast to its declared type,
    /// files of older type versions read by name).
    Duckdb,
    /// A Spark SQL table (`USING PARQUET`), then `MSCK REPAIR TABLE` to find hours.
    Spark,
    /// An Athena (Hive) external table with partition projection, so new hours
    /// are queryable without adding partitions.
    Athena,
}

/// Which of a type's two tables a definition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The consumers' files, `<Type>/date=…/hour=…/*.parquet`: every hour, open or
    /// closed, rows visible a flush after they arrive. Named as the type.
    Live,
    /// The auditor's closed-hours table (`[combine]`),
    /// `closed-hours/<Type>/date=…/hour=…/*.parquet`: closed hours only, one file
    /// each. Named `<Type>_closed_hours`.
    ClosedHours,
}

/// The statements defining `ty`'s `table` at `location` (a path or URL of the
/// output, e.g. `s3://bucket/prefix`).
pub fn ddl(ty: &EventType, dialect: Dialect, table: Table, location: &str) -> String {
    let schema = ty.arrow_schema();
    let location = location.trim_end_matches('/');
    let (name, root) = match table {
        Table::Live => (ty.name.clone(), format!("{location}/{}", ty.name)),
        Table::ClosedHours => (
            format!("{}_closed_hours", ty.name),
            format!(
                "{location}/{}/{}",
                evd_consumer::layout::CLOSED_HOURS_DIR,
                ty.name
            ),
        ),
    };
    let columns: Vec<&Field> = schema.fields().iter().map(|f| f.as_ref()).collect();
    match dialect {
        Dialect::Duckdb => duckdb(&name, &columns, &root),
        Dialect::Spark => spark(&name, &columns, &root),
        Dialect::Athena => athena(&name, &columns, &root),
    }
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn backticked(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The SQL type of a column as evd writes it, in `dialect`'s spelling.
fn sql_type(data_type: &DataType, dialect: Dialect) -> &'static str {
    let hive = dialect != Dialect::Duckdb;
    match data_type {
        DataType::Timestamp(..) if hive => "TIMESTAMP",
        DataType::Timestamp(..) => "TIMESTAMPTZ",
        DataType::Utf8 if hive => "STRING",
        DataType::Utf8 => "VARCHAR",
        DataType::Int64 => "BIGINT",
        DataType::Float64 => "DOUBLE",
        DataType::Boolean => "BOOLEAN",
        // The registry maps every field type to one of the above.
        _ => "STRING",
    }
}

/// `COMMENT '…'` from the field's `doc` (and a note for JSON text), or nothing.
fn comment(field: &Field) -> String {
    let meta = field.metadata();
    let mut text = meta.get("doc").cloned().unwrap_or_default();
    if meta.get("evd.type").is_some_and(|t| t == "json") {
        text = format!("{text} (JSON text)").trim().to_string();
    }
    if text.is_empty() {
        String::new()
    } else {
        format!(" COMMENT {}", sql_string(&text))
    }
}

fn duckdb(name: &str, columns: &[&Field], root: &str) -> String {
    let mut select: Vec<String> = columns
        .iter()
        .map(|f| {
            let ty = sql_type(f.data_type(), Dialect::Duckdb);
            format!("  {0}::{ty} AS {0}", quoted(f.name()))
        })
        .collect();
    select.push("  \"date\"::DATE AS \"date\"".into());
    select.push("  \"hour\"::INTEGER AS \"hour\"".into());
    let files = sql_string(&format!("{root}/date=*/hour=*/*.parquet"));
    format!(
        "CREATE OR REPLACE VIEW {} AS\nSELECT\n{}\nFROM read_parquet({files}, hive_partitioning = true, union_by_name = true);\n",
        quoted(name),
        select.join(",\n")
    )
}

fn hive_columns(columns: &[&Field], dialect: Dialect) -> Vec<String> {
    columns
        .iter()
        .map(|f| {
            format!(
                "  {} {}{}",
                backticked(f.name()),
                sql_type(f.data_type(), dialect),
                comment(f)
            )
        })
        .collect()
}

fn spark(name: &str, columns: &[&Field], root: &str) -> String {
    let mut cols = hive_columns(columns, Dialect::Spark);
    cols.push("  `date` DATE".into());
    cols.push("  `hour` INT".into());
    let table = backticked(name);
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n{}\n)\nUSING PARQUET\nPARTITIONED BY (`date`, `hour`)\nLOCATION {};\nMSCK REPAIR TABLE {table};\n",
        cols.join(",\n"),
        sql_string(root)
    )
}

fn athena(name: &str, columns: &[&Field], root: &str) -> String {
    let cols = hive_columns(columns, Dialect::Athena);
    let template = format!("{root}/date=${{date}}/hour=${{hour}}/");
    let properties = [
        ("projection.enabled", "true"),
        ("projection.date.type", "date"),
        ("projection.date.format", "yyyy-MM-dd"),
        ("projection.date.range", "2020-01-01,NOW"),
        ("projection.date.interval", "1"),
        ("projection.date.interval.unit", "DAYS"),
        ("projection.hour.type", "integer"),
        ("projection.hour.range", "0,23"),
        ("projection.hour.digits", "2"),
        ("storage.location.template", template.as_str()),
    ]
    .iter()
    .map(|(k, v)| format!("  {} = {}", sql_string(k), sql_string(v)))
    .collect::<Vec<_>>()
    .join(",\n");
    format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS {} (\n{}\n)\nPARTITIONED BY (`date` STRING, `hour` INT)\nSTORED AS PARQUET\nLOCATION {}\nTBLPROPERTIES (\n{properties}\n);\n",
        backticked(&name.to_lowercase()),
        cols.join(",\n"),
        sql_string(&format!("{root}/"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty() -> EventType {
        EventType::from_toml(
            "t.toml",
            "name=\"PageView\"\nversion=1\nowner=\"o\"\ntier=\"low\"\n[[fields]]\nname=\"user_id\"\ntype=\"string\"\nrequired=true\ndoc=\"the user's id\"\n[[fields]]\nname=\"extra\"\ntype=\"json\"\n",
        )
        .unwrap()
    }

    #[test]
    fn duckdb_casts_every_column_and_reads_the_hive_layout() {
        let sql = ddl(&ty(), Dialect::Duckdb, Table::Live, "s3://b/p/");
        assert!(
            sql.starts_with("CREATE OR REPLACE VIEW \"PageView\" AS"),
            "{sql}"
        );
        assert!(
            sql.contains("  \"event_seq\"::BIGINT AS \"event_seq\","),
            "{sql}"
        );
        assert!(sql.contains("  \"received_at\"::TIMESTAMPTZ AS"), "{sql}");
        assert!(sql.contains("  \"hour\"::INTEGER AS \"hour\"\n"), "{sql}");
        assert!(
            sql.contains("read_parquet('s3://b/p/PageView/date=*/hour=*/*.parquet', hive_partitioning = true, union_by_name = true)"),
            "{sql}"
        );
    }

    #[test]
    fn spark_and_athena_declare_partitions_and_comments() {
        let spark = ddl(&ty(), Dialect::Spark, Table::Live, "s3://b/p");
        assert!(
            spark.contains("  `user_id` STRING COMMENT 'the user''s id',"),
            "{spark}"
        );
        assert!(
            spark.contains("  `extra` STRING COMMENT '(JSON text)',"),
            "{spark}"
        );
        assert!(
            spark.contains("PARTITIONED BY (`date`, `hour`)\nLOCATION 's3://b/p/PageView';"),
            "{spark}"
        );
        assert!(
            spark.ends_with("MSCK REPAIR TABLE `PageView`;\n"),
            "{spark}"
        );
        let athena = ddl(&ty(), Dialect::Athena, Table::Live, "s3://b/p");
        assert!(
            athena.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `pageview` ("),
            "{athena}"
        );
        assert!(athena.contains("  `batch_seq` BIGINT,"), "{athena}");
        assert!(
            athena.contains(
                "'storage.location.template' = 's3://b/p/PageView/date=${date}/hour=${hour}/'"
            ),
            "{athena}"
        );
        assert!(
            athena.contains("PARTITIONED BY (`date` STRING, `hour` INT)\nSTORED AS PARQUET"),
            "{athena}"
        );
    }

    #[test]
    fn the_closed_hours_table_has_its_own_name_and_root() {
        let sql = ddl(&ty(), Dialect::Duckdb, Table::ClosedHours, "s3://b/p");
        assert!(
            sql.starts_with("CREATE OR REPLACE VIEW \"PageView_closed_hours\" AS"),
            "{sql}"
        );
        assert!(
            sql.contains("read_parquet('s3://b/p/closed-hours/PageView/date=*/hour=*/*.parquet'"),
            "{sql}"
        );
        let athena = ddl(&ty(), Dialect::Athena, Table::ClosedHours, "s3://b/p");
        assert!(
            athena.contains("'s3://b/p/closed-hours/PageView/date=${date}/hour=${hour}/'"),
            "{athena}"
        );
    }
}
