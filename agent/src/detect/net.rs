//! IP addresses and CIDR blocks (the `cidr` modifier, IoC lists).

use std::net::IpAddr;

/// An IPv4 or IPv6 network. IPv4 is kept as an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), so
/// one comparison serves both and a v4 block also matches v4-mapped v6 event addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: u128,
    /// Prefix length over the 128-bit form.
    len: u8,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// Parses an address, tolerating IPv6 brackets and a zone suffix (`fe80::1%eth0`).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(s);
    let s = s.split('%').next().unwrap_or(s);
    s.parse().ok()
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = match s.trim().split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let ip: IpAddr = addr.parse().ok()?;
        let len = match (ip, len) {
            (IpAddr::V4(_), Some(l)) if l <= 32 => l + 96,
            (IpAddr::V4(_), None) => 128,
            (IpAddr::V6(_), Some(l)) if l <= 128 => l,
            (IpAddr::V6(_), None) => 128,
            _ => return None,
        };
        Some(Cidr { net: to_u128(ip) & mask(len), len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        to_u128(ip) & mask(self.len) == self.net
    }

    pub fn contains_str(&self, s: &str) -> bool {
        parse_ip(s).is_some_and(|ip| self.contains(ip))
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub(crate) fn bits(&self) -> u128 {
        self.net
    }

    /// The masked key of `ip` for a block of this prefix length (IoC lookups by prefix length).
    pub(crate) fn key_of(ip: IpAddr, len: u8) -> u128 {
        to_u128(ip) & mask(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains_str("10.1.2.3"));
        assert!(!c.contains_str("11.0.0.1"));
        assert!(c.contains_str("::ffff:10.9.9.9"));
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains_str("2001:db8:1::5"));
        assert!(c.contains_str("[2001:db8::1]"));
        assert!(!c.contains_str("2001:db9::1"));
        assert!(!c.contains_str("10.0.0.1"));
        let c = Cidr::parse("192.168.1.7").unwrap();
        assert!(c.contains_str("192.168.1.7"));
        assert!(!c.contains_str("192.168.1.8"));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains_str("8.8.8.8"));
        assert!(Cidr::parse("::/0").unwrap().contains_str("8.8.8.8"));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert!(!c.contains_str("not an ip"));
        assert_eq!(Cidr::parse("10.1.2.3/8"), Cidr::parse("10.0.0.0/8"));
    }
}
