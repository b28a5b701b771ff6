//! The fleet store (issue 12) on a real clickhouse-server (Debian's 18.16) started for the run
//! on 127.0.0.1 with its own directories: insert throughput from one agent (target ≥ 200,000
//! events/s) and hunt / story latency over a large table (the issue asks for 10 million events).
//!
//! Events are the recorder bench's: real ECS documents captured on this kernel
//! (`rules/tests/*.jsonl`), varied per event, spread over 100 hosts. Insert is what the
//! clickhouse sink's thread does per event once it has the event's index columns (the agent
//! takes them from the typed event: `recorder_row` in the pipeline bench; here, from fixtures,
//! they are read from the JSON before the clock starts): append a RowBinary row, and hand a
//! batch of 20,000 events (the sink's default) to the sink's `Inserter`, which keeps up to
//! `inflight` INSERTs out at once (the sink's default; `OSPREY_FLEET_INFLIGHT` sets it) — and
//! the server's work on the same 2 cores.
//!
//!     OSPREY_FLEET_EVENTS=10000000 cargo bench -p agent --bench fleet

#[path = "../../tests/src/clickhouse.rs"]
#[allow(dead_code)]
mod clickhouse;

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::TcpListener,
    time::{Duration, Instant},
};

use agent::{
    fleet::{history::FleetHistory, hunt, schema, Fleet},
    output::clickhouse::{ClickHouseConfig, Inserter},
    recorder::{
        hunt::Hunt,
        story::{Story, Subject},
    },
};
use serde_json::Value;

const BATCH: u64 = 20_000;
/// Events made between timed stretches.
const CHUNK: u64 = 10 * BATCH;

#[path = "support/events.rs"]
mod events;
use events::{median, templates};

/// Event `i` as in benches/recorder.rs, from one of 100 hosts.
fn doc(t: &[Value], i: u64, base_ns: u64) -> Vec<u8> {
    let mut d = events::doc(t, i, base_ns);
    let host = format!("node-{:03}", (i / 8) % 100);
    d["host"] = serde_json::json!({"id": host, "hostname": host});
    serde_json::to_vec(&d).unwrap()
}

struct Inserted {
    /// The timed stretches: encoding and inserting.
    wall: Duration,
    encode: Duration,
    /// What `cpu` (the server's CPU time) grew by during them.
    server: Duration,
    bytes: u64,
    body_bytes: u64,
}

/// The sink's work on `n` events into `url`: columns + RowBinary per event, a batch every BATCH
/// events, posted by its `Inserter` (`inflight` INSERTs out at once while the next batch is
/// encoded). Documents are made a chunk at a time with the clock stopped and nothing in flight.
fn insert_all(url: &str, inflight: usize, n: u64, t: &[Value], base_ns: u64, cpu: impl Fn() -> Duration) -> Inserted {
    let cfg = ClickHouseConfig { batch_events: BATCH as usize, timeout: Duration::from_secs(300), max_retries: 0, inflight, ..ClickHouseConfig::new(url) };
    let mut out = Inserted { wall: Duration::ZERO, encode: Duration::ZERO, server: Duration::ZERO, bytes: 0, body_bytes: 0 };
    let mut i = 0;
    let mut body = Vec::with_capacity(64 << 20);
    while i < n {
        let end = (i + CHUNK).min(n);
        let docs: Vec<Vec<u8>> = (i..end).map(|j| doc(t, j, base_ns)).collect();
        let rows: Vec<_> = docs.iter().map(|d| agent::recorder::index::row(d, None).unwrap()).collect();
        out.bytes += docs.iter().map(|d| d.len() as u64).sum::<u64>();
        let (start, cpu0) = (Instant::now(), cpu());
        let mut inserter = Inserter::new(cfg.clone()).unwrap();
        for (rs, ds) in rows.chunks(BATCH as usize).zip(docs.chunks(BATCH as usize)) {
            let e = Instant::now();
            for (r, d) in rs.iter().zip(ds) {
                agent::output::clickhouse::encode(&mut body, &r.as_ref(), d);
            }
            out.encode += e.elapsed();
            out.body_bytes += body.len() as u64;
            let (r, next) = inserter.insert(std::mem::take(&mut body), rs.len() as u64);
            r.unwrap();
            body = next;
        }
        inserter.finish();
        out.wall += start.elapsed();
        out.server += cpu() - cpu0;
        assert_eq!(inserter.counts(), (end - i, 0), "every row delivered");
        i = end;
    }
    out
}

/// An HTTP server on 127.0.0.1 that reads each request's body and answers 200, a thread per
/// connection: the sink's cost without ClickHouse's.
fn discarding_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            std::thread::spawn(move || {
                let mut r = BufReader::with_capacity(1 << 20, c.try_clone().unwrap());
                let mut w = c;
                let mut line = String::new();
                loop {
                    let mut len = 0;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    io::copy(&mut (&mut r).take(len), &mut io::sink()).unwrap();
                    w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
                }
            });
        }
    });
    url
}

fn main() {
    // cargo bench passes `--bench`; anything else (cargo test --benches) gets a quick run.
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("OSPREY_FLEET_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(if full { 1_000_000 } else { 20_000 });
    let ch = clickhouse::ClickHouse::start();
    let fleet = Fleet::new(&ch.url());
    schema::init(&fleet, &schema::Layout::default()).unwrap();
    let t = templates();
    let base_ns = 1_790_000_000_000_000_000u64;

    let inflight = std::env::var("OSPREY_FLEET_INFLIGHT").ok().and_then(|s| s.parse().ok()).unwrap_or(ClickHouseConfig::new("").inflight);
    // The sink alone: the same inserts into a server that reads each body and answers 200.
    let alone = insert_all(&discarding_server(), inflight, n, &t, base_ns, || Duration::ZERO);
    println!("fleet insert into a discarding server: {:.0} events/s (the sink's own limit)", n as f64 / alone.wall.as_secs_f64());
    let server_cpu = || {
        let st = procfs::process::Process::new(ch.pid().unwrap() as i32).unwrap().stat().unwrap();
        Duration::from_secs_f64((st.utime + st.stime) as f64 / procfs::ticks_per_second() as f64)
    };
    let Inserted { wall, encode, server, bytes, body_bytes } = insert_all(&ch.url(), inflight, n, &t, base_ns, server_cpu);
    let rows = ch.count("SELECT count() FROM osprey.events");
    assert_eq!(rows, n);
    let disk = ch.count("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'osprey' AND active");
    println!(
        "fleet insert: {n} events, {:.0} events/s from one sink, {inflight} INSERTs in flight ({:.2} s; encoding {:.0}% of it; the server's CPU {:.1} µs/event), {:.0} B/doc, {:.0} B/row sent, {:.1} MiB on disk ({:.0} B/event)",
        n as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * encode.as_secs_f64() / wall.as_secs_f64(),
        server.as_secs_f64() * 1e6 / n as f64,
        bytes as f64 / n as f64,
        body_bytes as f64 / n as f64,
        disk as f64 / 1048576.0,
        disk as f64 / n as f64
    );
    // Let background merges settle before timing queries.
    let _ = ch.try_query("OPTIMIZE TABLE osprey.events FINAL");

    let last = n / 8 - 1;
    let mid_ns = (base_ns + n / 2 * 20_000) as i64;
    let hunts: Vec<(&str, Hunt)> = vec![
        ("--sha256", Hunt { sha256: Some(format!("{:064x}", 4242)), ..Hunt::default() }),
        ("--ip", Hunt { ip: Some("10.0.1.7".into()), ..Hunt::default() }),
        ("--cidr /24", Hunt { ip: Some("10.0.2.0/24".into()), limit: 100_000, ..Hunt::default() }),
        ("--domain", Hunt { domain: Some("h263.example.com".into()), ..Hunt::default() }),
        ("--domain glob", Hunt { domain: Some("h2631*.example.com".into()), ..Hunt::default() }),
        ("--path glob", Hunt { path: Some("/srv/data/17/12*".into()), ..Hunt::default() }),
        ("--cmdline", Hunt { cmdline: Some(format!("--job {last} ")), ..Hunt::default() }),
        ("--user", Hunt { user: Some("nobody".into()), limit: 100, ..Hunt::default() }),
        ("--since/--until 1s", Hunt { since_ns: Some(mid_ns), until_ns: Some(mid_ns + 1_000_000_000), limit: 100_000, ..Hunt::default() }),
        ("--host + 1s", Hunt { host: Some("node-042".into()), since_ns: Some(mid_ns), until_ns: Some(mid_ns + 1_000_000_000), limit: 100_000, ..Hunt::default() }),
        ("--cmdline + --port", Hunt { cmdline: Some("--queue q5".into()), port: Some(443), limit: 100, ..Hunt::default() }),
    ];
    println!("{:<22} {:>10} {:>8}", "hunt --fleet", "median", "hits");
    for (name, h) in &hunts {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..5 {
            let s = Instant::now();
            hits = hunt::run(&fleet, h).unwrap().hits.len();
            times.push(s.elapsed());
        }
        println!("{name:<22} {:>10.2?} {hits:>8}", median(times));
    }
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..3 {
        let s = Instant::now();
        let st = Story::build(&FleetHistory::new(fleet.clone()), &Subject::Entity(format!("{:032x}", last / 2))).unwrap();
        size = st.timeline.len();
        times.push(s.elapsed());
    }
    println!("{:<22} {:>10.2?} {size:>8}", "story --fleet --entity", median(times));
}
