//! DNS message parser (RFC 1035) for packets the kernel copied: never panics, never loops, never
//! reads past the end. Compressed names are followed only backwards (a pointer must point before
//! the labels that led to it), so a pointer loop is an error, not a hang; names are capped at 255
//! bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Why a message was rejected. `reason()` is the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DnsError {
    #[error("message ends at byte {0} inside a header, name or record")]
    Truncated(usize),
    #[error("compression pointer at byte {0} does not point backwards")]
    BadPointer(usize),
    #[error("name longer than 255 bytes")]
    NameTooLong,
    #[error("label type {0:#04x} is reserved")]
    BadLabel(u8),
    #[error("a message with no question")]
    NoQuestion,
    #[error("TCP message length {declared} but {actual} bytes captured")]
    TcpLength { declared: usize, actual: usize },
}

impl DnsError {
    pub fn reason(&self) -> &'static str {
        match self {
            DnsError::Truncated(_) => "truncated",
            DnsError::BadPointer(_) => "bad_pointer",
            DnsError::NameTooLong => "name_too_long",
            DnsError::BadLabel(_) => "bad_label",
            DnsError::NoQuestion => "no_question",
            DnsError::TcpLength { .. } => "tcp_length",
        }
    }
}

const MAX_NAME: usize = 255;
/// Records kept per section; more are skipped (but still bounds-checked).
const MAX_RECORDS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// CNAME, NS, PTR: a name.
    Name(String),
    /// Anything else: its length.
    Other(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    pub data: RData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    /// The TC bit: the server cut the answer short.
    pub truncated: bool,
    pub questions: Vec<Question>,
    pub answers: Vec<Answer>,
    /// False when the capture ended inside the answer section ([`parse_prefix`]): `answers`
    /// holds those that fit.
    pub complete: bool,
}

impl Message {
    /// The addresses of A and AAAA answers.
    pub fn addresses(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.answers.iter().filter_map(|a| match a.data {
            RData::A(v4) => Some(v4.into()),
            RData::Aaaa(v6) => Some(v6.into()),
            _ => None,
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DnsError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(DnsError::Truncated(self.buf.len()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DnsError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Reads a (possibly compressed) name at the current position and moves past it.
    fn name(&mut self) -> Result<String, DnsError> {
        let (name, next) = read_name(self.buf, self.pos)?;
        self.pos = next;
        Ok(name)
    }
}

/// Appends one label, escaping dots, backslashes and unprintable bytes as `\DDD`.
fn push_label(out: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x21..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
}

/// Reads the name at `start`; returns it (no trailing dot, `.` for the root) and the offset
/// just past it in the original position (after the first pointer, if any).
pub fn read_name(buf: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut out = String::new();
    let mut pos = start;
    // Where the current run of labels began: a pointer must point before it, so each jump
    // lowers it and the walk ends (a loop through labels is caught as well as a self-pointer).
    let mut run_start = start;
    let mut after: Option<usize> = None;
    let mut wire_len = 0usize; // the name's length in wire form, for the 255-byte limit
    loop {
        let len = *buf.get(pos).ok_or(DnsError::Truncated(buf.len()))?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    let next = after.unwrap_or(pos + 1);
                    if out.is_empty() {
                        out.push('.');
                    }
                    return Ok((out, next));
                }
                let label = buf.get(pos + 1..pos + 1 + len as usize).ok_or(DnsError::Truncated(buf.len()))?;
                wire_len += 1 + label.len();
                if wire_len + 1 > MAX_NAME {
                    return Err(DnsError::NameTooLong);
                }
                if !out.is_empty() {
                    out.push('.');
                }
                push_label(&mut out, label);
                pos += 1 + label.len();
            }
            0xc0 => {
                let lo = *buf.get(pos + 1).ok_or(DnsError::Truncated(buf.len()))?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(lo);
                if target >= run_start {
                    return Err(DnsError::BadPointer(pos));
                }
                after.get_or_insert(pos + 2);
                pos = target;
                run_start = target;
            }
            other => return Err(DnsError::BadLabel(other)),
        }
    }
}

fn record(r: &mut Reader<'_>) -> Result<Answer, DnsError> {
    let name = r.name()?;
    let rtype = r.u16()?;
    let _class = r.u16()?;
    let ttl = r.u32()?;
    let rdlen = r.u16()? as usize;
    let rdata_at = r.pos;
    let rdata = r.bytes(rdlen)?;
    let data = match (rtype, rdlen) {
        (1, 4) => RData::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])),
        (28, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(rdata);
            RData::Aaaa(Ipv6Addr::from(a))
        }
        // CNAME, NS, PTR: a name that may point anywhere before it in the message.
        (5 | 2 | 12, _) => RData::Name(read_name(r.buf, rdata_at)?.0),
        _ => RData::Other(rdlen),
    };
    Ok(Answer { name, rtype, ttl, data })
}

fn parse_inner(buf: &[u8], prefix_ok: bool) -> Result<Message, DnsError> {
    let mut r = Reader { buf, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    let qd = r.u16()? as usize;
    let an = r.u16()? as usize;
    let _ns = r.u16()?;
    let _ar = r.u16()?;
    if qd == 0 {
        return Err(DnsError::NoQuestion);
    }
    let mut questions = Vec::new();
    for _ in 0..qd {
        let name = r.name()?;
        let qtype = r.u16()?;
        let qclass = r.u16()?;
        if questions.len() < MAX_RECORDS {
            questions.push(Question { name, qtype, qclass });
        }
    }
    let mut answers = Vec::new();
    let mut complete = true;
    for _ in 0..an {
        match record(&mut r) {
            Ok(a) if answers.len() < MAX_RECORDS => answers.push(a),
            Ok(_) => {}
            Err(DnsError::Truncated(_)) if prefix_ok => {
                complete = false;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Message {
        id,
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        rcode: (flags & 0xf) as u8,
        truncated: flags & 0x0200 != 0,
        questions,
        answers,
        complete,
    })
}

/// Parses a whole DNS message (header, questions, answers; authority and additional sections
/// are not read).
pub fn parse(buf: &[u8]) -> Result<Message, DnsError> {
    parse_inner(buf, false)
}

/// Parses the first bytes of a longer message: the answers that fit, `complete: false` if the
/// capture ended inside the answer section.
pub fn parse_prefix(buf: &[u8]) -> Result<Message, DnsError> {
    parse_inner(buf, true)
}

/// DNS over TCP: a 2-byte length, then the message.
pub fn parse_tcp(buf: &[u8], captured_all: bool) -> Result<Message, DnsError> {
    let [hi, lo, rest @ ..] = buf else { return Err(DnsError::Truncated(buf.len())) };
    let declared = usize::from(*hi) << 8 | usize::from(*lo);
    if declared > rest.len() && captured_all {
        return Err(DnsError::TcpLength { declared, actual: rest.len() });
    }
    let msg = &rest[..declared.min(rest.len())];
    if captured_all && declared == rest.len() {
        parse(msg)
    } else {
        parse_prefix(msg)
    }
}

/// `A`, `AAAA`, ... or `TYPE123`.
pub fn type_name(t: u16) -> std::borrow::Cow<'static, str> {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        257 => "CAA",
        n => return format!("TYPE{n}").into(),
    };
    s.into()
}

/// `NOERROR`, `NXDOMAIN`, ... or `RCODE12`.
pub fn rcode_name(r: u8) -> std::borrow::Cow<'static, str> {
    let s = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        n => return format!("RCODE{n}").into(),
    };
    s.into()
}

/// Builders of DNS messages, for tests and tools (the integration tests' DNS server uses them).
pub mod wire {
    use std::net::IpAddr;

    fn put_name(out: &mut Vec<u8>, name: &str) {
        for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
            out.push(label.len().min(63) as u8);
            out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
        }
        out.push(0);
    }

    /// A recursive query for `name` of type `qtype`.
    pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        put_name(&mut out, name);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out
    }

    /// The answer to `query` (its first question): one A/AAAA record per address, each naming
    /// the question by a compression pointer to offset 12, TTL `ttl`.
    pub fn response(query: &[u8], rcode: u8, addrs: &[IpAddr], ttl: u32) -> Option<Vec<u8>> {
        let q = super::parse(query).ok()?;
        let qlen = super::read_name(query, 12).ok()?.1 + 4 - 12;
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&query[..2]);
        out.extend_from_slice(&(0x8180u16 | u16::from(rcode & 0xf)).to_be_bytes()); // QR RD RA
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&query[12..12 + qlen]);
        let _ = q;
        for a in addrs {
            out.extend_from_slice(&[0xc0, 12]);
            let (t, data): (u16, Vec<u8>) = match a {
                IpAddr::V4(v4) => (1, v4.octets().to_vec()),
                IpAddr::V6(v6) => (28, v6.octets().to_vec()),
            };
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(&data);
        }
        Some(out)
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
