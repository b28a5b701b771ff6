//! The operator's control socket: `osprey ps`, `osprey tree`, `osprey status` talk to the
//! running daemon over a Unix socket (root only: the socket is 0600 in a 0700 directory, and
//! the peer's credentials are checked). A request is one line; the answer is JSON, then EOF.
//! Requests are answered by the pipeline task, which owns the process table.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream as StdUnixStream},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader},
    net::UnixListener,
    sync::{mpsc, oneshot},
};
use tracing::{info, warn};

pub const DEFAULT_SOCKET: &str = "/run/osprey/osprey.sock";

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Protocol(String),
}

/// `control:` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    pub enabled: bool,
    pub socket: PathBuf,
}

impl Default for ControlSection {
    fn default() -> Self {
        Self { enabled: true, socket: PathBuf::from(DEFAULT_SOCKET) }
    }
}

/// What an operator can ask.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Ps,
    Tree(Option<u32>),
    Status,
    /// kill, isolate, block, quarantine, … (crate::respond::request).
    Respond(crate::respond::Request),
    /// A hunt or story over the recorder (`query {json}`); answered off the pipeline.
    Query(Box<crate::recorder::query::Query>),
}

impl Request {
    pub fn parse(line: &str) -> Result<Self, String> {
        if let Some(r) = crate::respond::Request::parse(line) {
            return r.map(Request::Respond);
        }
        if let Some(json) = line.strip_prefix("query ") {
            return serde_json::from_str(json).map(|q| Request::Query(Box::new(q))).map_err(|e| format!("query: {e}"));
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("ps"), None, _) => Ok(Request::Ps),
            (Some("status"), None, _) => Ok(Request::Status),
            (Some("tree"), None, _) => Ok(Request::Tree(None)),
            (Some("tree"), Some(pid), None) => pid.parse().map(|p| Request::Tree(Some(p))).map_err(|_| format!("not a pid: {pid}")),
            _ => Err(format!("unknown request: {line:?} (ps | tree [PID] | status | {})", crate::respond::request::USAGE)),
        }
    }

    pub fn line(&self) -> String {
        match self {
            Request::Ps => "ps".into(),
            Request::Status => "status".into(),
            Request::Tree(None) => "tree".into(),
            Request::Tree(Some(p)) => format!("tree {p}"),
            Request::Respond(r) => r.line(),
            Request::Query(q) => format!("query {}", serde_json::to_string(q).unwrap_or_default()),
        }
    }
}

/// A request on its way to the pipeline, with where the JSON answer goes.
pub struct Pending {
    pub request: Request,
    pub reply: oneshot::Sender<serde_json::Value>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ControlError + '_ {
    move |source| ControlError::Io { path: path.display().to_string(), source }
}

/// Binds the socket (replacing a stale one) and serves requests until the receiver is dropped.
pub fn serve(path: &Path, recorder: Option<PathBuf>) -> Result<(mpsc::Receiver<Pending>, tokio::task::JoinHandle<()>), ControlError> {
    // A directory the agent creates is root-only; an existing one (e.g. /tmp) is left as it is:
    // the socket's own 0600 mode and the peer check guard access.
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    if path.exists() {
        std::fs::remove_file(path).map_err(io_err(path))?;
    }
    let listener = UnixListener::bind(path).map_err(io_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    info!(socket = %path.display(), "control socket listening");
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let tx = tx.clone();
            let recorder = recorder.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, tx, recorder).await {
                    warn!(error = %e, "control request failed");
                }
            });
        }
    });
    Ok((rx, task))
}

async fn answer(stream: tokio::net::UnixStream, tx: mpsc::Sender<Pending>, recorder: Option<PathBuf>) -> std::io::Result<()> {
    let peer = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    if peer.uid() != 0 {
        write.write_all(b"{\"error\":\"root only\"}\n").await?;
        return Ok(());
    }
    let mut line = String::new();
    TokioBufReader::new(read).read_line(&mut line).await?;
    let reply = match Request::parse(line.trim()) {
        // Recorder queries read the store on a blocking thread; the pipeline never waits.
        Ok(Request::Query(q)) => match recorder {
            Some(path) => tokio::task::spawn_blocking(move || q.answer(&path))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .unwrap_or_else(|e| serde_json::json!({ "error": e })),
            None => serde_json::json!({"error": "the recorder is disabled in this agent's config"}),
        },
        Ok(request) => {
            let (reply, rx) = oneshot::channel();
            if tx.send(Pending { request, reply }).await.is_err() {
                serde_json::json!({"error": "the agent is stopping"})
            } else {
                rx.await.unwrap_or_else(|_| serde_json::json!({"error": "no answer"}))
            }
        }
        Err(e) => serde_json::json!({ "error": e }),
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}

/// Client side: sends one request, returns the JSON answer.
pub fn ask(path: &Path, request: &Request) -> Result<serde_json::Value, ControlError> {
    let mut s = StdUnixStream::connect(path).map_err(io_err(path))?;
    writeln!(s, "{}", request.line()).map_err(io_err(path))?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).map_err(io_err(path))?;
    let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| ControlError::Protocol(format!("bad answer: {e}")))?;
    match v.get("error").and_then(|e| e.as_str()) {
        Some(e) => Err(ControlError::Protocol(e.to_owned())),
        None => Ok(v),
    }
}

/// `osprey ps` as a table.
pub fn print_ps(v: &serde_json::Value, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{:>7} {:>7} {:<10} {:<8} COMMAND", "PID", "PPID", "USER", "STATE")?;
    for p in v["processes"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "{:>7} {:>7} {:<10} {:<8} {}",
            p["pid"],
            p["ppid"],
            p["user"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?"),
            p["command_line"].as_str().or(p["executable"].as_str()).unwrap_or("?")
        )?;
    }
    Ok(())
}

/// `osprey tree` as an indented tree.
pub fn print_tree(v: &serde_json::Value, out: &mut dyn Write) -> std::io::Result<()> {
    fn node(n: &serde_json::Value, depth: usize, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{}{} {}{}",
            "  ".repeat(depth),
            n["pid"],
            n["command_line"].as_str().or(n["executable"].as_str()).unwrap_or("?"),
            if n["exited"].as_bool() == Some(true) { " (exited)" } else { "" }
        )?;
        for c in n["children"].as_array().into_iter().flatten() {
            node(c, depth + 1, out)?;
        }
        Ok(())
    }
    for root in v["roots"].as_array().into_iter().flatten() {
        node(root, 0, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_print() {
        assert_eq!(Request::parse("ps"), Ok(Request::Ps));
        assert_eq!(Request::parse("tree 42"), Ok(Request::Tree(Some(42))));
        assert_eq!(Request::parse("tree"), Ok(Request::Tree(None)));
        assert!(Request::parse("tree x").is_err());
        assert!(Request::parse("reboot").unwrap_err().contains("unknown request"));
        assert!(matches!(Request::parse("kill 1"), Ok(Request::Respond(_))));
        for r in [Request::Ps, Request::Status, Request::Tree(None), Request::Tree(Some(7))] {
            assert_eq!(Request::parse(&r.line()), Ok(r));
        }
    }

    #[test]
    fn tree_printing_indents_children() {
        let v = serde_json::json!({"roots": [{"pid": 1, "command_line": "init", "children": [
            {"pid": 2, "command_line": "sh -c x", "exited": true, "children": []}]}]});
        let mut out = Vec::new();
        print_tree(&v, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "1 init\n  2 sh -c x (exited)\n");
    }
}
