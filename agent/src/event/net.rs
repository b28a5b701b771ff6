//! ECS form of network and DNS records: `source.*`, `destination.*`, `network.*`, `dns.*`.
//!
//! Direction is this host's: `egress` for what its processes started (connects, UDP sends, DNS
//! lookups), `ingress` for what peers started (accepts, first datagrams received). `source` is
//! the end that started the flow, `destination` the other; `source.bytes` is what the source
//! sent.

use std::net::SocketAddr;

use serde::Serialize;

use crate::net::{
    dns::{rcode_name, type_name, RData},
    Dns, Net, NetOp,
};
use agent_common::osprey_net_flags as nf;

#[derive(Serialize, Default)]
pub struct Endpoint<'a> {
    pub ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
}

fn endpoint<'a>(a: SocketAddr) -> Endpoint<'a> {
    Endpoint { ip: a.ip().to_string(), port: (a.port() != 0).then_some(a.port()), ..Default::default() }
}

#[derive(Serialize)]
pub struct NetworkDoc {
    pub transport: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
}

fn ip_type(a: SocketAddr) -> &'static str {
    if a.is_ipv4() {
        "ipv4"
    } else {
        "ipv6"
    }
}

/// `osprey.net`: what ECS has no place for.
#[derive(Serialize)]
pub struct NetMeta {
    pub op: &'static str,
    pub sock_id: u64,
    #[serde(skip_serializing_if = "super::is_zero")]
    pub netns: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub v4_mapped: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub owner_unknown: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub owner_from_listener: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub udp_connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "super::is_zero")]
    pub errno: u32,
    /// Records like this one (same process, step, peer, port) folded since the last one sent.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub folded: u32,
}

pub fn op_name(op: NetOp) -> &'static str {
    match op {
        NetOp::Connect => "connection_attempted",
        NetOp::Established => "connection_established",
        NetOp::Refused => "connection_refused",
        NetOp::TimedOut => "connection_timed_out",
        NetOp::Failed => "connection_failed",
        NetOp::Accept => "connection_accepted",
        NetOp::Listen => "listen",
        NetOp::Close => "connection_closed",
        NetOp::UdpSend => "udp_first_send",
        NetOp::UdpRecv => "udp_first_receive",
    }
}

/// (event.type, event.outcome). Only the start of a flow (attempt, accept, first datagram) is a
/// `connection`, so `network_connection` rules see each flow once.
pub fn classify(op: NetOp) -> (&'static str, Option<&'static str>) {
    match op {
        NetOp::Connect | NetOp::Accept | NetOp::UdpSend | NetOp::UdpRecv => ("connection", None),
        NetOp::Established => ("info", Some("success")),
        NetOp::Refused | NetOp::TimedOut | NetOp::Failed => ("end", Some("failure")),
        NetOp::Close => ("end", Some("success")),
        NetOp::Listen => ("info", None),
    }
}

fn errno_name(e: i32) -> Option<&'static str> {
    Some(match e {
        0 => return None,
        111 => "ECONNREFUSED",
        110 => "ETIMEDOUT",
        113 => "EHOSTUNREACH",
        101 => "ENETUNREACH",
        104 => "ECONNRESET",
        _ => "other",
    })
}

/// (source, destination, network, osprey.net) of a network record. A listen has no source.
pub fn net_doc(n: &Net) -> (Option<Endpoint<'_>>, Endpoint<'_>, NetworkDoc, NetMeta) {
    let inbound = n.op.inbound() || (n.op == NetOp::Close && n.flags & nf::OSPREY_NET_INBOUND != 0);
    let (mut src, mut dst) = if inbound || n.op == NetOp::Listen {
        (endpoint(n.remote), endpoint(n.local))
    } else {
        (endpoint(n.local), endpoint(n.remote))
    };
    if !inbound {
        dst.domain = n.domain.as_deref();
    }
    let close = n.op == NetOp::Close;
    if close {
        let (sent, recv) = (n.bytes_sent, n.bytes_received);
        let (s_out, s_in) = (u64::from(n.segs_out), u64::from(n.segs_in));
        (src.bytes, dst.bytes) = if inbound { (Some(recv), Some(sent)) } else { (Some(sent), Some(recv)) };
        (src.packets, dst.packets) = if inbound { (Some(s_in), Some(s_out)) } else { (Some(s_out), Some(s_in)) };
    }
    let network = NetworkDoc {
        transport: n.transport.name(),
        type_: ip_type(n.remote),
        direction: match n.op {
            NetOp::Listen => None,
            _ if inbound => Some("ingress"),
            _ => Some("egress"),
        },
        protocol: None,
        bytes: close.then(|| n.bytes_sent + n.bytes_received),
        packets: close.then(|| u64::from(n.segs_out) + u64::from(n.segs_in)),
    };
    let meta = NetMeta {
        op: op_name(n.op),
        sock_id: n.sock_id,
        netns: n.netns,
        v4_mapped: n.v4_mapped,
        owner_unknown: n.owner_unknown(),
        owner_from_listener: n.flags & nf::OSPREY_NET_OWNER_FROM_LISTENER != 0,
        udp_connected: n.flags & nf::OSPREY_NET_UDP_CONNECTED != 0,
        error: errno_name(n.err),
        errno: n.err.unsigned_abs(),
        folded: n.folded,
    };
    ((n.op != NetOp::Listen).then_some(src), dst, network, meta)
}

#[derive(Serialize)]
pub struct Question {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<&'static str>,
}

#[derive(Serialize)]
pub struct AnswerDoc {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// ECS `dns.*`.
#[derive(Serialize)]
pub struct DnsDoc {
    /// `query` (sent) or `answer` (received).
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub id: String,
    pub question: Question,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_code: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved_ip: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<AnswerDoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub header_flags: Vec<&'static str>,
}

/// `osprey.dns`.
#[derive(Serialize)]
pub struct DnsMeta {
    pub sock_id: u64,
    pub wire_bytes: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub capture_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub answers_incomplete: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub owner_unknown: bool,
}

/// event.action of a DNS record: the answer is the `dns_query` event rules see (like Sysmon's
/// DNS event, logged when the lookup completes); the query sent is `dns_request`.
pub fn dns_action(d: &Dns) -> &'static str {
    if d.received() {
        "dns_query"
    } else {
        "dns_request"
    }
}

/// (source, destination, network, dns, osprey.dns): source is this host, destination the server.
pub fn dns_doc(d: &Dns) -> (Endpoint<'_>, Endpoint<'_>, NetworkDoc, DnsDoc, DnsMeta) {
    let m = &d.message;
    let q = m.questions.first();
    let received = d.received();
    let mut flags = Vec::new();
    if m.truncated {
        flags.push("TC");
    }
    let doc = DnsDoc {
        type_: if received { "answer" } else { "query" },
        id: m.id.to_string(),
        question: Question {
            name: q.map(|q| q.name.clone()).unwrap_or_default(),
            type_: q.map(|q| type_name(q.qtype).into_owned()).unwrap_or_default(),
            class: q.and_then(|q| (q.qclass == 1).then_some("IN")),
        },
        response_code: m.response.then(|| rcode_name(m.rcode).into_owned()),
        resolved_ip: m.addresses().map(|a| a.to_canonical().to_string()).collect(),
        answers: m
            .answers
            .iter()
            .map(|a| AnswerDoc {
                name: a.name.clone(),
                type_: type_name(a.rtype).into_owned(),
                ttl: a.ttl,
                data: match &a.data {
                    RData::A(v4) => Some(v4.to_string()),
                    RData::Aaaa(v6) => Some(v6.to_string()),
                    RData::Name(n) => Some(n.clone()),
                    RData::Other(_) => None,
                },
            })
            .collect(),
        header_flags: flags,
    };
    let network = NetworkDoc {
        transport: d.transport.name(),
        type_: ip_type(d.remote),
        direction: Some("egress"),
        protocol: Some("dns"),
        bytes: None,
        packets: None,
    };
    let meta = DnsMeta {
        sock_id: d.sock_id,
        wire_bytes: d.wire_len,
        capture_truncated: d.capture_truncated(),
        answers_incomplete: !m.complete,
        owner_unknown: d.owner_unknown(),
    };
    (endpoint(d.local), endpoint(d.remote), network, doc, meta)
}
