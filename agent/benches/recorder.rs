//! The recorder (issue 11): sustained ingest into the store on one core (target ≥ 200,000
//! events/s) and hunt / story latency over a large store (the issue asks for 10 million
//! events).
//!
//! Events are real ECS documents captured on this kernel (`rules/tests/*.jsonl`), varied per
//! event (process entity ids, pids, times, addresses, paths), so that the indexes see realistic
//! cardinality: 8 events per process, one in 40 a connection to one of 50,000 addresses.
//! Ingest is what the recorder's thread does per event: take the index columns (the agent reads
//! them off the typed event, `recorder_row` in the pipeline bench; here, from fixtures, they are
//! read from the JSON and that is timed apart) and append the event in batched transactions
//! (8192 per transaction, the default).
//!
//!     OSPREY_RECORDER_EVENTS=10000000 OSPREY_BENCH_DIR=/var/tmp \
//!         cargo bench -p agent --bench recorder
//!
//! `OSPREY_RECORDER_STORE=PATH` keeps the store at PATH (and, if it already holds events,
//! queries it without ingesting again).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use agent::recorder::{
    hunt::Hunt,
    index::row,
    story::{Story, Subject},
    Store,
};
use serde_json::Value;

const BATCH: usize = 8192;

#[path = "support/events.rs"]
mod events;
use events::{median, templates};

fn doc(t: &[Value], i: u64, base_ns: u64) -> Vec<u8> {
    serde_json::to_vec(&events::doc(t, i, base_ns)).unwrap()
}

fn main() {
    // cargo bench passes `--bench`; anything else (cargo test --benches) gets a quick run.
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("OSPREY_RECORDER_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(if full { 1_000_000 } else { 20_000 });
    let base = std::env::var_os("OSPREY_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let path = std::env::var_os("OSPREY_RECORDER_STORE").map_or_else(|| dir.path().join("recorder.db"), PathBuf::from);
    let mut store = Store::open(&path).unwrap();
    let held = store.count().unwrap();
    let n = match held {
        0 => n,
        _ => {
            println!("recorder: querying the {held} events already in {}", path.display());
            held
        }
    };
    let t = templates();
    let base_ns = 1_790_000_000_000_000_000u64;

    let mut insert = Duration::ZERO;
    let mut parse = Duration::ZERO;
    let mut bytes = 0u64;
    let mut i = held;
    let ingested = n - i;
    while i < n {
        let docs: Vec<Vec<u8>> = (i..(i + BATCH as u64).min(n)).map(|j| doc(&t, j, base_ns)).collect();
        bytes += docs.iter().map(|d| d.len() as u64).sum::<u64>();
        let start = Instant::now();
        let rows: Vec<_> = docs.iter().map(|d| row(d, None).unwrap()).collect();
        parse += start.elapsed();
        let start = Instant::now();
        store.insert(rows.iter().zip(&docs).map(|(r, d)| (r, d.as_slice()))).unwrap();
        insert += start.elapsed();
        i += docs.len() as u64;
    }
    let file = std::fs::metadata(&path).unwrap().len();
    if ingested > 0 {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / ingested as f64;
        println!(
            "recorder store insert: {ingested} events, {:.0} events/s on one core ({:.2} µs/event); the index row read from the JSON {:.2} µs/event more (the agent reads it from the typed event: pipeline bench, recorder_row); {:.0} B/doc, store {:.1} MiB ({:.0} B/event)",
            ingested as f64 / insert.as_secs_f64(),
            us(insert),
            us(parse),
            bytes as f64 / ingested as f64,
            file as f64 / 1048576.0,
            file as f64 / n as f64
        );
    }
    drop(store);

    let store = Store::open_read(&path).unwrap();
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
        ("--cmdline + --port", Hunt { cmdline: Some("--queue q5".into()), port: Some(443), limit: 100, ..Hunt::default() }),
    ];
    println!("{:<22} {:>10} {:>8}", "hunt", "median", "hits");
    for (name, h) in &hunts {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..5 {
            let s = Instant::now();
            hits = h.run(&store).unwrap().hits.len();
            times.push(s.elapsed());
        }
        println!("{name:<22} {:>10.2?} {hits:>8}", median(times));
    }
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let s = Instant::now();
        let st = Story::build(&store, &Subject::Entity(format!("{:032x}", last / 2))).unwrap();
        size = st.timeline.len();
        times.push(s.elapsed());
    }
    println!("{:<22} {:>10.2?} {size:>8}", "story --entity", median(times));
}
