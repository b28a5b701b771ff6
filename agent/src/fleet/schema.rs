//! The fleet schema: created and migrated by `osprey fleet init`, pruned by `osprey fleet prune`.
//!
//! One MergeTree table, `PARTITION BY date ORDER BY (host, ts)`: the typed columns hunts and
//! stories filter on, plus the full ECS document. A schema version table records what was
//! applied; a newer Osprey migrates an older schema, an older one refuses a newer schema.
//!
//! On a cluster every shard gets the same local table (`<table>_local`) and a `Distributed`
//! table named `<table>` over the cluster's `remote_servers`, sharded by host (one host's events
//! stay on one shard). The DDL is run on each shard's URL in turn: `CREATE … ON CLUSTER` needs
//! ZooKeeper (distributed DDL) in ClickHouse 18.16, which a plain pair of servers does not have.
//!
//! Retention: table `TTL` arrived in ClickHouse 19.6. On older servers (Debian's 18.16)
//! `osprey fleet prune --days N` drops whole `date` partitions older than N days; on 19.6 and
//! later `init --ttl-days N` also sets the table TTL.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{lit, Fleet, FleetError};

/// The schema version this Osprey writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The columns, in the order the sink sends them (RowBinary).
pub const COLUMNS: &[(&str, &str)] = &[
    ("date", "Date"),
    ("ts", "UInt64"),
    ("id", "UInt64"),
    ("host", "String"),
    ("kind", "String"),
    ("action", "String"),
    ("entity", "String"),
    ("parent", "String"),
    ("pid", "UInt32"),
    ("exe", "String"),
    ("sha256", "String"),
    ("cmdline", "String"),
    ("user", "String"),
    ("path", "String"),
    ("src_ip", "FixedString(16)"),
    ("src_port", "UInt16"),
    ("dst_ip", "FixedString(16)"),
    ("dst_port", "UInt16"),
    ("domain", "String"),
    ("alert", "String"),
    ("rule", "String"),
    ("severity", "UInt8"),
    ("cgroup", "UInt64"),
    ("doc", "String"),
];

/// `(date, ts, …)`: the column list of the sink's INSERT.
pub fn column_list() -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    format!("({})", names.join(", "))
}

fn columns_ddl() -> String {
    COLUMNS.iter().map(|(n, t)| format!("    {n} {t}")).collect::<Vec<_>>().join(",\n")
}

/// Days since 1970-01-01 as `YYYY-MM-DD` (proleptic Gregorian).
pub fn civil(days: i64) -> String {
    let (y, m, d) = crate::event::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn today() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64 / 86_400)
}

/// How `init` lays the schema out.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// A cluster named in the servers' `remote_servers`, and the HTTP URL of each of its shards.
    pub cluster: Option<(String, Vec<String>)>,
    /// Table TTL in days (ClickHouse 19.6 and later only).
    pub ttl_days: Option<u32>,
}

/// What `init` did, for the operator.
#[derive(Debug, Default)]
pub struct InitReport {
    pub lines: Vec<String>,
}

/// `major.minor` of a `SELECT version()` answer.
pub fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut it = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// The local MergeTree table queries land in on one server: `table` alone, `table_local` on a
/// cluster.
pub fn local_table(fleet: &Fleet, cluster: bool) -> String {
    if cluster {
        format!("{}_local", fleet.table)
    } else {
        fleet.table.clone()
    }
}

/// Creates (or migrates) the schema; safe to run again.
pub fn init(fleet: &Fleet, layout: &Layout) -> Result<InitReport, FleetError> {
    fleet.validate()?;
    let mut report = InitReport::default();
    let servers: Vec<Fleet> = match &layout.cluster {
        None => vec![fleet.clone()],
        Some((name, shards)) => {
            super::check_ident("--cluster", name).map_err(FleetError::Invalid)?;
            if shards.is_empty() {
                return Err(FleetError::Invalid("--cluster needs the URL of every shard (--shard URL, repeated)".into()));
            }
            shards.iter().map(|u| Fleet { url: u.trim_end_matches('/').to_owned(), ..fleet.clone() }).collect()
        }
    };
    for server in &servers {
        server.validate()?;
        let version = server.version()?;
        report.lines.push(format!("{}: ClickHouse {version}", server.url));
        if let Some((name, _)) = &layout.cluster {
            let n: Vec<Count> = server.rows(&format!("SELECT count() AS n FROM system.clusters WHERE cluster = {}", lit(name)))?;
            if n.first().is_none_or(|c| c.n == 0) {
                return Err(FleetError::Schema(format!(
                    "{}: no cluster `{name}` in its remote_servers configuration",
                    server.url
                )));
            }
        }
        migrate(server, layout, &version, &mut report)?;
    }
    if layout.ttl_days.is_none() {
        report.lines.push("retention: run `osprey fleet prune --days N` daily (drops whole days)".into());
    }
    Ok(report)
}

#[derive(Deserialize)]
struct Count {
    n: u64,
}

#[derive(Deserialize)]
struct Version {
    v: u32,
}

fn migrate(server: &Fleet, layout: &Layout, version: &str, report: &mut InitReport) -> Result<(), FleetError> {
    let db = &server.database;
    server.execute(&format!("CREATE DATABASE IF NOT EXISTS {db}"))?;
    server.execute(&format!(
        "CREATE TABLE IF NOT EXISTS {db}.osprey_schema (version UInt32, applied UInt64, osprey String) ENGINE = TinyLog"
    ))?;
    let found = server.rows::<Version>(&format!("SELECT max(version) AS v FROM {db}.osprey_schema"))?.first().map_or(0, |v| v.v);
    if found > SCHEMA_VERSION {
        return Err(FleetError::Schema(format!(
            "{}: fleet schema version {found} is newer than this osprey understands ({SCHEMA_VERSION})",
            server.url
        )));
    }
    let cluster = layout.cluster.as_ref().map(|(n, _)| n.as_str());
    let local = local_table(server, cluster.is_some());
    for v in found + 1..=SCHEMA_VERSION {
        for stmt in migration(v, db, &local, &server.table, cluster) {
            server.execute(&stmt)?;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        server.execute(&format!(
            "INSERT INTO {db}.osprey_schema (version, applied, osprey) VALUES ({v}, {now}, {})",
            lit(env!("CARGO_PKG_VERSION"))
        ))?;
        report.lines.push(format!("{}: schema version {v} applied", server.url));
    }
    if found == SCHEMA_VERSION {
        report.lines.push(format!("{}: schema version {found} already there", server.url));
    }
    if let Some(days) = layout.ttl_days {
        if version_at_least(version, 19, 6) {
            server.execute(&format!("ALTER TABLE {db}.{local} MODIFY TTL date + toIntervalDay({days})"))?;
            report.lines.push(format!("{}: TTL {days} days", server.url));
        } else {
            report.lines.push(format!(
                "{}: ClickHouse {version} has no table TTL (19.6+): run `osprey fleet prune --days {days}` daily instead",
                server.url
            ));
        }
    }
    Ok(())
}

/// The statements that take the schema from version `v - 1` to `v`.
fn migration(v: u32, db: &str, local: &str, table: &str, cluster: Option<&str>) -> Vec<String> {
    match v {
        1 => {
            let mut s = vec![format!(
                "CREATE TABLE IF NOT EXISTS {db}.{local} (\n{}\n) ENGINE = MergeTree PARTITION BY date ORDER BY (host, ts) SETTINGS index_granularity = 8192",
                columns_ddl()
            )];
            if let Some(c) = cluster {
                s.push(format!(
                    "CREATE TABLE IF NOT EXISTS {db}.{table} AS {db}.{local} ENGINE = Distributed({c}, {db}, {local}, cityHash64(host))"
                ));
            }
            s
        }
        _ => Vec::new(),
    }
}

#[derive(Deserialize)]
struct Part {
    partition: String,
}

/// Drops the `date` partitions older than `days` days on every server given (each shard of a
/// cluster, or the one server). Returns the partitions dropped, as `url date`.
pub fn prune(fleet: &Fleet, servers: &[String], cluster: bool, days: u32) -> Result<Vec<String>, FleetError> {
    let cutoff = civil(today() - i64::from(days));
    let urls: Vec<String> = if servers.is_empty() { vec![fleet.url.clone()] } else { servers.to_vec() };
    let mut dropped = Vec::new();
    for url in urls {
        let server = Fleet { url: url.trim_end_matches('/').to_owned(), ..fleet.clone() };
        server.validate()?;
        let local = local_table(&server, cluster);
        let parts: Vec<Part> = server.rows(&format!(
            "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = {} AND active ORDER BY partition",
            lit(&server.database),
            lit(&local)
        ))?;
        for p in parts {
            let date = p.partition.trim_matches('\'').to_owned();
            if date < cutoff {
                server.execute(&format!("ALTER TABLE {}.{local} DROP PARTITION {}", server.database, lit(&date)))?;
                dropped.push(format!("{} {date}", server.url));
            }
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_versions() {
        assert_eq!(civil(0), "1970-01-01");
        assert_eq!(civil(20_779), "2026-11-22");
        assert_eq!(civil(11_016), "2000-02-29");
        assert!(version_at_least("19.6.2.11", 19, 6));
        assert!(!version_at_least("18.16.1", 19, 6));
        assert!(column_list().starts_with("(date, ts, id, host"));
        let m = migration(1, "osprey", "events_local", "events", Some("fleet"));
        assert!(m[0].contains("PARTITION BY date ORDER BY (host, ts)"), "{}", m[0]);
        assert!(m[1].contains("Distributed(fleet, osprey, events_local, cityHash64(host))"), "{}", m[1]);
    }
}
