//! ClickHouse servers for tests and benchmarks: real `clickhouse-server` processes (Debian's
//! package) on 127.0.0.1, on free ports, each with its own configuration, data and logs in a
//! temporary directory; stopped (and their files removed) on drop. The system service, if any,
//! is never touched.
//!
//! Only std and tempfile: `agent/benches/fleet.rs` includes this file too.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const SERVER: &str = "/usr/sbin/clickhouse-server";

/// One server process.
pub struct ClickHouse {
    child: Option<Child>,
    pub http_port: u16,
    pub tcp_port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port()
}

fn config(dir: &Path, http: u16, tcp: u16, cluster: &str) -> String {
    let d = dir.display();
    format!(
        r#"<?xml version="1.0"?>
<yandex>
  <logger><level>information</level><log>{d}/log/server.log</log><errorlog>{d}/log/error.log</errorlog><size>100M</size><count>2</count></logger>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>536870912</mark_cache_size>
  <uncompressed_cache_size>536870912</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <timezone>UTC</timezone>
  <remote_servers>{cluster}</remote_servers>
</yandex>
"#
    )
}

const USERS: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"#;

impl ClickHouse {
    /// One server on its own.
    pub fn start() -> Self {
        let (http, tcp) = (free_port(), free_port());
        Self::spawn(http, tcp, "")
    }

    /// `n` servers, each the shard of a cluster named `cluster` in every server's
    /// `remote_servers`.
    pub fn cluster(name: &str, n: usize) -> Vec<Self> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let shards: String = ports
            .iter()
            .map(|(_, tcp)| format!("<shard><replica><host>127.0.0.1</host><port>{tcp}</port></replica></shard>"))
            .collect();
        let section = format!("<{name}>{shards}</{name}>");
        ports.iter().map(|(http, tcp)| Self::spawn(*http, *tcp, &section)).collect()
    }

    fn spawn(http: u16, tcp: u16, cluster: &str) -> Self {
        assert!(Path::new(SERVER).exists(), "{SERVER} is missing: apt-get install clickhouse-server clickhouse-client");
        let dir = tempfile::Builder::new().prefix("osprey-clickhouse-").tempdir().unwrap();
        for sub in ["log", "data", "tmp", "user_files", "format_schemas"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("config.xml"), config(dir.path(), http, tcp, cluster)).unwrap();
        std::fs::write(dir.path().join("users.xml"), USERS).unwrap();
        let mut s = Self { child: None, http_port: http, tcp_port: tcp, dir };
        s.run();
        s
    }

    fn run(&mut self) {
        let out = std::fs::File::create(self.dir.path().join("log/stdout.log")).unwrap();
        let child = Command::new(SERVER)
            .arg(format!("--config-file={}", self.dir.path().join("config.xml").display()))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("clickhouse-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(v) = self.try_query("SELECT 1") {
                if v.trim() == "1" {
                    return;
                }
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("clickhouse-server exited ({st}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "clickhouse-server did not answer on :{}\n{}", self.http_port, self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        for f in ["log/stdout.log", "log/error.log"] {
            s.push_str(&std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default());
        }
        s.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect()
    }

    /// Runs `sql` over the HTTP interface; the body of a 200 answer, or the error text.
    pub fn try_query(&self, sql: &str) -> Result<String, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        write!(s, "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{sql}", sql.len()).map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&resp).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("bad answer: {text}"))?;
        if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
            Ok(body.to_owned())
        } else {
            Err(body.to_owned())
        }
    }

    pub fn query(&self, sql: &str) -> String {
        self.try_query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A number the query answers.
    pub fn count(&self, sql: &str) -> u64 {
        let v = self.query(sql);
        v.trim().parse().unwrap_or_else(|_| panic!("{sql}: {v}"))
    }

    /// Kills the server (SIGKILL: no clean shutdown, like a crash or a pulled cable).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// The server process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: a clean shutdown, then make sure.
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
