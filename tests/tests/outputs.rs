//! Outputs and deployment, end to end, without loading BPF:
//! - a real rsyslogd (started here, on loopback, with its own config in a temp dir) receives
//!   events from the syslog sink in RFC 5424 over UDP, TCP and a local (unix) socket;
//! - the HTTP sink delivers every event to a receiver that fails its first requests, and counts
//!   what it drops when the receiver stays down longer than the queue allows;
//! - the Kubernetes manifests deserialise into the typed API structs with no field ignored, and
//!   carry the security-relevant settings.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use agent::{
    config::{Config, OutputSection},
    decode::{decode, raw},
    event::{Ecs, Event, EventBody},
    metrics::Metrics,
    output::{build_sinks, http::HttpConfig, syslog::Transport, Filter, Sink, SinkConfig, SyslogConfig},
    process::Host,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Events

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn ecs() -> Ecs {
    let host = Host { hostname: "osprey-test".into(), id: "test-machine".into(), boot_id: "test-boot".into() };
    Ecs::new(host, now_ns() - 3_600_000_000_000)
}

fn exec(pid: u32) -> Event {
    let rec = decode(&raw::exec(pid, 1_000, "/usr/bin/true", &["true", "--marker"], "/")).expect("valid record");
    Event { wall_ns: now_ns(), body: EventBody::Record(rec), ctx: None }
}

fn exit(pid: u32) -> Event {
    let rec = decode(&raw::exit(pid, 0, 2_000)).expect("valid record");
    Event { wall_ns: now_ns(), body: EventBody::Record(rec), ctx: None }
}

fn sinks_of(entries: Vec<SinkConfig>, metrics: &Arc<Metrics>) -> Vec<Box<dyn Sink>> {
    build_sinks(&OutputSection { stdout: false, sinks: entries }, metrics.clone()).expect("sinks build")
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn free_port_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_port_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// rsyslog

fn rsyslogd() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("rsyslogd")).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/rsyslogd"), PathBuf::from("/sbin/rsyslogd")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("rsyslogd is not installed: apt-get install rsyslog (or `cargo xtask deps` as root)")
        })
}

/// An rsyslogd of our own: loopback UDP and TCP ports, a unix socket in its temp dir, every
/// message written as one JSON object of its parsed RFC 5424 fields. It touches no system log.
struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
    udp: u16,
    tcp: u16,
}

impl Rsyslog {
    fn start() -> Self {
        let bin = rsyslogd();
        let dir = tempfile::tempdir().unwrap();
        let (udp, tcp) = (free_port_udp(), free_port_tcp());
        let d = dir.path().display();
        let conf = format!(
            r#"global(workDirectory="{d}" maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
module(load="imudp")
module(load="imtcp")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="input" name="inputname" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="osprey") {{
  action(type="omfile" file="{d}/out.jsonl" template="fields")
}}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="osprey")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="osprey")
input(type="imuxsock" socket="{d}/log" useSpecialParser="off" parseHostname="on" ignoreTimestamp="off" rateLimit.interval="0" ruleset="osprey")
"#
        );
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let check = Command::new(&bin).arg("-N1").arg("-f").arg(&conf_path).output().unwrap();
        assert!(check.status.success(), "rsyslogd rejects the test config: {}", String::from_utf8_lossy(&check.stderr));
        let child = Command::new(&bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut me = Self { child, dir, udp, tcp };
        me.wait_ready();
        me
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("out.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    /// Until a probe arrives on every input (UDP gives no other sign of life).
    fn wait_ready(&mut self) {
        let end = Instant::now() + Duration::from_secs(20);
        let probe = |tag: &str| format!("<14>1 2024-01-01T00:00:00Z probe osprey-probe - {tag} - ready");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let unix = std::os::unix::net::UnixDatagram::unbound().unwrap();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rsyslogd exited: {status}");
            }
            assert!(Instant::now() < end, "rsyslogd did not start listening");
            let _ = udp.send_to(probe("udp").as_bytes(), ("127.0.0.1", self.udp));
            let _ = unix.send_to(probe("unix").as_bytes(), self.socket());
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.tcp)) {
                let m = probe("tcp");
                let _ = s.write_all(format!("{} {m}", m.len()).as_bytes());
            }
            thread::sleep(Duration::from_millis(200));
            let seen: BTreeSet<String> = self
                .lines()
                .iter()
                .filter(|l| l["app"] == "osprey-probe")
                .filter_map(|l| l["msgid"].as_str().map(str::to_owned))
                .collect();
            if seen.len() == 3 {
                return;
            }
        }
    }

    /// Our messages (not the probes) that came in on `input`.
    fn received(&self, input: &str) -> Vec<serde_json::Value> {
        self.lines().into_iter().filter(|l| l["app"] == "osprey" && l["input"] == input).collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn syslog_sink(name: &str, transport: Transport, address: String, filter: Filter) -> SinkConfig {
    SinkConfig {
        name: Some(name.into()),
        filter,
        syslog: Some(SyslogConfig::new(transport, address)),
        ..SinkConfig::default()
    }
}

#[test]
fn rsyslog_receives_rfc5424_over_udp_tcp_and_unix_socket() {
    let rsyslog = Rsyslog::start();
    let metrics = Arc::new(Metrics::new());
    let only_exits = Filter { actions: vec!["exit".into()], ..Filter::default() };
    let mut sinks = sinks_of(
        vec![
            syslog_sink("udp", Transport::Udp, format!("127.0.0.1:{}", rsyslog.udp), Filter::default()),
            syslog_sink("tcp", Transport::Tcp, format!("127.0.0.1:{}", rsyslog.tcp), Filter::default()),
            syslog_sink("unix", Transport::Unix, rsyslog.socket().display().to_string(), only_exits),
        ],
        &metrics,
    );
    let ecs = ecs();
    const N: u32 = 40;
    let mut sent = BTreeMap::new();
    for pid in 50_000..50_000 + N {
        for ev in [exec(pid), exit(pid)] {
            let doc = ecs.to_value(&ev);
            sent.insert((pid, doc["event"]["action"].as_str().unwrap().to_owned()), doc);
            for s in &mut sinks {
                s.write(&ev, &ecs).unwrap();
            }
        }
        // A pace a datagram receiver keeps up with.
        thread::sleep(Duration::from_millis(2));
    }
    drop(sinks); // drains every queue

    let expect = [("imudp", 2 * N as usize), ("imtcp", 2 * N as usize), ("imuxsock", N as usize)];
    wait_for("rsyslog to write every message", Duration::from_secs(20), || {
        expect.iter().all(|(input, n)| rsyslog.received(input).len() >= *n)
    });
    let my_pid = std::process::id().to_string();
    for (input, n) in expect {
        let got = rsyslog.received(input);
        assert_eq!(got.len(), n, "{input}: {got:#?}");
        let mut seen = BTreeSet::new();
        for line in &got {
            assert_eq!(line["version"], "1", "{input}: RFC 5424 header: {line}");
            assert_eq!(line["pri"], "134", "{input}: local0.info: {line}");
            assert_eq!(line["hostname"], "osprey-test", "{line}");
            assert_eq!(line["app"], "osprey", "{line}");
            assert_eq!(line["procid"], my_pid.as_str(), "{line}");
            assert_eq!(line["sd"], "-", "{line}");
            let msg: serde_json::Value = serde_json::from_str(line["msg"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{input}: MSG is not the ECS JSON document ({e}): {line}"));
            let pid = msg["process"]["pid"].as_u64().unwrap() as u32;
            let action = msg["event"]["action"].as_str().unwrap().to_owned();
            assert_eq!(line["msgid"], action.as_str(), "MSGID is event.action: {line}");
            let want = &sent[&(pid, action.clone())];
            assert_eq!(&msg, want, "{input}: the document arrives unchanged");
            // TIMESTAMP: the event's time, to the microsecond.
            let ts = want["@timestamp"].as_str().unwrap();
            assert!(line["timestamp"].as_str().unwrap().starts_with(&ts[..26]), "{line} vs {ts}");
            assert!(seen.insert((pid, action)), "{input}: duplicate {line}");
        }
        if input == "imuxsock" {
            assert!(seen.iter().all(|(_, a)| a == "exit"), "the unix sink's filter lets only exits through");
        }
    }
    for (sink, n) in [("udp", 2 * N), ("tcp", 2 * N), ("unix", N)] {
        let m = metrics.output(sink);
        assert_eq!((m.written.get(), m.dropped.get(), m.errors.get()), (u64::from(n), 0, 0), "{sink}");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A minimal HTTP/1.1 receiver: answers request n with `status(n)`, records the NDJSON bodies
/// of the 2xx ones.
struct Receiver {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    delivered: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    fn start(listener: TcpListener, status: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Self {
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let (r, d, status) = (requests.clone(), delivered.clone(), Arc::new(status));
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (r, d, status) = (r.clone(), d.clone(), status.clone());
                thread::spawn(move || {
                    let _ = serve(conn, &r, &d, &*status);
                });
            }
        });
        Self { addr, requests, delivered }
    }

    fn pids(&self) -> Vec<u64> {
        self.delivered.lock().unwrap().iter().map(|v| v["process"]["pid"].as_u64().unwrap()).collect()
    }
}

fn serve(
    conn: TcpStream,
    requests: &AtomicUsize,
    delivered: &Mutex<Vec<serde_json::Value>>,
    status: &dyn Fn(usize) -> u16,
) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        assert!(line.starts_with("POST /ingest "), "{line}");
        let mut len = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        let code = status(requests.fetch_add(1, Ordering::SeqCst));
        if (200..300).contains(&code) {
            let mut d = delivered.lock().unwrap();
            for l in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                d.push(serde_json::from_slice(l).unwrap());
            }
        }
        write!(w, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n")?;
    }
}

fn http_sink(addr: SocketAddr, queue: usize, batch: usize) -> SinkConfig {
    // The client honours *_PROXY variables; the receiver is on loopback.
    for v in ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        std::env::remove_var(v);
    }
    let mut http = HttpConfig::new(format!("http://{addr}/ingest"));
    http.batch_events = batch;
    http.flush_interval = Duration::from_millis(50);
    http.initial_backoff = Duration::from_millis(20);
    http.max_backoff = Duration::from_millis(100);
    http.max_retries = 1000;
    SinkConfig { name: Some("siem".into()), queue, drain_timeout: Duration::from_secs(20), http: Some(http), ..Default::default() }
}

#[test]
fn http_sink_retries_until_every_event_is_delivered() {
    const FAIL: usize = 3;
    let rx = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), |n| if n < FAIL { 503 } else { 200 });
    let metrics = Arc::new(Metrics::new());
    let mut sinks = sinks_of(vec![http_sink(rx.addr, 10_000, 50)], &metrics);
    let ecs = ecs();
    for pid in 0..1000 {
        sinks[0].write(&exec(pid), &ecs).unwrap();
    }
    drop(sinks);
    let mut pids = rx.pids();
    pids.sort_unstable();
    assert_eq!(pids, (0..1000).collect::<Vec<u64>>(), "every event exactly once");
    let m = metrics.output("siem");
    assert_eq!((m.written.get(), m.dropped.get()), (1000, 0));
    assert_eq!(m.errors.get(), FAIL as u64, "one error per failed request");
    assert_eq!(m.retries.get(), FAIL as u64);
    assert!(rx.requests.load(Ordering::SeqCst) >= 1000 / 50 + FAIL);
    let text = metrics.render();
    assert!(text.contains("osprey_output_events_total{sink=\"siem\"} 1000"), "{text}");
    assert!(text.contains("osprey_output_retries_total{sink=\"siem\"} 3"), "{text}");
}

#[test]
fn http_sink_counts_drops_while_the_receiver_is_down() {
    // Reserve a port, then leave it closed: connections are refused until the receiver starts.
    let port = free_port_tcp();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let metrics = Arc::new(Metrics::new());
    const QUEUE: usize = 20;
    const BATCH: usize = 10;
    let mut sinks = sinks_of(vec![http_sink(addr, QUEUE, BATCH)], &metrics);
    let ecs = ecs();
    const SENT: u64 = 1000;
    let t = Instant::now();
    for pid in 0..SENT as u32 {
        sinks[0].write(&exec(pid), &ecs).unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(5), "a dead receiver never blocks the pipeline");
    let m = metrics.output("siem");
    // The worker holds one batch; the queue holds QUEUE more; everything else is dropped now.
    let dropped_while_down = m.dropped.get();
    assert!(dropped_while_down >= SENT - (QUEUE + BATCH + 1) as u64, "dropped {dropped_while_down}");
    wait_for("the refused connection to be counted", Duration::from_secs(10), || m.errors.get() >= 1);
    thread::sleep(Duration::from_millis(300));

    // The receiver comes back: what was held is delivered, nothing twice.
    let rx = Receiver::start(TcpListener::bind(addr).unwrap(), |_| 200);
    drop(sinks);
    let pids = rx.pids();
    let unique: BTreeSet<u64> = pids.iter().copied().collect();
    assert_eq!(unique.len(), pids.len(), "no duplicates");
    assert!(!pids.is_empty(), "the held events arrive once the receiver is back");
    assert_eq!(m.written.get(), pids.len() as u64);
    assert_eq!(m.written.get() + m.dropped.get(), SENT, "delivered + dropped = sent");
    assert!(m.retries.get() >= 1);
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Deserialises a manifest into `T`, failing on any field `T` does not have, and checks that
/// the typed value serialises back to exactly the YAML that was written.
fn load<T: DeserializeOwned + Serialize>(file: &str) -> T {
    let path = manifest_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut ignored = Vec::new();
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let typed: T = serde_ignored::deserialize(de, |p| ignored.push(p.to_string()))
        .unwrap_or_else(|e| panic!("{file}: does not deserialise into {}: {e}", std::any::type_name::<T>()));
    assert!(ignored.is_empty(), "{file}: fields the API does not know (typos?): {ignored:?}");
    let raw: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, raw, "{file}: the typed form differs from the YAML");
    typed
}

/// The Prometheus Operator's ServiceMonitor, the fields we use (anything else fails `load`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceMonitorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job_label: Option<String>,
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace_selector: Option<NamespaceSelector>,
    endpoints: Vec<MonitorEndpoint>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamespaceSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    any: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    match_names: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MonitorEndpoint {
    port: String,
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scrape_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    relabelings: Option<Vec<Relabeling>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Relabeling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_labels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replacement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    resources: Vec<String>,
}

fn port_name(p: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match p {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
    }
}

#[test]
fn kubernetes_manifests_are_typed_and_locked_down() {
    use k8s_openapi::api::{
        apps::v1::DaemonSet,
        core::v1::{ConfigMap, Namespace, Service, ServiceAccount},
    };

    // Every manifest is listed in the kustomization, and every listed one exists.
    let k: Kustomization = load("kustomization.yaml");
    let mut on_disk: Vec<String> = std::fs::read_dir(manifest_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    on_disk.sort();
    let mut listed = k.resources.clone();
    listed.sort();
    assert_eq!(listed, on_disk);

    let ns: Namespace = load("namespace.yaml");
    let ns_name = ns.metadata.name.unwrap();
    let sa: ServiceAccount = load("serviceaccount.yaml");
    assert_eq!(sa.automount_service_account_token, Some(false));

    // --- DaemonSet
    let ds: DaemonSet = load("daemonset.yaml");
    assert_eq!(ds.metadata.namespace.as_deref(), Some(ns_name.as_str()));
    let spec = ds.spec;
    let template_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    let selector = spec.selector.match_labels.clone().unwrap();
    assert!(selector.iter().all(|(k, v)| template_labels.get(k) == Some(v)), "selector matches the pods");
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.host_pid, Some(true), "hostPID");
    assert_eq!(pod.service_account_name.as_deref(), sa.metadata.name.as_deref());
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];

    let sc = c.security_context.as_ref().expect("securityContext");
    let caps = sc.capabilities.as_ref();
    let added: BTreeSet<&str> =
        caps.and_then(|c| c.add.as_ref()).map(|a| a.iter().map(String::as_str).collect()).unwrap_or_default();
    let want: BTreeSet<&str> =
        ["BPF", "PERFMON", "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "KILL", "DAC_READ_SEARCH"].into_iter().collect();
    if sc.privileged == Some(true) {
        assert!(added.is_empty(), "privileged already has every capability");
    } else {
        assert_eq!(added, want, "exactly the capabilities the agent needs");
        let dropped = caps.and_then(|c| c.drop.clone()).unwrap_or_default();
        assert_eq!(dropped, vec!["ALL".to_string()], "everything else dropped");
    }
    assert_eq!(sc.read_only_root_filesystem, Some(true));

    // Host mounts: each host path is a hostPath volume mounted into the container.
    let volumes = pod.volumes.as_ref().unwrap();
    let mounts = c.volume_mounts.as_ref().unwrap();
    for (host, in_container, writable) in [
        ("/sys/kernel/btf", "/sys/kernel/btf", false),
        ("/sys/fs/bpf", "/sys/fs/bpf", true),
        ("/sys/kernel/tracing", "/sys/kernel/tracing", true),
        ("/sys/fs/cgroup", "/sys/fs/cgroup", false),
        ("/proc", "/host/proc", false),
    ] {
        let vol = volumes
            .iter()
            .find(|v| v.host_path.as_ref().is_some_and(|h| h.path == host))
            .unwrap_or_else(|| panic!("no hostPath volume for {host}"));
        assert_eq!(vol.host_path.as_ref().unwrap().type_.as_deref(), Some("Directory"), "{host}");
        let m = mounts
            .iter()
            .find(|m| m.name == vol.name)
            .unwrap_or_else(|| panic!("hostPath {host} is not mounted"));
        assert_eq!(m.mount_path, in_container);
        assert_eq!(m.read_only.unwrap_or(false), !writable, "{host} read-only: {}", !writable);
        assert_ne!(m.mount_propagation.as_deref(), Some("Bidirectional"), "needs privileged");
    }

    // Probes on the health endpoints, on the port the config listens on.
    let ports = c.ports.as_ref().unwrap();
    let metrics_port = ports.iter().find(|p| p.name.as_deref() == Some("metrics")).expect("a `metrics` port");
    for (probe, path) in [(&c.liveness_probe, "/healthz"), (&c.readiness_probe, "/readyz"), (&c.startup_probe, "/healthz")] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{path} probe"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(port_name(&get.port), "metrics");
    }
    // Requests and limits for both CPU and memory.
    let res = c.resources.as_ref().expect("resources");
    for set in [&res.requests, &res.limits] {
        let set = set.as_ref().expect("requests and limits");
        assert!(set.contains_key("cpu") && set.contains_key("memory"), "{set:?}");
    }

    // Config and rules come from the ConfigMaps.
    let config_vol = volumes.iter().find(|v| v.config_map.is_some() && v.name == "config").unwrap();
    let cm_name = config_vol.config_map.as_ref().unwrap().name.clone();
    let cm: ConfigMap = load("configmap.yaml");
    assert_eq!(cm.metadata.name.as_deref(), Some(cm_name.as_str()));
    let text = &cm.data.as_ref().unwrap()["osprey.yaml"];
    let cfg = Config::parse(text, "configmap.yaml:osprey.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.health.enabled);
    assert_eq!(i32::from(cfg.health.listen.port()), metrics_port.container_port, "probes reach the health port");
    assert!(cfg.health.listen.ip().is_unspecified(), "kubelet and Prometheus reach it from outside the pod");
    let args = c.args.as_ref().unwrap();
    let at = args.iter().position(|a| a == "--config").expect("--config");
    let config_mount = mounts.iter().find(|m| m.name == config_vol.name).unwrap();
    assert_eq!(args[at + 1], config_mount.mount_path);

    let rules: ConfigMap = load("rules-configmap.yaml");
    let rules_vol = volumes.iter().find(|v| v.name == "rules").unwrap();
    assert_eq!(rules_vol.config_map.as_ref().unwrap().name, rules.metadata.name.clone().unwrap());
    for (key, rule) in rules.data.as_ref().unwrap() {
        let v: serde_json::Value = serde_yaml_ng::from_str(rule).unwrap_or_else(|e| panic!("{key}: {e}"));
        for field in ["title", "logsource", "detection", "level"] {
            assert!(v.get(field).is_some(), "{key}: a Sigma rule needs `{field}`");
        }
    }

    // --- Service and ServiceMonitor: select the agent pods and scrape /metrics by port name.
    let svc: Service = load("service.yaml");
    let svc_spec = svc.spec.as_ref().unwrap();
    let svc_selector = svc_spec.selector.as_ref().unwrap();
    assert!(svc_selector.iter().all(|(k, v)| template_labels.get(k) == Some(v)), "the Service selects the agents");
    let svc_port = &svc_spec.ports.as_ref().unwrap()[0];
    assert_eq!(svc_port.port, metrics_port.container_port);
    assert_eq!(port_name(svc_port.target_port.as_ref().unwrap()), "metrics");

    let sm: ServiceMonitor = load("servicemonitor.yaml");
    assert_eq!(sm.api_version, "monitoring.coreos.com/v1");
    assert_eq!(sm.kind, "ServiceMonitor");
    let svc_labels = svc.metadata.labels.clone().unwrap();
    let sm_selector = sm.spec.selector.match_labels.clone().unwrap();
    assert!(sm_selector.iter().all(|(k, v)| svc_labels.get(k) == Some(v)), "the ServiceMonitor selects the Service");
    assert_eq!(sm.spec.endpoints[0].port, svc_port.name.clone().unwrap());
    assert_eq!(sm.spec.endpoints[0].path, "/metrics");
    let in_ns = sm.spec.namespace_selector.as_ref().and_then(|n| n.match_names.clone()).unwrap_or_default();
    assert_eq!(in_ns, vec![ns_name.clone()]);
}

#[test]
fn kubernetes_manifests_reject_unknown_fields() {
    // The check above would notice a typo: prove it on a copy with one.
    let text = std::fs::read_to_string(manifest_dir().join("daemonset.yaml")).unwrap();
    let typo = text.replacen("hostPID: true", "hostPid: true", 1);
    assert_ne!(text, typo);
    let mut ignored = Vec::new();
    let de = serde_yaml_ng::Deserializer::from_str(&typo);
    let _: k8s_openapi::api::apps::v1::DaemonSet = serde_ignored::deserialize(de, |p| ignored.push(p.to_string())).unwrap();
    // serde_ignored writes `?` for each Option on the way.
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert_eq!(ignored[0].replace(".?", ""), "spec.template.spec.hostPid");
}

#[test]
fn dockerfile_is_a_multi_stage_build() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "builder and runtime: {froms:?}");
    assert!(froms[0].contains(" AS builder"), "{froms:?}");
    assert_eq!(froms[1], "FROM debian:bookworm-slim");
    for pkg in ["clang-19", "llvm-19", "libbpf-dev"] {
        assert!(text.contains(pkg), "the builder installs {pkg}");
    }
    assert!(text.contains("cargo build --release --locked -p agent"));
    assert!(text.contains("COPY --from=builder"));
    // The runtime stage carries the binary and the default config, not the toolchain.
    let runtime = &text[text.find("FROM debian:bookworm-slim").unwrap()..];
    assert!(!runtime.contains("apt-get install"), "nothing installed in the runtime image");
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/osprey\"]"));
}
