//! Network telemetry on the real kernel (root): TCP over loopback (IPv4, IPv6, v4-mapped), a
//! refused connect, DNS through a test-made network namespace, and a connection storm. Traffic
//! stays on loopback or on a veth pair the test creates and removes.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use agent::{
    decode::Record,
    event::Event,
    net::{Dns, Net, NetOp, Transport},
};
use agent_common::RecordType;
use osprey_tests::{marker, test_config, Harness};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_osprey-workload");

/// Runs the workload to completion; returns its pid and what it printed.
fn workload(args: &[&str]) -> (u32, String) {
    let child = Command::new(WORKLOAD).args(args).stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "workload {args:?} failed");
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value after `prefix` on a line of the workload's output.
fn printed<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("`{prefix}` in {out:?}")).trim()
}

fn net_records(evs: &[Event]) -> impl Iterator<Item = &Net> {
    evs.iter().filter_map(|e| match e.record() {
        Some(Record::Net(n)) => Some(&**n),
        _ => None,
    })
}

fn find(evs: &[Event], f: impl Fn(&Net) -> bool) -> Option<(&Event, &Net)> {
    evs.iter().find_map(|e| match e.record() {
        Some(Record::Net(n)) if f(n) => Some((e, &**n)),
        _ => None,
    })
}

/// A listener in a workload process (the test process is the agent, whose own sockets are
/// never reported); returns it running, with the address it listens on.
fn server(bind: &str, n: usize, reply: usize) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    let mut child =
        Command::new(WORKLOAD).args(["serve", bind, &n.to_string(), &reply.to_string()]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let addr = printed(&line, "listening:").parse().unwrap();
    (child, addr)
}

/// One client connection (a workload process) to a listener (another): the client sends
/// `sent` bytes and half-closes, the server answers `reply` bytes and closes. Checks both sides.
fn loopback_exchange(h: &mut Harness, bind: &str, connect_to: impl Fn(u16) -> String, server_ip: &str, mapped: bool) {
    let (sent, reply) = (10_000usize, 3_000usize);
    let (srv, addr) = server(bind, 1, reply);
    let me = srv.id();
    let (pid, out) = workload(&["tcp", &connect_to(addr.port()), &sent.to_string()]);
    let sout = srv.wait_with_output().unwrap();
    let sout = String::from_utf8_lossy(&sout.stdout);
    assert_eq!((printed(&sout, "received:"), printed(&out, "received:")), (sent.to_string().as_str(), reply.to_string().as_str()));
    let client: SocketAddr = printed(&out, "local:").parse().unwrap();
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (server_addr, client_addr) = (SocketAddr::new(server_ip.parse().unwrap(), addr.port()), canon(client));
    let server_end = |n: &Net| n.local.port() == addr.port() && n.remote == client_addr;
    // every step of both sides: records of different CPUs may arrive in any order
    let closed = |evs: &[Event]| {
        find(evs, |n| n.op == NetOp::Close && n.hdr.pid == pid && n.remote.port() == addr.port()).is_some()
            && find(evs, |n| n.op == NetOp::Close && server_end(n)).is_some()
            && find(evs, |n| n.op == NetOp::Connect && n.hdr.pid == pid).is_some()
            && find(evs, |n| n.op == NetOp::Established && n.hdr.pid == pid).is_some()
            && find(evs, |n| n.op == NetOp::Accept && server_end(n)).is_some()
            && find(evs, |n| n.op == NetOp::Listen && n.local.port() == addr.port()).is_some()
    };
    let ok = h.wait_for(Duration::from_secs(10), closed);
    assert!(ok, "every step of {bind} → {client} (pid {pid}, server {me}): {:#?}", net_records(&h.events).filter(|n| n.local.port() == addr.port() || n.remote.port() == addr.port() || n.hdr.pid == pid).collect::<Vec<_>>());
    let evs = &h.events;
    let (_, listen) = find(evs, |n| n.op == NetOp::Listen && n.local.port() == addr.port()).expect("listen");
    assert_eq!((listen.hdr.pid, listen.transport), (me, Transport::Tcp));
    let (cev, conn) = find(evs, |n| n.op == NetOp::Connect && n.hdr.pid == pid).expect("connect attempt");
    assert_eq!(conn.remote, server_addr, "{conn:#?}");
    assert_eq!(conn.v4_mapped, mapped);
    let (_, est) = find(evs, |n| n.op == NetOp::Established && n.hdr.pid == pid).expect("established");
    assert_eq!((est.local, est.remote, est.sock_id), (client_addr, server_addr, conn.sock_id));
    let (aev, acc) = find(evs, |n| n.op == NetOp::Accept && server_end(n)).expect("accept");
    assert_eq!(acc.hdr.pid, me, "the accept belongs to the listener's process, not the softirq's");
    assert_eq!(acc.local, server_addr);
    let (_, cc) = find(evs, |n| n.op == NetOp::Close && n.hdr.pid == pid && n.remote == server_addr).unwrap();
    assert_eq!((cc.bytes_sent, cc.bytes_received), (sent as u64, reply as u64), "client close: {cc:#?}");
    assert!(cc.segs_out > 0 && cc.segs_in > 0);
    let (sev, sc) = find(evs, |n| n.op == NetOp::Close && server_end(n)).unwrap();
    assert_eq!((sc.hdr.pid, sc.bytes_sent, sc.bytes_received), (me, reply as u64, sent as u64), "server close: {sc:#?}");
    assert_eq!(printed(&sout, "peer:").parse::<SocketAddr>().unwrap().port(), client.port());

    // ECS
    let v = h.ecs.to_value(cev);
    let family = if server_addr.is_ipv4() { "ipv4" } else { "ipv6" };
    assert_eq!(v["event"]["category"][0], "network");
    assert_eq!(v["event"]["action"], "connection_attempted");
    assert_eq!(v["destination"]["ip"], server_addr.ip().to_string());
    assert_eq!(v["destination"]["port"], addr.port());
    assert_eq!((v["network"]["transport"].as_str(), v["network"]["type"].as_str()), (Some("tcp"), Some(family)));
    assert_eq!(v["network"]["direction"], "egress");
    assert_eq!(v["process"]["pid"], pid);
    assert_eq!(v["process"]["executable"].as_str(), Some(osprey_tests::canonical(WORKLOAD).as_str()));
    let v = h.ecs.to_value(aev);
    assert_eq!((v["network"]["direction"].as_str(), v["source"]["ip"].as_str()), (Some("ingress"), Some(client_addr.ip().to_string().as_str())));
    assert_eq!((v["source"]["port"].as_u64(), v["process"]["pid"].as_u64()), (Some(u64::from(client.port())), Some(u64::from(me))));
    let v = h.ecs.to_value(sev);
    assert_eq!(v["event"]["action"], "connection_closed");
    assert_eq!((v["source"]["bytes"].as_u64(), v["destination"]["bytes"].as_u64()), (Some(sent as u64), Some(reply as u64)));
    assert_eq!(v["network"]["bytes"].as_u64(), Some((sent + reply) as u64));
}

#[test]
fn loopback_connections_over_ipv4_ipv6_and_v4_mapped_report_both_sides_with_byte_counts() {
    let mut h = Harness::start(test_config());
    loopback_exchange(&mut h, "127.0.0.1:0", |p| format!("127.0.0.1:{p}"), "127.0.0.1", false);
    loopback_exchange(&mut h, "[::1]:0", |p| format!("[::1]:{p}"), "::1", false);
    // an IPv6 socket reaching an IPv4 peer: reported as IPv4, flagged v4_mapped
    loopback_exchange(&mut h, "[::]:0", |p| format!("[::ffff:127.0.0.1]:{p}"), "127.0.0.1", true);
    h.stop();
}

#[test]
fn a_connect_to_a_closed_port_is_refused() {
    let mut h = Harness::start(test_config());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again
    let (pid, out) = workload(&["connect", &format!("127.0.0.1:{port}")]);
    assert_eq!(printed(&out, "result:"), "error 111");
    let refused = |n: &Net| n.op == NetOp::Refused && n.hdr.pid == pid;
    assert!(h.wait_for(Duration::from_secs(10), |evs| find(evs, refused).is_some()), "refused event");
    let (ev, r) = find(&h.events, refused).unwrap();
    assert_eq!((r.err, r.remote), (111, SocketAddr::from(([127, 0, 0, 1], port))));
    assert!(find(&h.events, |n| n.op == NetOp::Connect && n.hdr.pid == pid && n.sock_id == r.sock_id).is_some());
    let v = h.ecs.to_value(ev);
    assert_eq!((v["event"]["action"].as_str(), v["event"]["outcome"].as_str()), (Some("connection_refused"), Some("failure")));
    assert_eq!(v["osprey"]["net"]["error"], "ECONNREFUSED");
    h.stop();
}

/// A network namespace with one end of a veth pair: 10.X.Y.2 inside, 10.X.Y.1 on the host.
struct Netns {
    name: String,
    host_if: String,
    inside: IpAddr,
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip (iproute2)");
    assert!(st.success(), "ip {args:?}");
}

impl Netns {
    fn create() -> Self {
        let tag = &marker()[7..13];
        let b = u8::from_str_radix(&tag[..2], 16).unwrap();
        let c = u8::from_str_radix(&tag[2..4], 16).unwrap() & 0xfc;
        let (name, host_if, peer) = (format!("osprey-{tag}"), format!("osp{tag}h"), format!("osp{tag}n"));
        let (host, inside) = (format!("10.{}.{b}.{}", 200 + b % 50, c + 1), format!("10.{}.{b}.{}", 200 + b % 50, c + 2));
        ip(&["netns", "add", &name]);
        let me = Netns { name: name.clone(), host_if: host_if.clone(), inside: inside.parse().unwrap() };
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", &name, "addr", "add", &format!("{inside}/30"), "dev", &peer]);
        ip(&["-n", &name, "link", "set", &peer, "up"]);
        me
    }

}

/// Moves the calling thread into network namespace `name`.
fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// A server on a thread inside `ns`: `bind` runs there with the namespace's address, and this
/// returns once it has; then `serve` runs with what it bound.
fn serve_in<T: 'static>(ns: &Netns, bind: impl FnOnce(IpAddr) -> T + Send + 'static, serve: impl FnOnce(T) + Send + 'static) -> std::thread::JoinHandle<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (inside, ns_name) = (ns.inside, ns.name.clone());
    let server = std::thread::spawn(move || {
        enter_netns(&ns_name);
        let bound = bind(inside);
        ready_tx.send(()).unwrap();
        serve(bound);
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).expect("server up in its namespace");
    server
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn dns_records(evs: &[Event], pid: u32) -> Vec<(&Event, &Dns)> {
    evs.iter()
        .filter_map(|e| match e.record() {
            Some(Record::Dns(d)) if d.hdr.pid == pid => Some((e, &**d)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_dns_answer_from_a_namespace_server_names_the_clients_next_connection() {
    let ns = Netns::create();
    let name = format!("{}.osprey.test", &marker()[7..]);
    let mut h = Harness::start(test_config());
    let server = serve_in(
        &ns,
        |inside| {
            let udp = UdpSocket::bind(SocketAddr::new(inside, 53)).unwrap();
            let tcp = TcpListener::bind(SocketAddr::new(inside, 8053)).unwrap();
            udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            (inside, udp, tcp)
        },
        |(inside, udp, tcp)| {
            let mut buf = [0u8; 1500];
            let (n, from) = udp.recv_from(&mut buf).unwrap();
            let answer = agent::net::dns::wire::response(&buf[..n], 0, &[inside], 30).unwrap();
            udp.send_to(&answer, from).unwrap();
            let _ = tcp.accept().unwrap();
        },
    );
    let (pid, out) = workload(&["dns", &ns.inside.to_string(), &name, "8053"]);
    server.join().unwrap();
    assert_eq!(printed(&out, "answer:"), ns.inside.to_string());
    let target = SocketAddr::new(ns.inside, 8053);
    let connected = |n: &Net| n.op == NetOp::Connect && n.hdr.pid == pid && n.remote == target;
    assert!(
        h.wait_for(Duration::from_secs(10), |evs| dns_records(evs, pid).len() >= 2 && find(evs, connected).is_some()),
        "query, answer and connect of pid {pid}: {:#?} {:#?}",
        dns_records(&h.events, pid).iter().map(|(_, d)| d).collect::<Vec<_>>(),
        net_records(&h.events).filter(|n| n.hdr.pid == pid).collect::<Vec<_>>()
    );
    let dns = dns_records(&h.events, pid);
    let (qev, q) = dns.iter().find(|(_, d)| !d.received()).expect("query sent");
    let (aev, a) = dns.iter().find(|(_, d)| d.received()).expect("answer received, attributed to the client");
    assert_eq!(q.remote, SocketAddr::new(ns.inside, 53));
    assert_eq!((q.message.questions[0].name.as_str(), q.message.questions[0].qtype), (name.as_str(), 1));
    assert_eq!((a.message.rcode, a.message.addresses().collect::<Vec<_>>()), (0, vec![ns.inside]));
    assert_eq!(a.local.port(), q.local.port());
    let v = h.ecs.to_value(qev);
    assert_eq!((v["event"]["action"].as_str(), v["dns"]["type"].as_str()), (Some("dns_request"), Some("query")));
    assert_eq!((v["dns"]["question"]["name"].as_str(), v["dns"]["question"]["type"].as_str()), (Some(name.as_str()), Some("A")));
    let v = h.ecs.to_value(aev);
    assert_eq!(v["event"]["action"], "dns_query");
    assert_eq!(v["dns"]["question"]["name"], name.as_str());
    assert_eq!(v["dns"]["response_code"], "NOERROR");
    assert_eq!(v["dns"]["resolved_ip"][0], ns.inside.to_string());
    assert_eq!(v["process"]["pid"], pid);
    // the same lookup as UDP telemetry: the first datagram each way with this peer
    let server53 = SocketAddr::new(ns.inside, 53);
    let (_, send) = find(&h.events, |n| n.op == NetOp::UdpSend && n.hdr.pid == pid && n.remote == server53).expect("udp first send");
    assert_eq!((send.transport, send.local.port()), (Transport::Udp, q.local.port()));
    let (_, recv) = find(&h.events, |n| n.op == NetOp::UdpRecv && n.hdr.pid == pid && n.remote == server53).expect("udp first receive");
    assert_eq!(recv.sock_id, send.sock_id);
    assert_eq!(net_records(&h.events).filter(|n| n.hdr.pid == pid && n.transport == Transport::Udp).count(), 2, "once per peer and direction");
    let (cev, c) = find(&h.events, connected).unwrap();
    assert_eq!(c.domain.as_deref(), Some(name.as_str()));
    assert_eq!(h.ecs.to_value(cev)["destination"]["domain"], name.as_str());
    h.stop();
}

#[test]
fn a_dns_lookup_over_tcp_is_read_past_the_tcp_header_both_ways() {
    let ns = Netns::create();
    let name = format!("t{}.osprey.test", &marker()[7..]);
    let mut h = Harness::start(test_config());
    let server = serve_in(
        &ns,
        |inside| (inside, TcpListener::bind(SocketAddr::new(inside, 53)).unwrap()),
        |(inside, l)| {
            let (mut s, _) = l.accept().unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut q).unwrap();
            let answer = agent::net::dns::wire::response(&q, 0, &[inside], 30).unwrap();
            let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&answer);
            s.write_all(&framed).unwrap();
            let _ = s.read(&mut len); // until the client closes
        },
    );
    let (pid, out) = workload(&["dns-tcp", &ns.inside.to_string(), &name]);
    server.join().unwrap();
    assert_eq!(printed(&out, "answer:"), ns.inside.to_string());
    assert!(
        h.wait_for(Duration::from_secs(10), |evs| dns_records(evs, pid).len() >= 2),
        "query and answer over TCP of pid {pid}: {:#?}",
        dns_records(&h.events, pid).iter().map(|(_, d)| d).collect::<Vec<_>>()
    );
    let dns = dns_records(&h.events, pid);
    // The handshake's and the closing segments carry no payload: only the two messages.
    assert_eq!(dns.len(), 2, "{:#?}", dns.iter().map(|(_, d)| d).collect::<Vec<_>>());
    let (_, q) = dns.iter().find(|(_, d)| !d.received()).expect("query sent");
    let (aev, a) = dns.iter().find(|(_, d)| d.received()).expect("answer received");
    assert_eq!((q.transport, a.transport), (Transport::Tcp, Transport::Tcp));
    assert_eq!((q.remote, a.local), (SocketAddr::new(ns.inside, 53), q.local));
    assert_eq!((q.message.questions[0].name.as_str(), q.message.questions[0].qtype), (name.as_str(), 1));
    assert_eq!((a.message.rcode, a.message.addresses().collect::<Vec<_>>()), (0, vec![ns.inside]));
    let v = h.ecs.to_value(aev);
    assert_eq!((v["event"]["action"].as_str(), v["dns"]["question"]["name"].as_str()), (Some("dns_query"), Some(name.as_str())));
    h.stop();
}

#[test]
fn a_storm_of_20000_loopback_connects_is_delivered_or_counted_lost() {
    const N: usize = 20_000;
    // Every connection its own events: folding off (the next test has it on).
    let mut config = test_config();
    config.network.fold_window = Duration::ZERO;
    let mut h = Harness::start(config);
    let (mut srv, addr) = server("127.0.0.1:0", N, 0);
    let port = addr.port();
    let started = std::time::Instant::now();
    let (pid, _) = workload(&["storm", &addr.to_string(), &N.to_string()]);
    assert!(srv.wait().unwrap().success());
    let took = started.elapsed();
    // performed, per op: the client's attempt and establishment, the server's accept, a close each
    // a socket is ours when it connected to or was accepted on the port; its close by its id
    let ours = |n: &Net| n.local.port() == port || n.remote.port() == port;
    let count = |evs: &[Event], op: NetOp| {
        if op != NetOp::Close {
            return net_records(evs).filter(|n| n.op == op && ours(n)).count() as u64;
        }
        let ids: std::collections::HashSet<u64> = net_records(evs)
            .filter(|n| matches!(n.op, NetOp::Connect | NetOp::Accept) && ours(n))
            .map(|n| n.sock_id)
            .collect();
        net_records(evs).filter(|n| n.op == NetOp::Close && ids.contains(&n.sock_id)).count() as u64
    };
    let performed = [(NetOp::Connect, N), (NetOp::Established, N), (NetOp::Accept, N), (NetOp::Close, 2 * N)];
    let total: u64 = performed.iter().map(|(_, n)| *n as u64).sum();
    let lost = |h: &Harness| h.kernel_counters().lost_total(RecordType::Net);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let lost_now = lost(&h);
        if h.wait_for(Duration::from_millis(500), |evs| performed.iter().map(|(op, _)| count(evs, *op)).sum::<u64>() + lost_now >= total) {
            break;
        }
    }
    let summary = h.stop();
    // ring buffer full, plus runs of net_tcp_state the kernel skipped because an interrupt ran it
    // again while it was running on that CPU (recursion_misses): both counted, whole machine
    let lost = summary.counters.lost_total(RecordType::Net);
    let nested = summary.counters.nested_total(RecordType::Net);
    let mut delivered = 0;
    for (op, n) in performed {
        let got = count(&h.events, op);
        assert!(got <= n as u64, "{op:?}: {got} delivered of {n} performed");
        if lost == 0 {
            let closes = |inbound: bool| net_records(&h.events).filter(|n| n.op == NetOp::Close && ours(n) && (n.flags & 2 != 0) == inbound).count();
            assert_eq!(got, n as u64, "{op:?}: nothing was lost, so everything must be delivered (by port: {} client, {} server closes)", closes(false), closes(true));
        }
        delivered += got;
    }
    let _ = pid;
    eprintln!("storm: {N} connects in {took:?}; {delivered} net records delivered of {total}, {lost} net records lost (whole machine; {nested} of them skipped nested runs)");
    assert!(delivered + lost >= total, "delivered {delivered} + lost {lost} < performed {total}");
}

#[test]
fn a_flood_of_connects_to_one_port_is_folded_and_every_folded_record_is_counted() {
    const N: usize = 3_000;
    let mut h = Harness::start(test_config()); // network.fold_window: the default, 1 s
    let folded = |h: &Harness| h.kernel_counters().folded_total(RecordType::Net);
    let before = folded(&h);
    // One server for both rounds: N connects from one client, then, after the window, one more
    // from another client: the server's accept of it carries what was folded since its last one.
    let (mut srv, addr) = server("127.0.0.1:0", N + 1, 0);
    let port = addr.port();
    let started = std::time::Instant::now();
    let (client, _) = workload(&["storm", &addr.to_string(), &N.to_string()]);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(1_300));
    let (late, _) = workload(&["storm", &addr.to_string(), "1"]);
    assert!(srv.wait().unwrap().success());
    let server_pid = srv.id();
    let accepts = |evs: &[Event]| -> Vec<Net> {
        net_records(evs).filter(|n| n.op == NetOp::Accept && n.local.port() == port && n.hdr.pid == server_pid).cloned().collect()
    };
    // The late client's accept is sent (the window passed) and carries the fold count. A run
    // of the state program that an interrupt re-entered is skipped by the kernel (counted as
    // lost: `nested`), so the accepts may add up to that many fewer.
    let nested = |h: &Harness| h.kernel_counters().nested_total(RecordType::Net);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut arrived = false;
    while !arrived && std::time::Instant::now() < deadline {
        let skipped = nested(&h);
        arrived = h.wait_for(Duration::from_millis(500), |evs| {
            accepts(evs).iter().map(|n| 1 + u64::from(n.folded)).sum::<u64>() + skipped >= (N + 1) as u64
                && find(evs, |n| n.op == NetOp::Connect && n.hdr.pid == late).is_some()
        });
    }
    let summary = h.stop();
    let nested = summary.counters.nested_total(RecordType::Net);
    let lost = summary.counters.lost_total(RecordType::Net) - nested;
    let folded_now = summary.counters.folded_total(RecordType::Net) - before;
    let ours = |n: &Net| n.remote.port() == port || n.local.port() == port;
    let delivered = net_records(&h.events).filter(|n| ours(n)).count() as u64;
    let acc = accepts(&h.events);
    let connects: Vec<&Net> = net_records(&h.events).filter(|n| n.op == NetOp::Connect && n.hdr.pid == client).collect();
    eprintln!(
        "fold: {N} connects in {took:?}: {delivered} records of ours delivered, {folded_now} folded (whole machine), {lost} lost, {nested} skipped nested runs; accepts {:?}, connects {:?}",
        acc.iter().map(|n| n.folded).collect::<Vec<_>>(),
        connects.iter().map(|n| n.folded).collect::<Vec<_>>()
    );
    assert_eq!(lost, 0, "a few records a second cannot fill the ring");
    assert!(arrived, "the accepts' fold counts did not add up to {} connections", N + 1);
    // Every accept is an event or counted on the next one sent: exactly, but for runs the
    // kernel skipped (each counted as a lost record).
    let accounted = acc.iter().map(|n| 1 + u64::from(n.folded)).sum::<u64>();
    assert!(accounted <= (N + 1) as u64 && accounted + nested >= (N + 1) as u64, "{accounted} accepts accounted for, {nested} skipped");
    // A record a window per kind, not one per connection: five kinds (connect, established,
    // accept, and the closes of both ends), a record each per started second, plus the late one.
    let windows = took.as_secs() + 2;
    assert!(!connects.is_empty() && connects.len() as u64 <= windows, "{} connect records", connects.len());
    assert!(delivered <= 5 * windows + 5, "{delivered} records for {N} connections");
    assert!(acc.len() as u64 >= 2 && acc.len() as u64 <= windows + 1, "{} accept records", acc.len());
    // What was not delivered was folded (the kernel's count covers the whole machine).
    let performed = 5 * (N as u64 + 1);
    assert!(delivered + folded_now + nested >= performed, "{delivered} delivered + {folded_now} folded + {nested} skipped < {performed} performed");
    // The first connect of a kind is never folded, and the carried counts are what was folded.
    assert_eq!(connects[0].folded, 0);
    let carried: u64 = net_records(&h.events).filter(|n| ours(n)).map(|n| u64::from(n.folded)).sum();
    assert!(carried <= folded_now, "{carried} carried > {folded_now} counted");
}

#[test]
fn closes_of_connections_that_carried_data_are_never_folded() {
    const BYTES: usize = 20_000; // over the kernel's fold limit (16 KiB)
    let mut h = Harness::start(test_config()); // folding on (the default)
    let (srv, addr) = server("127.0.0.1:0", 3, 0);
    let port = addr.port();
    // One shell, three connections in well under the window, each sending BYTES.
    let script = format!(
        "for i in 1 2 3; do exec 3<>/dev/tcp/127.0.0.1/{port}; head -c {BYTES} /dev/zero >&3; exec 3>&-; done"
    );
    let mut sh = Command::new("bash").args(["-c", &script]).spawn().unwrap();
    let pid = sh.id();
    assert!(sh.wait().unwrap().success());
    assert!(srv.wait_with_output().unwrap().status.success());
    let closes = |evs: &[Event]| -> Vec<u64> {
        net_records(evs).filter(|n| n.op == NetOp::Close && n.hdr.pid == pid && n.remote.port() == port).map(|n| n.bytes_sent).collect()
    };
    let all = h.wait_for(Duration::from_secs(10), |evs| closes(evs).len() >= 3);
    h.wait_for(Duration::from_millis(300), |_| false);
    let connects = net_records(&h.events).filter(|n| n.op == NetOp::Connect && n.hdr.pid == pid && n.remote.port() == port).count();
    let got = closes(&h.events);
    eprintln!("data closes: {got:?}; connect records {connects}");
    assert!(all, "three closes with their byte counts, got {got:?}");
    assert_eq!(got, vec![BYTES as u64; 3]);
    assert!(connects < 3, "the connects themselves fold ({connects} records)");
    h.stop();
}
