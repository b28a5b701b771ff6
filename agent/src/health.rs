//! The health endpoint: one HTTP port serving
//! - `/metrics`: the Prometheus text exposition of [`Metrics`];
//! - `/healthz`: 200 while the agent's runtime answers at all (liveness);
//! - `/readyz`: 503 until the kernel programs are attached, the rules are loaded and the outputs
//!   are flowing, then 200 (readiness); the body says which checks pass.
//!
//! It runs on the agent's tokio runtime (hyper 1, HTTP/1.1 only) and shares nothing with the
//! pipeline but the [`Metrics`] and the [`Readiness`] flags the pipeline sets.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, header, server::conn::http1, service::service_fn, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tracing::{debug, info};

use crate::metrics::Metrics;

#[derive(Debug, Error)]
pub enum HealthError {
    #[error("health endpoint: listening on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// What `/readyz` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The kernel programs are loaded and attached.
    ProgramsAttached,
    /// The detection rules are compiled and in use.
    RulesLoaded,
    /// The output sinks are built and taking events.
    OutputsFlowing,
}

impl Check {
    pub const ALL: [Check; 3] = [Check::ProgramsAttached, Check::RulesLoaded, Check::OutputsFlowing];

    pub fn name(self) -> &'static str {
        match self {
            Check::ProgramsAttached => "programs_attached",
            Check::RulesLoaded => "rules_loaded",
            Check::OutputsFlowing => "outputs_flowing",
        }
    }
}

/// Shared readiness flags: cheap to clone, set from anywhere, read by `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<[AtomicBool; 3]>);

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, check: Check, ok: bool) {
        self.0[check as usize].store(ok, Ordering::Release);
    }

    pub fn get(&self, check: Check) -> bool {
        self.0[check as usize].load(Ordering::Acquire)
    }

    pub fn set_programs_attached(&self, ok: bool) {
        self.set(Check::ProgramsAttached, ok);
    }
    pub fn set_rules_loaded(&self, ok: bool) {
        self.set(Check::RulesLoaded, ok);
    }
    pub fn set_outputs_flowing(&self, ok: bool) {
        self.set(Check::OutputsFlowing, ok);
    }

    /// All checks pass.
    pub fn is_ready(&self) -> bool {
        Check::ALL.iter().all(|c| self.get(*c))
    }

    /// `programs_attached ok` / `rules_loaded waiting` …, one line each.
    pub fn report(&self) -> String {
        Check::ALL
            .iter()
            .map(|c| format!("{} {}\n", c.name(), if self.get(*c) { "ok" } else { "waiting" }))
            .collect()
    }
}

/// The running endpoint. Dropping it stops the server.
pub struct HealthServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl HealthServer {
    /// The address it listens on (the port is the kernel's choice when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish (up to a second).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `addr` and serves the endpoint on the current tokio runtime.
pub async fn start(addr: SocketAddr, metrics: Arc<Metrics>, ready: Readiness) -> Result<HealthServer, HealthError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| HealthError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| HealthError::Bind { addr, source })?;
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, metrics, ready, stop_rx));
    info!(address = %local_addr, "health endpoint: /metrics /healthz /readyz");
    Ok(HealthServer { local_addr, stop, task: Some(task) })
}

async fn serve(listener: TcpListener, metrics: Arc<Metrics>, ready: Readiness, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of fds and the like: wait a little rather than spin.
                    debug!(error = %e, "health endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let (metrics, ready, mut stop) = (metrics.clone(), ready.clone(), stop.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = respond(&req, &metrics, &ready);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { debug!(%peer, error = %e, "health endpoint: connection failed") },
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";

fn respond(req: &Request<Incoming>, metrics: &Metrics, ready: &Readiness) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n");
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics.render()),
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n"),
        "/readyz" => {
            let status = if ready.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            text(status, PLAIN, ready.report())
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found: try /metrics, /healthz, /readyz\n"),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out.split(' ').nth(1).unwrap().parse().unwrap();
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let metrics = Arc::new(Metrics::new());
        metrics.output("stdout").written.inc_by(3);
        let ready = Readiness::new();
        let server = start("127.0.0.1:0".parse().unwrap(), metrics, ready.clone()).await.unwrap();
        let addr = server.local_addr();

        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("osprey_output_events_total{sink=\"stdout\"} 3"), "{body}");
        assert!(body.contains("osprey_build_info{version=\""), "{body}");
        assert!(body.contains("process_resident_memory_bytes"), "{body}");
        assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
        assert_eq!(get(addr, "/nope").await.0, 404);

        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert_eq!(body, "programs_attached waiting\nrules_loaded waiting\noutputs_flowing waiting\n");
        ready.set_programs_attached(true);
        ready.set_rules_loaded(true);
        assert_eq!(get(addr, "/readyz").await.0, 503, "outputs not yet flowing");
        ready.set_outputs_flowing(true);
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 200);
        assert!(body.contains("outputs_flowing ok"), "{body}");
        ready.set(Check::RulesLoaded, false);
        assert_eq!(get(addr, "/readyz").await.0, 503, "readiness can be lost again");

        server.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "stopped");
    }

    #[tokio::test]
    async fn bind_errors_name_the_address() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let err = start(addr, Arc::new(Metrics::new()), Readiness::new()).await.err().unwrap().to_string();
        assert!(err.contains(&addr.to_string()), "{err}");
    }
}
