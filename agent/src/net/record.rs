//! Network records from the kernel (`osprey_net`, `osprey_dns`) → typed records. The DNS payload
//! is parsed here, in the ring readers: a message that does not parse is a decode error
//! (`dns_malformed`), counted and skipped.

use std::{
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use agent_common::{osprey_dns, osprey_net, osprey_net_flags as nf, osprey_net_op as op};

use super::dns::{self, Message};
use crate::decode::{DecodeError, Header};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// What happened (enum osprey_net_op).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetOp {
    Connect,
    Established,
    Refused,
    TimedOut,
    Failed,
    Accept,
    Listen,
    Close,
    UdpSend,
    UdpRecv,
}

impl NetOp {
    fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            op::OSPREY_NET_CONNECT => NetOp::Connect,
            op::OSPREY_NET_ESTABLISHED => NetOp::Established,
            op::OSPREY_NET_REFUSED => NetOp::Refused,
            op::OSPREY_NET_TIMEOUT => NetOp::TimedOut,
            op::OSPREY_NET_FAILED => NetOp::Failed,
            op::OSPREY_NET_ACCEPT => NetOp::Accept,
            op::OSPREY_NET_LISTEN => NetOp::Listen,
            op::OSPREY_NET_CLOSE => NetOp::Close,
            op::OSPREY_NET_UDP_SEND => NetOp::UdpSend,
            op::OSPREY_NET_UDP_RECV => NetOp::UdpRecv,
            _ => return None,
        })
    }

    /// The remote end initiated: accepted connections and datagrams received.
    pub fn inbound(self) -> bool {
        matches!(self, NetOp::Accept | NetOp::UdpRecv)
    }
}

/// A TCP connection step or a UDP socket's first datagram to / from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    pub hdr: Header,
    pub op: NetOp,
    pub transport: Transport,
    /// This host's end. IPv4-mapped IPv6 addresses are given as IPv4 (see `v4_mapped`).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The socket was IPv6 and the addresses IPv4-mapped (`::ffff:a.b.c.d`).
    pub v4_mapped: bool,
    pub ipv6_socket: bool,
    /// sk_err of a failed connect (ECONNREFUSED 111, ETIMEDOUT 110, ...).
    pub err: i32,
    pub flags: u32,
    pub netns: u32,
    /// The same for every record of one socket (kernel socket cookie).
    pub sock_id: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    pub duration_ns: u64,
    /// Records like this one (same process, step, peer, port) folded in the kernel since the
    /// last one sent (`network.fold_window`).
    pub folded: u32,
    /// The DNS name that resolved `remote` shortly before (set by the pipeline).
    pub domain: Option<Arc<str>>,
}

impl Net {
    /// The socket predates the agent (or its owner was evicted): the header names no process.
    pub fn owner_unknown(&self) -> bool {
        self.flags & nf::OSPREY_NET_OWNER_UNKNOWN != 0
    }
}

/// A DNS message a process on this host sent (query) or received (response), parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    pub hdr: Header,
    pub transport: Transport,
    pub local: SocketAddr,
    /// The server.
    pub remote: SocketAddr,
    pub v4_mapped: bool,
    pub flags: u32,
    pub sock_id: u64,
    /// Payload bytes on the wire (more than were captured when `capture_truncated`).
    pub wire_len: u32,
    pub message: Message,
}

impl Dns {
    /// Received from the server (else sent to it).
    pub fn received(&self) -> bool {
        self.flags & nf::OSPREY_DNS_RESPONSE != 0
    }
    pub fn capture_truncated(&self) -> bool {
        self.flags & nf::OSPREY_DNS_TRUNCATED != 0
    }
    pub fn owner_unknown(&self) -> bool {
        self.flags & nf::OSPREY_NET_OWNER_UNKNOWN != 0
    }
}

fn read<T>(buf: &[u8]) -> Result<T, DecodeError> {
    if buf.len() < size_of::<T>() {
        return Err(DecodeError::Truncated { len: buf.len(), need: size_of::<T>() });
    }
    // SAFETY: length checked; T is a plain C struct from osprey.h (any bit pattern is valid).
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// (ip, v4_mapped) from the kernel's 16-byte address field.
fn ip(family: u16, raw: [u8; 16]) -> Result<(IpAddr, bool), DecodeError> {
    match family {
        AF_INET => Ok((IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])), false)),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(raw);
            Ok(match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), true),
                None => (IpAddr::V6(v6), false),
            })
        }
        other => Err(DecodeError::BadValue { field: "family", value: u64::from(other) }),
    }
}

fn transport(p: u8) -> Result<Transport, DecodeError> {
    match p {
        6 => Ok(Transport::Tcp),
        17 => Ok(Transport::Udp),
        other => Err(DecodeError::BadValue { field: "protocol", value: u64::from(other) }),
    }
}

pub(crate) fn decode_net(buf: &[u8], hdr: Header) -> Result<Net, DecodeError> {
    let n: osprey_net = read(buf)?;
    let op = NetOp::from_raw(n.op).ok_or(DecodeError::BadValue { field: "op", value: u64::from(n.op) })?;
    let (lip, mapped) = ip(n.family, n.laddr)?;
    let (rip, rmapped) = ip(n.family, n.raddr)?;
    Ok(Net {
        hdr,
        op,
        transport: transport(n.protocol)?,
        local: SocketAddr::new(lip, n.lport),
        remote: SocketAddr::new(rip, n.rport),
        v4_mapped: mapped || rmapped,
        ipv6_socket: n.family == AF_INET6,
        err: n.err,
        flags: n.flags,
        netns: n.netns,
        sock_id: n.sock_id,
        bytes_sent: n.bytes_sent,
        bytes_received: n.bytes_received,
        segs_out: n.segs_out,
        segs_in: n.segs_in,
        duration_ns: n.duration_ns,
        folded: n.folded,
        domain: None,
    })
}

pub(crate) fn decode_dns(buf: &[u8], hdr: Header) -> Result<Dns, DecodeError> {
    let d: osprey_dns = read(buf)?;
    let data = &buf[size_of::<osprey_dns>()..];
    let len = d.len as usize;
    let payload = data.get(..len).ok_or(DecodeError::SliceOutOfBounds { field: "data", off: 0, end: len, data_len: data.len() })?;
    let (lip, mapped) = ip(d.family, d.laddr)?;
    let (rip, _) = ip(d.family, d.raddr)?;
    let transport = transport(d.protocol)?;
    let cut = d.flags & nf::OSPREY_DNS_TRUNCATED != 0;
    let message = match (transport, cut) {
        (Transport::Udp, false) => dns::parse(payload),
        (Transport::Udp, true) => dns::parse_prefix(payload),
        (Transport::Tcp, _) => dns::parse_tcp(payload, !cut),
    }
    .map_err(DecodeError::Dns)?;
    Ok(Dns {
        hdr,
        transport,
        local: SocketAddr::new(lip, d.lport),
        remote: SocketAddr::new(rip, d.rport),
        v4_mapped: mapped,
        flags: d.flags,
        sock_id: d.sock_id,
        wire_len: d.wire_len,
        message,
    })
}

/// Builders of raw records for tests and benchmarks.
pub mod raw {
    use super::*;
    use crate::decode::raw::hdr;
    use agent_common::RecordType;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: T is a plain C struct from osprey.h.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn addr16(ip: IpAddr) -> (u16, [u8; 16]) {
        let mut out = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => {
                out[..4].copy_from_slice(&v4.octets());
                (AF_INET, out)
            }
            IpAddr::V6(v6) => (AF_INET6, v6.octets()),
        }
    }

    /// A TCP or UDP record of `op` (enum osprey_net_op) from `local` to `remote`.
    pub fn net(pid: u32, ktime_ns: u64, op: u32, udp: bool, local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
        let (family, laddr) = addr16(local.ip());
        let (_, raddr) = addr16(remote.ip());
        let n = osprey_net {
            hdr: hdr(RecordType::Net, size_of::<osprey_net>(), pid, ktime_ns),
            op,
            family,
            protocol: if udp { 17 } else { 6 },
            laddr,
            raddr,
            lport: local.port(),
            rport: remote.port(),
            ..Default::default()
        };
        bytes_of(&n)
    }

    /// A DNS record carrying `payload` over UDP; `response`: received from the server.
    pub fn dns(pid: u32, ktime_ns: u64, response: bool, local: SocketAddr, server: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let (family, laddr) = addr16(local.ip());
        let (_, raddr) = addr16(server.ip());
        let d = osprey_dns {
            hdr: hdr(RecordType::Dns, size_of::<osprey_dns>() + payload.len(), pid, ktime_ns),
            family,
            protocol: 17,
            flags: if response { nf::OSPREY_DNS_RESPONSE } else { 0 },
            laddr,
            raddr,
            lport: local.port(),
            rport: server.port(),
            len: payload.len() as u32,
            wire_len: payload.len() as u32,
            ..Default::default()
        };
        let mut out = bytes_of(&d);
        out.extend_from_slice(payload);
        out
    }
}
