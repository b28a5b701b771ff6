//! The fleet store: every host's events in ClickHouse, an existing distributed columnar engine
//! (Osprey does not build a cluster of its own).
//!
//! - [`schema`]: `osprey fleet init` creates and migrates the database, the MergeTree table
//!   (`ORDER BY (host, ts)`, `PARTITION BY date`) and, for a cluster, a `Distributed` table over
//!   the shards; `osprey fleet prune` drops partitions past the retention (ClickHouse 18.16, the
//!   version Debian packages, has no table TTL).
//! - [`crate::output::clickhouse`]: the sink that fills it (RowBinary inserts over HTTP).
//! - [`hunt`]: `osprey hunt --fleet URL`, the recorder's hunt semantics in ClickHouse SQL.
//! - [`history`]: `osprey story --fleet URL`, the recorder's stories with lineage stitched
//!   across hosts (an outbound connection on host A to an accepted one on host B).
//!
//! All SQL sticks to what ClickHouse 18.16 understands: no parameterised queries (literals are
//! escaped here), no `DateTime64`, no `TTL`, no `ON CLUSTER` without ZooKeeper.

pub mod history;
pub mod hunt;
pub mod schema;

use std::time::Duration;

use serde::de::DeserializeOwned;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FleetError {
    #[error("{url}: {msg}")]
    Http { url: String, msg: String },
    /// ClickHouse answered with an exception.
    #[error("ClickHouse at {url}: {msg}")]
    Server { url: String, code: Option<u32>, msg: String },
    #[error("ClickHouse at {url}: unreadable answer: {msg}")]
    Answer { url: String, msg: String },
    #[error("{0}")]
    Schema(String),
    #[error("{0}")]
    Invalid(String),
}

/// Where the fleet store is: a ClickHouse HTTP endpoint, the database and the table.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub url: String,
    pub database: String,
    pub table: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
}

pub const DEFAULT_DATABASE: &str = "osprey";
pub const DEFAULT_TABLE: &str = "events";

/// Checks a database or table name: ClickHouse identifiers, so that they can be written into SQL.
pub fn check_ident(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || s.as_bytes()[0].is_ascii_digit() {
        return Err(format!("{what}: `{s}` must be 1 to 64 of A-Z a-z 0-9 _, not starting with a digit"));
    }
    Ok(())
}

/// Checks an http:// or https:// URL.
pub fn check_url(what: &str, url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{what}: `{url}` is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') || url.parse::<ureq::http::Uri>().is_err() {
        return Err(format!("{what}: `{url}` is not a valid URL with a host"));
    }
    Ok(())
}

/// A ClickHouse string literal.
pub fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A 16-byte address key as a `FixedString(16)` expression.
pub fn ip_lit(k: &[u8; 16]) -> String {
    let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
    format!("toFixedString(unhex('{hex}'), 16)")
}

/// The `Code: N` of a ClickHouse exception text.
pub fn error_code(text: &str) -> Option<u32> {
    let i = text.find("Code: ")?;
    text[i + 6..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

impl Fleet {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            database: DEFAULT_DATABASE.into(),
            table: DEFAULT_TABLE.into(),
            user: None,
            password: None,
            timeout: Duration::from_secs(60),
        }
    }

    pub fn validate(&self) -> Result<(), FleetError> {
        check_url("--fleet", &self.url).map_err(FleetError::Invalid)?;
        check_ident("database", &self.database).map_err(FleetError::Invalid)?;
        check_ident("table", &self.table).map_err(FleetError::Invalid)
    }

    /// `database.table`, the table queries read (the Distributed one on a cluster).
    pub fn table(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("osprey/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    }

    /// Sends one statement; the response of a successful one.
    fn send(&self, sql: &str) -> Result<ureq::http::Response<ureq::Body>, FleetError> {
        let mut req = self
            .agent()
            .post(&self.url)
            .query("output_format_json_quote_64bit_integers", "0")
            // Entity lists of large answers are long; the default is 256 KiB.
            .query("max_query_size", "16777216")
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(u) = &self.user {
            req = req.header("X-ClickHouse-User", u);
        }
        if let Some(p) = &self.password {
            req = req.header("X-ClickHouse-Key", p);
        }
        let mut resp = req.send(sql.as_bytes()).map_err(|e| FleetError::Http { url: self.url.clone(), msg: e.to_string() })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
            return Err(FleetError::Server { url: self.url.clone(), code: error_code(&text), msg: text.trim().to_owned() });
        }
        Ok(resp)
    }

    /// Runs one statement; returns the answer's text.
    pub fn execute(&self, sql: &str) -> Result<String, FleetError> {
        let mut resp = self.send(sql)?;
        resp.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| FleetError::Http { url: self.url.clone(), msg: e.to_string() })
    }

    /// Runs a SELECT and hands each row to `f` as it arrives (`FORMAT JSONEachRow` is appended).
    pub fn each_row<T: DeserializeOwned>(&self, sql: &str, f: &mut dyn FnMut(T)) -> Result<u64, FleetError> {
        use std::io::BufRead;
        let resp = self.send(&format!("{sql} FORMAT JSONEachRow"))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, resp.into_body().into_reader());
        let mut n = 0;
        for line in reader.lines() {
            let line = line.map_err(|e| FleetError::Http { url: self.url.clone(), msg: e.to_string() })?;
            if line.trim().is_empty() {
                continue;
            }
            f(serde_json::from_str(&line).map_err(|e| FleetError::Answer { url: self.url.clone(), msg: format!("{e}: {line}") })?);
            n += 1;
        }
        Ok(n)
    }

    /// Runs a SELECT and reads its rows (`FORMAT JSONEachRow` is appended).
    pub fn rows<T: DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, FleetError> {
        let text = self.execute(&format!("{sql} FORMAT JSONEachRow"))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| FleetError::Answer { url: self.url.clone(), msg: format!("{e}: {l}") }))
            .collect()
    }

    /// Inserts ECS documents (JSON, one per line; blank lines skipped) into the table, in
    /// batches of 50,000: `osprey fleet load` (another host's export, a recorded fixture).
    pub fn load(&self, text: &[u8]) -> Result<u64, FleetError> {
        let query = format!("INSERT INTO {} {} FORMAT RowBinary", self.table(), schema::column_list());
        let mut body = Vec::new();
        let (mut n, mut pending) = (0u64, 0usize);
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).collect();
        for (i, line) in lines.iter().enumerate() {
            crate::output::clickhouse::encode_row(&mut body, line, None)
                .map_err(|e| FleetError::Invalid(format!("line {}: {e}", i + 1)))?;
            pending += 1;
            if pending == 50_000 || i + 1 == lines.len() {
                self.post_data(&query, &body)?;
                n += pending as u64;
                (pending, body) = (0, Vec::new());
            }
        }
        Ok(n)
    }

    fn post_data(&self, query: &str, body: &[u8]) -> Result<(), FleetError> {
        let mut req = self.agent().post(&self.url).query("query", query);
        if let Some(u) = &self.user {
            req = req.header("X-ClickHouse-User", u);
        }
        if let Some(p) = &self.password {
            req = req.header("X-ClickHouse-Key", p);
        }
        let mut resp = req.send(body).map_err(|e| FleetError::Http { url: self.url.clone(), msg: e.to_string() })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
            return Err(FleetError::Server { url: self.url.clone(), code: error_code(&text), msg: text.trim().to_owned() });
        }
        Ok(())
    }

    /// `SELECT version()`.
    pub fn version(&self) -> Result<String, FleetError> {
        Ok(self.execute("SELECT version()")?.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_names() {
        assert_eq!(lit("a'b\\c\n"), r"'a\'b\\c\n'");
        assert_eq!(error_code("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist"), Some(60));
        assert_eq!(error_code("nope"), None);
        assert!(check_ident("table", "events_local").is_ok());
        assert!(check_ident("table", "ev;DROP").is_err());
        assert!(check_ident("table", "1x").is_err());
        assert!(check_url("url", "http://127.0.0.1:8123").is_ok());
        assert!(check_url("url", "clickhouse:8123").is_err());
        let mut k = [0u8; 16];
        k[15] = 1;
        assert_eq!(ip_lit(&k), "toFixedString(unhex('00000000000000000000000000000001'), 16)");
    }
}
