//! Unit tests and the fuzz run of the DNS parser.

use super::*;
use std::net::IpAddr;

fn header(id: u16, flags: u16, qd: u16, an: u16) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [id, flags, qd, an, 0, 0] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v
}

#[test]
fn parses_a_query_and_its_answer() {
    let q = wire::query(0x1234, "www.example.com", 1);
    let m = parse(&q).unwrap();
    assert_eq!((m.id, m.response, m.rcode), (0x1234, false, 0));
    assert_eq!(m.questions, [Question { name: "www.example.com".into(), qtype: 1, qclass: 1 }]);
    let addrs: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
    let r = wire::response(&q, 0, &addrs, 300).unwrap();
    let m = parse(&r).unwrap();
    assert!(m.response && m.complete);
    assert_eq!(m.answers.len(), 2);
    assert_eq!(m.answers[0].name, "www.example.com", "compressed owner name");
    assert_eq!(m.answers[0].ttl, 300);
    assert_eq!(m.addresses().collect::<Vec<_>>(), addrs);
    assert_eq!(rcode_name(m.rcode), "NOERROR");
    assert_eq!(type_name(28), "AAAA");
    assert_eq!(type_name(999), "TYPE999");
}

#[test]
fn follows_chained_compression_and_cname() {
    // question: a.example.com; answer 1: CNAME b.<ptr to example.com>; answer 2: A for <ptr to b...>
    let mut m = header(1, 0x8180, 1, 2);
    let q_at = m.len();
    m.extend_from_slice(b"\x01a\x07example\x03com\x00\x00\x01\x00\x01");
    let example_at = q_at + 2;
    // CNAME record
    m.extend_from_slice(&[0xc0, q_at as u8]);
    m.extend_from_slice(&[0, 5, 0, 1, 0, 0, 0, 60]);
    let rdata_at = m.len() + 2;
    m.extend_from_slice(&[0, 4, 1, b'b', 0xc0, example_at as u8]);
    // A record owned by the CNAME target (a pointer to a name that itself ends in a pointer)
    m.extend_from_slice(&[0xc0, rdata_at as u8]);
    m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
    let p = parse(&m).unwrap();
    assert_eq!(p.answers[0].data, RData::Name("b.example.com".into()));
    assert_eq!(p.answers[1].name, "b.example.com");
    assert_eq!(p.answers[1].data, RData::A("10.0.0.1".parse().unwrap()));
}

#[test]
fn pointer_loops_and_forward_pointers_are_errors() {
    // a pointer to itself
    let mut m = header(1, 0, 1, 0);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(parse(&m), Err(DnsError::BadPointer(12)));
    // two labels then a pointer back to the first: a cycle through labels
    let mut m = header(1, 0, 1, 0);
    m.extend_from_slice(&[1, b'a', 1, b'b', 0xc0, 12, 0, 1, 0, 1]);
    assert!(matches!(parse(&m), Err(DnsError::BadPointer(_))), "{:?}", parse(&m));
    // a forward pointer
    let mut m = header(1, 0, 1, 0);
    m.extend_from_slice(&[0xc0, 20, 0, 1, 0, 1, 0, 0, 1, b'x', 0]);
    assert!(matches!(parse(&m), Err(DnsError::BadPointer(_))));
}

#[test]
fn truncated_packets_are_errors_at_every_length() {
    let q = wire::query(7, "truncated.example", 28);
    let r = wire::response(&q, 0, &["2001:db8::1".parse().unwrap()], 5).unwrap();
    for buf in [&q, &r] {
        for len in 0..buf.len() {
            assert!(parse(&buf[..len]).is_err(), "len {len}");
        }
    }
    // a prefix that ends inside the answers keeps the question
    let cut = parse_prefix(&r[..r.len() - 3]).unwrap();
    assert!(!cut.complete);
    assert_eq!(cut.questions[0].name, "truncated.example");
    assert!(cut.answers.is_empty());
}

#[test]
fn names_limits_and_reserved_labels() {
    let mut m = header(1, 0, 1, 0);
    for _ in 0..5 {
        m.push(63);
        m.extend_from_slice(&[b'x'; 63]);
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(parse(&m), Err(DnsError::NameTooLong));
    let mut m = header(1, 0, 1, 0);
    m.extend_from_slice(&[0x40, 0, 0, 1, 0, 1]);
    assert_eq!(parse(&m), Err(DnsError::BadLabel(0x40)));
    // the root, and escaping of odd bytes
    let mut m = header(1, 0, 1, 0);
    m.extend_from_slice(&[0, 0, 2, 0, 1]);
    assert_eq!(parse(&m).unwrap().questions[0].name, ".");
    let mut m = header(1, 0, 1, 0);
    m.extend_from_slice(&[3, b'a', b'.', 0, 0, 0, 1, 0, 1]);
    assert_eq!(parse(&m).unwrap().questions[0].name, "a\\.\\000");
    assert_eq!(parse(&header(1, 0, 0, 0)), Err(DnsError::NoQuestion));
}

#[test]
fn tcp_framing() {
    let q = wire::query(9, "tcp.example", 1);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    assert_eq!(parse_tcp(&framed, true).unwrap().questions[0].name, "tcp.example");
    assert!(matches!(parse_tcp(&framed[..framed.len() - 1], true), Err(DnsError::TcpLength { .. })));
    assert!(parse_tcp(&[0], true).is_err());
}

/// xorshift64*: a deterministic stream for the fuzz run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A mutation of a seed: byte flips, interesting bytes (pointers, big lengths), cuts, splices
/// and duplicated spans, a few at a time — what a coverage-less cargo-fuzz run does.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        let last = at.min(b.len().saturating_sub(1));
        match rng.below(7) {
            0 if !b.is_empty() => b[last] ^= 1 << rng.below(8),
            1 if !b.is_empty() => b[last] = [0, 0xc0, 0xc0 | 0x3f, 0x3f, 0x40, 0x80, 0xff, 12][rng.below(8)],
            2 => b.truncate(at),
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                b.splice(at..at, other[from..].iter().take(rng.below(40)).copied());
            }
            4 if at + 2 <= b.len() => {
                // a compression pointer somewhere in the message
                let target = rng.below(b.len()) as u16;
                b[at..at + 2].copy_from_slice(&(0xc000 | target).to_be_bytes());
            }
            5 if b.len() >= 12 => {
                // counts: the header's qd/an/ns/ar
                let i = 4 + 2 * rng.below(4);
                b[i..i + 2].copy_from_slice(&(rng.next() as u16).to_be_bytes());
            }
            _ => {
                let n = rng.below(8);
                b.extend((0..n).map(|_| rng.next() as u8));
            }
        }
    }
    b
}

/// The fuzz run: `OSPREY_DNS_FUZZ` inputs (1,000,000 by default) from valid seeds, each through
/// every entry point. It passes when nothing panics and every accepted name respects the limits.
#[test]
fn fuzz_a_million_mutated_messages() {
    let n: usize = std::env::var("OSPREY_DNS_FUZZ").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let q = wire::query(1, "fuzz.example.org", 1);
    let addrs: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap(), "2001:db8::2".parse().unwrap()];
    let seeds = vec![
        q.clone(),
        wire::response(&q, 0, &addrs, 60).unwrap(),
        wire::response(&wire::query(2, "a.b.c.d.e", 28), 3, &[], 0).unwrap(),
        {
            let mut t = (q.len() as u16).to_be_bytes().to_vec();
            t.extend_from_slice(&q);
            t
        },
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut err) = (0u64, 0u64);
    for _ in 0..n {
        let input = mutate(&mut rng, &seeds);
        for res in [parse(&input), parse_prefix(&input), parse_tcp(&input, rng.next() & 1 == 0)] {
            match res {
                Ok(m) => {
                    ok += 1;
                    for name in m.questions.iter().map(|q| &q.name).chain(m.answers.iter().map(|a| &a.name)) {
                        assert!(name.len() <= 4 * MAX_NAME, "{name}");
                    }
                    assert!(m.answers.len() <= MAX_RECORDS && m.questions.len() <= MAX_RECORDS);
                }
                Err(e) => {
                    err += 1;
                    assert!(!e.reason().is_empty());
                }
            }
        }
    }
    eprintln!("dns fuzz: {n} inputs, {ok} parsed, {err} rejected");
    assert!(ok > 0 && err > 0, "the mutations reach both outcomes");
}
