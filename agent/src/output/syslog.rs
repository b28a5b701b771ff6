//! Syslog: RFC 5424 messages (the ECS JSON document is the MSG) over UDP (RFC 5426, one message
//! per datagram), TCP (RFC 6587 octet counting: `LEN SP MSG`) or the local socket (`/dev/log`,
//! one message per datagram). `format: rfc3164` writes the legacy BSD header instead, which is
//! what journald's `/dev/log` parses.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket},
    os::unix::net::UnixDatagram,
    path::PathBuf,
    time::{Duration, Instant, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tracing::info;

use super::{
    filter::Facts,
    queue::{Backoff, Doc, Stop, Writer},
    OutputError,
};
use crate::{config::ByteSize, metrics::OutputMetrics};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Unix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Rfc5424,
    Rfc3164,
}

/// Syslog facilities by name (RFC 5424 table 1).
pub const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("security", 13),
    ("console", 14),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    #[serde(default)]
    pub transport: Transport,
    /// `host:port` for udp/tcp (default `127.0.0.1:514`), a socket path for unix (`/dev/log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// Facility name, e.g. `local0`, `auth`, `daemon`.
    #[serde(default = "default_facility")]
    pub facility: String,
    /// APP-NAME (RFC 5424) / TAG (RFC 3164).
    #[serde(default = "default_app")]
    pub app_name: String,
    /// HOSTNAME; the event's `host.hostname` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Larger messages are dropped (and counted); receivers truncate past their own limit
    /// (rsyslog: 8KiB unless `$MaxMessageSize` says otherwise).
    #[serde(default = "default_max_message")]
    pub max_message_size: ByteSize,
}

fn default_facility() -> String {
    "local0".into()
}
fn default_app() -> String {
    "osprey".into()
}
fn default_max_message() -> ByteSize {
    ByteSize(60 << 10)
}

impl SyslogConfig {
    pub fn new(transport: Transport, address: impl Into<String>) -> Self {
        Self {
            transport,
            address: Some(address.into()),
            format: Format::default(),
            facility: default_facility(),
            app_name: default_app(),
            hostname: None,
            max_message_size: default_max_message(),
        }
    }

    pub fn address(&self) -> String {
        match (&self.address, self.transport) {
            (Some(a), _) => a.clone(),
            (None, Transport::Unix) => "/dev/log".into(),
            (None, _) => "127.0.0.1:514".into(),
        }
    }

    fn facility_code(&self) -> Option<u8> {
        FACILITIES.iter().find(|(n, _)| *n == self.facility).map(|(_, c)| *c)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.facility_code().is_none() {
            let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
            return Err(format!("syslog.facility: `{}` is not one of {}", self.facility, names.join(", ")));
        }
        if self.app_name.is_empty() || self.app_name.len() > 48 || !self.app_name.bytes().all(printable) {
            return Err("syslog.app_name: 1 to 48 printable ASCII characters, no spaces".into());
        }
        let max = self.max_message_size.0;
        if max < 480 {
            return Err("syslog.max_message_size: at least 480 bytes (RFC 5424)".into());
        }
        if self.transport == Transport::Udp && max > 65_507 {
            return Err("syslog.max_message_size: a UDP datagram holds at most 65507 bytes".into());
        }
        let addr = self.address();
        if self.transport != Transport::Unix && addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
            return Err(format!("syslog.address: `{addr}` is not host:port"));
        }
        Ok(())
    }
}

fn printable(b: u8) -> bool {
    (33..=126).contains(&b)
}

/// Syslog severity of an event: alerts by `event.severity`, loss as a warning, the rest info.
pub fn severity(f: &Facts) -> u8 {
    match (f.kind, f.severity) {
        ("alert", Some(s)) if s >= 99 => 2, // critical
        ("alert", Some(s)) if s >= 73 => 3, // error
        ("alert", Some(s)) if s >= 47 => 4, // warning
        ("alert", _) => 5,                  // notice
        (_, _) if f.action == "events_lost" => 4,
        _ => 6, // informational
    }
}

/// Appends `s` limited to `max` PRINTUSASCII characters, `-` (NILVALUE) when nothing is left.
fn header_field(out: &mut Vec<u8>, s: &str, max: usize) {
    let start = out.len();
    out.extend(s.bytes().filter(|b| printable(*b)).take(max));
    if out.len() == start {
        out.push(b'-');
    }
}

/// `2023-11-14T22:13:20.123456Z`: RFC 5424 allows at most six fractional digits.
fn rfc5424_time(wall_ns: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_nanos(wall_ns)).to_string()
}

/// `Nov 14 22:13:20` (RFC 3164, UTC; day space-padded).
fn rfc3164_time(wall_ns: u64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let t = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(wall_ns)).to_string();
    // YYYY-MM-DDTHH:MM:SSZ
    let month = t.get(5..7).and_then(|m| m.parse::<usize>().ok()).unwrap_or(1).clamp(1, 12);
    let day: u32 = t.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    format!("{} {day:>2} {}", MONTHS[month - 1], t.get(11..19).unwrap_or("00:00:00"))
}

/// Formats one message (no transport framing).
pub(crate) struct Formatter {
    format: Format,
    facility: u8,
    app: String,
    hostname: Option<String>,
    procid: String,
}

impl Formatter {
    pub fn new(cfg: &SyslogConfig) -> Self {
        Self {
            format: cfg.format,
            facility: cfg.facility_code().unwrap_or(16),
            app: cfg.app_name.clone(),
            hostname: cfg.hostname.clone(),
            procid: std::process::id().to_string(),
        }
    }

    pub fn format(&self, doc: &Doc<'_>, out: &mut Vec<u8>) {
        let pri = u32::from(self.facility) * 8 + u32::from(severity(doc.facts));
        let host = self.hostname.as_deref().unwrap_or(&doc.ecs.host().hostname);
        match self.format {
            Format::Rfc5424 => {
                // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
                out.extend_from_slice(format!("<{pri}>1 {} ", rfc5424_time(doc.event.wall_ns)).as_bytes());
                header_field(out, host, 255);
                out.push(b' ');
                header_field(out, &self.app, 48);
                out.push(b' ');
                header_field(out, &self.procid, 128);
                out.push(b' ');
                header_field(out, doc.facts.action, 32);
                out.extend_from_slice(b" - ");
            }
            Format::Rfc3164 => {
                // <PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG
                out.extend_from_slice(format!("<{pri}>{} ", rfc3164_time(doc.event.wall_ns)).as_bytes());
                header_field(out, host, 255);
                out.push(b' ');
                header_field(out, &self.app, 32);
                out.extend_from_slice(format!("[{}]: ", self.procid).as_bytes());
            }
        }
        out.extend_from_slice(doc.json);
    }
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Unix(UnixDatagram),
}

pub(crate) struct SyslogWriter {
    transport: Transport,
    address: String,
    fmt: Formatter,
    max: usize,
    conn: Option<Conn>,
    /// TCP: octet-counted frames waiting for one write, and how many.
    pending: Vec<u8>,
    pending_n: u64,
    msg: Vec<u8>,
    m: OutputMetrics,
    stop: Stop,
    backoff: Backoff,
    /// Not before this may a failed connection be tried again.
    retry_at: Option<Instant>,
}

const TCP_CHUNK: usize = 1 << 16;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolves to no address")))
}

impl SyslogWriter {
    pub fn new(cfg: &SyslogConfig, m: OutputMetrics, stop: Stop) -> Self {
        Self {
            transport: cfg.transport,
            address: cfg.address(),
            fmt: Formatter::new(cfg),
            max: cfg.max_message_size.0 as usize,
            conn: None,
            pending: Vec::new(),
            pending_n: 0,
            msg: Vec::new(),
            m,
            stop,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            retry_at: None,
        }
    }

    fn err(&self, what: &str, source: io::Error) -> OutputError {
        OutputError::Io { what: format!("syslog {what} {}", self.address), source }
    }

    fn connect(&mut self) -> Result<(), OutputError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let conn = match self.transport {
            Transport::Udp => {
                let to = resolve(&self.address).map_err(|e| self.err("resolving", e))?;
                let local: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
                let s = UdpSocket::bind(local).and_then(|s| s.connect(to).map(|()| s)).map_err(|e| self.err("connecting to", e))?;
                Conn::Udp(s)
            }
            Transport::Tcp => {
                let to = resolve(&self.address).map_err(|e| self.err("resolving", e))?;
                let s = TcpStream::connect_timeout(&to, IO_TIMEOUT).map_err(|e| self.err("connecting to", e))?;
                let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                let _ = s.set_nodelay(true);
                info!(address = %self.address, "syslog connected");
                Conn::Tcp(s)
            }
            Transport::Unix => {
                let s = UnixDatagram::unbound()
                    .and_then(|s| s.connect(PathBuf::from(&self.address)).map(|()| s))
                    .map_err(|e| self.err("connecting to", e))?;
                let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                Conn::Unix(s)
            }
        };
        self.conn = Some(conn);
        Ok(())
    }

    /// Datagram transports: one message, sent now; a failure loses only it.
    fn send_datagram(&mut self) -> Result<(), OutputError> {
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                self.m.dropped.inc();
                return Ok(()); // counted; the connection error was reported when it happened
            }
        }
        let r = self.connect().and_then(|()| {
            let sent = match &self.conn {
                Some(Conn::Udp(s)) => s.send(&self.msg),
                Some(Conn::Unix(s)) => s.send(&self.msg),
                _ => return Ok(()),
            };
            sent.map(drop).map_err(|e| self.err("sending to", e))
        });
        match r {
            Ok(()) => {
                self.m.written.inc();
                self.retry_at = None;
                self.backoff.reset();
                Ok(())
            }
            Err(e) => {
                self.m.errors.inc();
                self.m.dropped.inc();
                self.conn = None;
                self.retry_at = Some(Instant::now() + self.backoff.next_delay());
                Err(e)
            }
        }
    }

    /// Is the peer still there? A write to a closed TCP connection "succeeds" once, so look first.
    fn tcp_alive(s: &mut TcpStream) -> bool {
        if s.set_nonblocking(true).is_err() {
            return false;
        }
        let mut b = [0u8; 64];
        let alive = match s.read(&mut b) {
            Ok(0) => false,
            Ok(_) => true, // a receiver has nothing to say; ignore it
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        s.set_nonblocking(false).is_ok() && alive
    }

    /// TCP: writes the pending frames, reconnecting (with backoff, until stopped) as needed.
    /// Frames are resent whole on a new connection: delivery is at least once.
    fn flush_tcp(&mut self) -> Result<(), OutputError> {
        let mut last_err = None;
        while self.pending_n > 0 {
            if let Some(Conn::Tcp(s)) = &mut self.conn {
                if !Self::tcp_alive(s) {
                    self.conn = None;
                }
            }
            let r = match self.connect() {
                Err(e) => Err(e),
                Ok(()) => {
                    let w = match &mut self.conn {
                        Some(Conn::Tcp(s)) => s.write_all(&self.pending).and_then(|()| s.flush()),
                        _ => Ok(()),
                    };
                    w.map_err(|e| self.err("writing to", e))
                }
            };
            match r {
                Ok(()) => {
                    self.m.written.inc_by(self.pending_n);
                    self.pending.clear();
                    self.pending_n = 0;
                    self.backoff.reset();
                }
                Err(e) => {
                    self.m.errors.inc();
                    self.conn = None;
                    last_err = Some(e);
                    // Blocking here fills the queue, where new events are dropped and counted.
                    if self.stop.expired() || !self.stop.sleep(self.backoff.next_delay()) {
                        break;
                    }
                    self.m.retries.inc();
                }
            }
        }
        if self.pending_n > 0 {
            self.m.dropped.inc_by(self.pending_n);
            self.pending.clear();
            self.pending_n = 0;
        }
        last_err.map_or(Ok(()), Err)
    }
}

impl Writer for SyslogWriter {
    fn write(&mut self, doc: &Doc<'_>) -> Result<(), OutputError> {
        self.msg.clear();
        self.fmt.format(doc, &mut self.msg);
        if self.msg.len() > self.max {
            self.m.errors.inc();
            self.m.dropped.inc();
            return Err(OutputError::TooLarge { size: self.msg.len(), max: self.max });
        }
        match self.transport {
            Transport::Udp | Transport::Unix => self.send_datagram(),
            Transport::Tcp => {
                // RFC 6587 3.4.1: MSG-LEN SP SYSLOG-MSG
                self.pending.extend_from_slice(format!("{} ", self.msg.len()).as_bytes());
                self.pending.extend_from_slice(&self.msg);
                self.pending_n += 1;
                if self.pending.len() >= TCP_CHUNK {
                    return self.flush_tcp();
                }
                Ok(())
            }
        }
    }

    fn idle(&mut self) -> Result<(), OutputError> {
        self.flush_tcp()
    }

    fn close(&mut self) -> Result<(), OutputError> {
        self.flush_tcp()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::BufRead,
        net::TcpListener,
        os::unix::net::UnixDatagram,
        sync::mpsc,
        thread,
    };

    use super::*;
    use crate::{
        event::Event,
        metrics::Metrics,
        output::{filter::Facts, queue::tests::*},
    };

    fn doc_bytes(f: &Formatter, ev: &Event, facts: &Facts) -> String {
        let ecs = ecs();
        let json = serde_json::to_vec(&ecs.to_value(ev)).unwrap();
        let mut out = Vec::new();
        f.format(&Doc { event: ev, json: &json, facts, ecs: &ecs, shared: None }, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc5424_header() {
        let cfg = SyslogConfig::new(Transport::Udp, "127.0.0.1:514");
        let f = Formatter::new(&cfg);
        let ev = exec(7);
        let s = doc_bytes(&f, &ev, &Facts::known(&ev).unwrap());
        // local0 (16) * 8 + info (6) = 134
        let pid = std::process::id();
        let head = format!("<134>1 2023-11-14T22:13:20.123456Z testhost osprey {pid} exec - {{");
        assert!(s.starts_with(&head), "{s}");
        let json: serde_json::Value = serde_json::from_str(&s[head.len() - 1..]).unwrap();
        assert_eq!(json["process"]["pid"], 7);
    }

    #[test]
    fn severities_and_header_sanitising() {
        let alert = |sev| Facts { kind: "alert", severity: sev, ..Facts::known(&exec(1)).unwrap() };
        assert_eq!(severity(&alert(Some(99))), 2);
        assert_eq!(severity(&alert(Some(73))), 3);
        assert_eq!(severity(&alert(Some(50))), 4);
        assert_eq!(severity(&alert(None)), 5);
        assert_eq!(severity(&Facts::known(&exec(1)).unwrap()), 6);
        let mut out = Vec::new();
        header_field(&mut out, "a b\u{e9}c", 32);
        assert_eq!(out, b"abc");
        out.clear();
        header_field(&mut out, " ", 32);
        assert_eq!(out, b"-");
        out.clear();
        header_field(&mut out, &"x".repeat(40), 32);
        assert_eq!(out.len(), 32);

        let mut cfg = SyslogConfig::new(Transport::Unix, "/dev/log");
        cfg.format = Format::Rfc3164;
        cfg.facility = "auth".into();
        cfg.hostname = Some("node-1".into());
        let f = Formatter::new(&cfg);
        let ev = exec(7);
        let facts = alert(Some(80));
        let s = doc_bytes(&f, &ev, &facts);
        // auth (4) * 8 + error (3) = 35
        assert!(s.starts_with(&format!("<35>Nov 14 22:13:20 node-1 osprey[{}]: {{", std::process::id())), "{s}");
        assert_eq!(rfc3164_time(0), "Jan  1 00:00:00");
    }

    #[test]
    fn validation() {
        let mut c = SyslogConfig::new(Transport::Tcp, "siem:6514");
        assert!(c.validate().is_ok());
        c.facility = "local9".into();
        assert!(c.validate().unwrap_err().contains("local9"));
        let c = SyslogConfig::new(Transport::Udp, "siem");
        assert!(c.validate().unwrap_err().contains("host:port"));
        let c: SyslogConfig = serde_yaml_ng::from_str("transport: unix\n").unwrap();
        assert_eq!(c.address(), "/dev/log");
        assert!(c.validate().is_ok());
        let err = serde_yaml_ng::from_str::<SyslogConfig>("transport: quic\n").unwrap_err().to_string();
        assert!(err.contains("quic"), "{err}");
    }

    fn write_all(w: &mut SyslogWriter, evs: &[Event]) {
        let ecs = ecs();
        for ev in evs {
            let json = serde_json::to_vec(&ecs.to_value(ev)).unwrap();
            let facts = Facts::known(ev).unwrap();
            let _ = w.write(&Doc { event: ev, json: &json, facts: &facts, ecs: &ecs, shared: None });
        }
    }

    #[test]
    fn udp_one_message_per_datagram() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = rx.local_addr().unwrap().to_string();
        let m = Metrics::new().output("syslog");
        let mut w = SyslogWriter::new(&SyslogConfig::new(Transport::Udp, addr), m.clone(), Stop::default());
        write_all(&mut w, &[exec(1), exec(2)]);
        let mut buf = [0u8; 65536];
        for pid in [1, 2] {
            let n = rx.recv(&mut buf).unwrap();
            let s = std::str::from_utf8(&buf[..n]).unwrap();
            assert!(s.starts_with("<134>1 "), "{s}");
            assert!(s.ends_with('}'), "no framing on UDP: {s}");
            assert!(s.contains(&format!("\"pid\":{pid},")), "{s}");
        }
        assert_eq!(m.written.get(), 2);
    }

    #[test]
    fn unix_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        let m = Metrics::new().output("syslog");
        let mut w =
            SyslogWriter::new(&SyslogConfig::new(Transport::Unix, path.to_str().unwrap()), m.clone(), Stop::default());
        write_all(&mut w, &[exec(3)]);
        let mut buf = [0u8; 65536];
        let n = rx.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"<134>1 "));
        assert_eq!(m.written.get(), 1);
        drop(rx);
        // Nobody listening: the event is dropped and counted, the next is not even tried.
        std::fs::remove_file(&path).unwrap();
        write_all(&mut w, &[exec(4), exec(5)]);
        assert_eq!((m.written.get(), m.dropped.get(), m.errors.get()), (1, 2, 1));
    }

    #[test]
    fn oversized_messages_are_dropped() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut cfg = SyslogConfig::new(Transport::Udp, rx.local_addr().unwrap().to_string());
        cfg.max_message_size = ByteSize(480);
        let m = Metrics::new().output("syslog");
        let mut w = SyslogWriter::new(&cfg, m.clone(), Stop::default());
        write_all(&mut w, &[exec(1)]);
        assert_eq!((m.written.get(), m.dropped.get()), (0, 1));
    }

    /// Reads octet-counted frames: `LEN SP MSG`.
    fn read_frames(conn: TcpStream, n: usize) -> Vec<String> {
        let mut r = io::BufReader::new(conn);
        let mut out = Vec::new();
        while out.len() < n {
            let mut len = Vec::new();
            if r.read_until(b' ', &mut len).unwrap() == 0 {
                break;
            }
            let len: usize = std::str::from_utf8(&len[..len.len() - 1]).unwrap().parse().unwrap();
            let mut msg = vec![0; len];
            r.read_exact(&mut msg).unwrap();
            out.push(String::from_utf8(msg).unwrap());
        }
        out
    }

    #[test]
    fn tcp_octet_counting_and_reconnect() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // First connection: read two frames, then hang up. Second: read one more.
            for want in [2, 1] {
                let (c, _) = l.accept().unwrap();
                tx.send(read_frames(c, want)).unwrap();
            }
        });
        let m = Metrics::new().output("syslog");
        let mut w = SyslogWriter::new(&SyslogConfig::new(Transport::Tcp, addr), m.clone(), Stop::default());
        write_all(&mut w, &[exec(1), exec(2)]);
        w.idle().unwrap();
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(first.len(), 2);
        assert!(first[0].starts_with("<134>1 ") && first[0].ends_with('}'), "{}", first[0]);
        assert!(first[1].contains("\"pid\":2,"));
        thread::sleep(Duration::from_millis(50)); // the receiver closed its end
        write_all(&mut w, &[exec(3)]);
        w.idle().unwrap();
        let second = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(second[0].contains("\"pid\":3,"), "{second:?}");
        assert_eq!((m.written.get(), m.dropped.get()), (3, 0));
    }

    #[test]
    fn tcp_gives_up_when_stopped() {
        // A port nobody listens on.
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let m = Metrics::new().output("syslog");
        let stop = Stop::default();
        let mut w = SyslogWriter::new(&SyslogConfig::new(Transport::Tcp, addr), m.clone(), stop.clone());
        write_all(&mut w, &[exec(1), exec(2)]);
        stop.set(Instant::now() + Duration::from_millis(300));
        assert!(w.close().is_err());
        assert_eq!((m.written.get(), m.dropped.get()), (0, 2));
        assert!(m.errors.get() >= 1);
    }
}
