//! The health endpoint of the real binary (root): /readyz turns 200 only once the programs are
//! attached and the rules loaded, and /metrics counters move consistently with a workload:
//! events_total grows by at least the execs delivered, and delivered + lost = performed.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use osprey_tests::{canonical, osprey_bin, require_root};

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let status = body.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body))
}

/// Sum of every sample of `name` whose labels contain all of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (n, rest) = key.split_once('{').unwrap_or((key, ""));
            (n == name && labels.iter().all(|want| rest.contains(want))).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[test]
fn readyz_and_metrics_follow_a_real_workload() {
    require_root();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sock = tempfile::tempdir().unwrap();
    let mut agent = Command::new(osprey_bin())
        .args(["run", "--duration", "90s", "--no-recorder", "--health-listen", &format!("127.0.0.1:{port}")])
        .arg("--control-socket")
        .arg(sock.path().join("osprey.sock"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = agent.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<String>>());

    // /readyz: whatever is seen before it turns 200 is 503.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.last() != Some(&200) {
        assert!(Instant::now() < deadline, "not ready in 30 s: {seen:?}");
        if let Some((status, _)) = get(port, "/readyz") {
            seen.push(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen[..seen.len() - 1].iter().all(|s| *s == 503), "{seen:?}");
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));

    let (_, before) = get(port, "/metrics").unwrap();
    const N: u32 = 2_000;
    let script = format!("i=0; while [ $i -lt {N} ]; do /bin/true; i=$((i+1)); done");
    let mut sh = Command::new("/bin/sh").args(["-c", &script]).spawn().unwrap();
    let shell = sh.id();
    assert!(sh.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(2500)); // the kernel counters are read every second
    let (_, after) = get(port, "/metrics").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(agent.wait().unwrap().success());
    let lines = reader.join().unwrap();

    let t = canonical("/bin/true");
    let delivered = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|d| d["event"]["action"] == "exec" && d["process"]["parent"]["pid"] == shell && d["process"]["executable"] == t.as_str())
        .count() as f64;
    let grew = |name: &str, labels: &[&str]| metric(&after, name, labels) - metric(&before, name, labels);
    let events = grew("osprey_events_total", &["type=\"exec\""]);
    let lost = grew("osprey_events_lost_total", &["type=\"exec\""]);
    let written = grew("osprey_output_events_total", &["sink=\"stdout\""]);
    eprintln!("metrics: performed {N}, delivered {delivered}, events_total +{events}, lost +{lost}, stdout +{written}");
    assert!(events >= delivered, "events_total grew by at least the execs delivered");
    assert!(delivered <= N as f64);
    assert!(delivered + lost >= N as f64, "delivered + lost = performed");
    if lost == 0.0 {
        assert_eq!(delivered, N as f64);
    }
    assert!(written >= delivered, "stdout wrote them");
    assert_eq!(metric(&after, "osprey_decode_errors_total", &[]), 0.0);
    assert!(metric(&after, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(metric(&after, "osprey_process_table_entries", &[]) > 0.0);
    assert_eq!(metric(&after, "osprey_build_info", &[]), 1.0);
    assert_eq!(metric(&after, "osprey_probe_attached", &["program=\"proc_exec\""]), 1.0);
    assert!(metric(&after, "osprey_event_latency_seconds_count", &[]) >= delivered);
    assert!(after.contains("osprey_ringbuf_used_bytes{cpu=\"0\"}"), "ring fill level per CPU");
}
