//! Network telemetry in user space: the records ([`record`]), the DNS parser ([`dns`]), the
//! answers cache that names later connections (`destination.domain`), and the per-process
//! network summary kept in the process table ([`NetSummary`]).

pub mod dns;
pub mod record;

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::decode::Record;
pub use record::{Dns, Net, NetOp, Transport};

/// `network:` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Attach the network programs (TCP state tracepoint, cgroup socket-address hooks).
    pub enabled: bool,
    /// Copy DNS messages (UDP/TCP port 53) in the kernel and parse them (cgroup_skb on the root
    /// cgroup v2: every packet passes a short check).
    pub dns: bool,
    /// Answered addresses remembered to name later connections (`destination.domain`).
    pub dns_cache_entries: usize,
    /// A TCP record of the same process, step, peer address and port as one sent less than
    /// this ago is folded in the kernel: counted (`osprey_events_folded_total`) and carried by
    /// the next such record sent (`osprey.net.folded`). `0s` sends every record.
    #[serde(with = "humantime_serde")]
    pub fold_window: Duration,
}

/// See [`NetworkSection::fold_window`].
pub const DEFAULT_FOLD_WINDOW: Duration = Duration::from_secs(1);

impl Default for NetworkSection {
    fn default() -> Self {
        Self { enabled: true, dns: true, dns_cache_entries: 65_536, fold_window: DEFAULT_FOLD_WINDOW }
    }
}

/// Shortest time an answer names connections, whatever its TTL (resolvers cache longer than the
/// TTL says, and a TTL of 0 still precedes a connect).
const MIN_TTL_NS: u64 = 60_000_000_000;
/// Longest, for very large TTLs.
const MAX_TTL_NS: u64 = 86_400_000_000_000;

/// Addresses from DNS answers → the name that was asked for, until the answer expires.
#[derive(Debug)]
pub struct DomainCache {
    map: HashMap<IpAddr, (Arc<str>, u64)>,
    cap: usize,
}

impl DomainCache {
    pub fn new(cap: usize) -> Self {
        Self { map: HashMap::new(), cap: cap.max(1) }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Remembers the addresses a response answered, under the question's name.
    pub fn learn(&mut self, d: &Dns) {
        let Some(q) = d.message.questions.first() else { return };
        if !d.message.response || d.message.rcode != 0 {
            return;
        }
        let name: Arc<str> = Arc::from(q.name.as_str());
        let now = d.hdr.ktime_ns;
        for a in &d.message.answers {
            let ip = match a.data {
                dns::RData::A(v4) => IpAddr::V4(v4),
                dns::RData::Aaaa(v6) => IpAddr::V6(v6).to_canonical(),
                _ => continue,
            };
            if self.map.len() >= self.cap && !self.map.contains_key(&ip) {
                self.map.retain(|_, (_, exp)| *exp > now);
                if self.map.len() >= self.cap {
                    // Still full of live answers: forget an arbitrary half rather than grow.
                    let drop: Vec<IpAddr> = self.map.keys().take(self.cap / 2 + 1).copied().collect();
                    for k in drop {
                        self.map.remove(&k);
                    }
                }
            }
            let ttl = (u64::from(a.ttl) * 1_000_000_000).clamp(MIN_TTL_NS, MAX_TTL_NS);
            self.map.insert(ip, (name.clone(), now.saturating_add(ttl)));
        }
    }

    /// The name that resolved `ip`, if an answer for it is still live at `now_ns`.
    pub fn lookup(&self, ip: IpAddr, now_ns: u64) -> Option<Arc<str>> {
        self.map.get(&ip.to_canonical()).filter(|(_, exp)| *exp > now_ns).map(|(n, _)| n.clone())
    }
}

/// What the pipeline does with network records before enrichment: learn answers, name
/// destinations.
#[derive(Debug)]
pub struct NetState {
    pub domains: DomainCache,
}

impl NetState {
    pub fn new(cfg: &NetworkSection) -> Self {
        Self { domains: DomainCache::new(cfg.dns_cache_entries) }
    }

    /// Call in kernel-time order: a response is learned before the connect that follows it.
    pub fn observe(&mut self, rec: &mut Record) {
        match rec {
            Record::Dns(d) if d.received() => self.domains.learn(d),
            Record::Net(n) if !n.op.inbound() && n.op != NetOp::Listen => {
                n.domain = self.domains.lookup(n.remote.ip(), n.hdr.ktime_ns);
            }
            _ => {}
        }
    }
}

/// Distinct peers remembered per process; past this the count stops growing and says so.
const MAX_PEERS: usize = 1024;

/// A process's network activity, in the process table (`osprey ps`, detection).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetSummary {
    pub connects: u64,
    pub connects_failed: u64,
    pub accepts: u64,
    pub listens: u64,
    pub udp_peers: u64,
    pub dns_queries: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Distinct remote addresses (capped at 1024: see `peers_capped`).
    pub distinct_peers: usize,
    pub peers_capped: bool,
    #[serde(skip)]
    peers: HashSet<IpAddr>,
}

impl NetSummary {
    fn peer(&mut self, ip: IpAddr) {
        if self.peers.len() < MAX_PEERS {
            self.peers.insert(ip);
            self.distinct_peers = self.peers.len();
        } else if !self.peers.contains(&ip) {
            self.peers_capped = true;
        }
    }

    /// Counts one record of the process.
    pub fn observe(&mut self, rec: &Record) {
        match rec {
            Record::Net(n) => {
                // A record stands for itself and the ones folded into it in the kernel.
                let n_ops = 1 + u64::from(n.folded);
                match n.op {
                    NetOp::Connect => self.connects += n_ops,
                    NetOp::Refused | NetOp::TimedOut | NetOp::Failed => self.connects_failed += n_ops,
                    NetOp::Accept => self.accepts += n_ops,
                    NetOp::Listen => self.listens += 1,
                    NetOp::UdpSend | NetOp::UdpRecv => self.udp_peers += 1,
                    NetOp::Close => {
                        self.bytes_sent += n.bytes_sent;
                        self.bytes_received += n.bytes_received;
                    }
                    NetOp::Established => {}
                }
                if n.op != NetOp::Listen {
                    self.peer(n.remote.ip());
                }
            }
            Record::Dns(d) if !d.received() => self.dns_queries += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use agent_common::osprey_net_op as op;

    fn dns_answer(ktime: u64, name: &str, addrs: &[&str], ttl: u32) -> Record {
        let q = dns::wire::query(5, name, 1);
        let ips: Vec<IpAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        let r = dns::wire::response(&q, 0, &ips, ttl).unwrap();
        let raw = record::raw::dns(10, ktime, true, "127.0.0.1:40000".parse().unwrap(), "127.0.0.53:53".parse().unwrap(), &r);
        decode(&raw).unwrap()
    }

    fn connect(ktime: u64, to: &str) -> Record {
        decode(&record::raw::net(10, ktime, op::OSPREY_NET_CONNECT, false, "127.0.0.1:0".parse().unwrap(), to.parse().unwrap()))
            .unwrap()
    }

    #[test]
    fn answers_name_later_connections_until_they_expire() {
        let mut st = NetState::new(&NetworkSection::default());
        let mut ans = dns_answer(1_000, "svc.example", &["10.1.2.3", "::ffff:10.9.9.9"], 1);
        st.observe(&mut ans);
        let mut c = connect(2_000, "10.1.2.3:443");
        st.observe(&mut c);
        let Record::Net(n) = &c else { panic!() };
        assert_eq!(n.domain.as_deref(), Some("svc.example"));
        // v4-mapped answer, plain v4 connect
        let mut c = connect(2_000, "10.9.9.9:80");
        st.observe(&mut c);
        let Record::Net(n) = &c else { panic!() };
        assert_eq!(n.domain.as_deref(), Some("svc.example"));
        // after the (floored) TTL
        let mut c = connect(1_000 + MIN_TTL_NS + 1, "10.1.2.3:443");
        st.observe(&mut c);
        let Record::Net(n) = &c else { panic!() };
        assert_eq!(n.domain, None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = DomainCache::new(8);
        for i in 0..100u8 {
            let Record::Dns(d) = dns_answer(1, &format!("n{i}.example"), &[&format!("10.0.0.{i}")], 300) else { panic!() };
            cache.learn(&d);
            assert!(cache.len() <= 8);
        }
        let Record::Dns(d) = dns_answer(1, "last.example", &["10.0.0.200"], 300) else { panic!() };
        cache.learn(&d);
        assert_eq!(cache.lookup("10.0.0.200".parse().unwrap(), 2).as_deref(), Some("last.example"));
    }

    #[test]
    fn summary_counts_peers_and_bytes() {
        let mut s = NetSummary::default();
        s.observe(&connect(1, "10.0.0.1:80"));
        s.observe(&connect(2, "10.0.0.1:81"));
        s.observe(&connect(3, "10.0.0.2:80"));
        let mut close = record::raw::net(10, 4, op::OSPREY_NET_CLOSE, false, "127.0.0.1:5".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
        let at = std::mem::offset_of!(agent_common::osprey_net, bytes_sent);
        close[at..at + 8].copy_from_slice(&100u64.to_ne_bytes());
        s.observe(&decode(&close).unwrap());
        assert_eq!((s.connects, s.distinct_peers, s.bytes_sent), (3, 2, 100));
    }
}
