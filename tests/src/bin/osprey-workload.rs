//! Workloads for the integration tests: each subcommand performs an exact list of syscalls
//! (the kind an attacker's tool would make) and prints what it did, so a test can compare the
//! events Osprey reports with what really happened.
//!
//!   osprey-workload files DIR          create/write/rename/chmod/chown/truncate/link/delete
//!   osprey-workload write-storm FILE N  one open, N writes
//!   osprey-workload chmod-storm FILE N  N chmod 0600 of FILE, one chmod 0700 of it, one chmod
//!                                       0600 of FILE.2, chmod 0600 of "f" in FILE.a/ and then
//!                                       in FILE.b/ (cwd); after 1.5 s one more chmod 0600 of FILE
//!   osprey-workload read FILE           open read-only and read
//!   osprey-workload creds               seteuid(65534), then setresuid(0, 0, 0)
//!   osprey-workload memfd-exec          memfd_create + write /bin/sleep + execveat (sleep 2)
//!   osprey-workload mprotect            anonymous RW mapping made executable
//!   osprey-workload ptrace              PTRACE_ATTACH to a child, then detach
//!   osprey-workload bpf-load            load a 2-instruction socket filter named osprey_wl
//!   osprey-workload unshare             unshare(CLONE_NEWNS)
//!   osprey-workload kill-child          SIGKILL a child `sleep`
//!   osprey-workload churn N             N children that fork and exit at once
//!   osprey-workload tcp ADDR N          connect, send N bytes, half-close, read to the end
//!   osprey-workload connect ADDR        one connect attempt; prints its result
//!   osprey-workload dns SERVER NAME PORT  UDP query for NAME (A) to SERVER:53, then a TCP connect
//!                                       to the first answered address at PORT
//!   osprey-workload storm ADDR N        N connects to ADDR, each reset (SO_LINGER 0) at once
//!   osprey-workload serve ADDR N REPLY  listen on ADDR (prints it), then N times: accept, read
//!                                       to the end, answer REPLY bytes, close

use std::{
    ffi::CString,
    io::Write,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Command,
};

use nix::{
    fcntl::{open, openat, renameat, AtFlags, OFlag},
    sys::stat::{fchmodat, FchmodatFlags, Mode},
    unistd::{self, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags},
};

#[path = "workload/intrusion.rs"]
mod intrusion;

mod net {
    use std::{
        io::{Read, Write},
        net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    };

    use super::check;

    pub fn tcp(addr: &str, n: usize) {
        let mut s = check("connect", TcpStream::connect(addr));
        println!("local: {}", check("local", s.local_addr()));
        check("write", s.write_all(&vec![b'x'; n]));
        check("shutdown", s.shutdown(std::net::Shutdown::Write));
        let mut got = Vec::new();
        check("read", s.read_to_end(&mut got));
        println!("received: {}", got.len());
    }

    pub fn connect(addr: &str) {
        match TcpStream::connect(addr) {
            Ok(s) => println!("result: ok {}", check("local", s.local_addr())),
            Err(e) => println!("result: error {}", e.raw_os_error().unwrap_or(0)),
        }
    }

    pub fn dns(server: &str, name: &str, port: u16) {
        let server: IpAddr = server.parse().expect("server address");
        let sock = check("bind", UdpSocket::bind(if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }));
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let q = agent::net::dns::wire::query(0x4242, name, 1);
        check("send", sock.send_to(&q, SocketAddr::new(server, 53)));
        println!("dns_local: {}", check("local", sock.local_addr()));
        let mut buf = [0u8; 1500];
        let (n, _) = check("recv", sock.recv_from(&mut buf));
        let m = check("parse", agent::net::dns::parse(&buf[..n]));
        let addr = m.addresses().next().expect("an address in the answer");
        println!("answer: {addr}");
        let s = check("connect", TcpStream::connect(SocketAddr::new(addr, port)));
        println!("local: {}", check("local", s.local_addr()));
    }

    /// The same lookup over TCP (a 2-byte length, then the message, each way).
    pub fn dns_tcp(server: &str, name: &str) {
        let server: IpAddr = server.parse().expect("server address");
        let mut s = check("connect", TcpStream::connect(SocketAddr::new(server, 53)));
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let q = agent::net::dns::wire::query(0x4243, name, 1);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        check("send", s.write_all(&framed));
        println!("dns_local: {}", check("local", s.local_addr()));
        let mut len = [0u8; 2];
        check("recv", s.read_exact(&mut len));
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        check("recv", s.read_exact(&mut buf));
        let m = check("parse", agent::net::dns::parse(&buf));
        println!("answer: {}", m.addresses().next().expect("an address in the answer"));
    }

    pub fn serve(addr: &str, n: usize, reply: usize) {
        let l = check("bind", std::net::TcpListener::bind(addr));
        println!("listening: {}", check("local", l.local_addr()));
        check("flush", std::io::stdout().flush());
        for _ in 0..n {
            let (mut s, peer) = check("accept", l.accept());
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got); // a reset peer is fine
            if reply > 0 {
                check("write", s.write_all(&vec![b'y'; reply]));
            }
            if n == 1 {
                println!("peer: {peer}\nreceived: {}", got.len());
            }
        }
    }

    /// Closes with SO_LINGER 0 (a reset, no TIME_WAIT): thousands of connects in a row would
    /// otherwise use up the ephemeral ports for a minute and slow every later connect.
    pub fn storm(addr: &str, n: usize) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        for _ in 0..n {
            let s = check("connect", TcpStream::connect(addr));
            // SAFETY: setsockopt on an open socket with a correctly sized linger value.
            let rc = unsafe {
                libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, (&linger as *const libc::linger).cast(), std::mem::size_of::<libc::linger>() as u32)
            };
            assert_eq!(rc, 0, "SO_LINGER");
        }
        println!("connects: {n}");
    }
}

fn check<T, E: std::fmt::Debug>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn files(dir: &str) {
    let p = |name: &str| format!("{dir}/{name}");
    let rw = Mode::from_bits_truncate(0o644);
    // absolute create + three writes
    let a = owned(check("open a", open(p("a.txt").as_str(), OFlag::O_CREAT | OFlag::O_WRONLY, rw)));
    let mut fa = std::fs::File::from(a);
    for _ in 0..3 {
        check("write a", fa.write_all(b"hello\n"));
    }
    drop(fa);
    // dirfd-relative create
    let dfd = owned(check("open dir", open(dir, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())));
    let d = Some(dfd.as_raw_fd());
    let b = owned(check("openat b", openat(d, "b.txt", OFlag::O_CREAT | OFlag::O_WRONLY, rw)));
    check("renameat b->c", renameat(d, "b.txt", d, "c.txt"));
    check("rename a->d", std::fs::rename(p("a.txt"), p("d.txt")));
    check("fchmodat c", fchmodat(d, "c.txt", Mode::from_bits_truncate(0o600), FchmodatFlags::FollowSymlink));
    check("chmod d", std::fs::set_permissions(p("d.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o640)));
    check("fchownat c", fchownat(d, "c.txt", Some(Uid::from_raw(1234)), Some(Gid::from_raw(5678)), AtFlags::empty()));
    check("chown d", std::os::unix::fs::chown(p("d.txt"), Some(4321), None));
    check("truncate d", unistd::truncate(p("d.txt").as_str(), 10));
    check("ftruncate c", unistd::ftruncate(&b, 5));
    drop(b);
    check("linkat c->e", linkat(d, "c.txt", d, "e.txt", AtFlags::empty()));
    check("symlinkat f->c", symlinkat("c.txt", d, "f.lnk"));
    check("unlinkat e", unlinkat(d, "e.txt", UnlinkatFlags::NoRemoveDir));
    check("unlink f", std::fs::remove_file(p("f.lnk")));
    check("mkdir sub", std::fs::create_dir(p("sub")));
    check("unlinkat sub", unlinkat(d, "sub", UnlinkatFlags::RemoveDir));
    // relative to the cwd
    check("chdir", std::env::set_current_dir(dir));
    check("mkdir sub", std::fs::create_dir("sub"));
    check("rename c->g", std::fs::rename("c.txt", "./sub/../g.txt"));
}

fn write_storm(path: &str, n: u64) {
    let mut f = check("open", std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(path));
    for _ in 0..n {
        check("write", f.write_all(b"x"));
    }
}

fn chmod_storm(path: &str, n: u64) {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &str, mode: u32| check("chmod", std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)));
    let other = format!("{path}.2");
    check("create", std::fs::write(path, b"x"));
    check("create", std::fs::write(&other, b"x"));
    for _ in 0..n {
        set(path, 0o600);
    }
    set(path, 0o700);
    set(&other, 0o600);
    // the same relative name in two directories: two files
    for sub in ["a", "b"] {
        let dir = format!("{path}.{sub}");
        check("mkdir", std::fs::create_dir(&dir));
        check("create", std::fs::write(format!("{dir}/f"), b"x"));
        check("chdir", std::env::set_current_dir(&dir));
        set("f", 0o600);
    }
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    set(path, 0o600);
}

fn read(path: &str) {
    let data = check("read", std::fs::read(path));
    println!("read {} bytes", data.len());
}

fn creds() {
    check("seteuid", unistd::seteuid(Uid::from_raw(65534)));
    check("setresuid", unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)));
}

fn memfd_exec() -> ! {
    // sleep, not true: the image lives long enough to be read through /proc/PID/exe
    let image = check("read /bin/sleep", std::fs::read("/bin/sleep"));
    let name = CString::new("osprey-wl").unwrap();
    let fd = check("memfd_create", nix::sys::memfd::memfd_create(&name, nix::sys::memfd::MemFdCreateFlag::empty()));
    let mut f = std::fs::File::from(fd);
    check("write memfd", f.write_all(&image));
    let argv = [CString::new("sleep").unwrap(), CString::new("2").unwrap()];
    let env: [CString; 0] = [];
    check("execveat", nix::unistd::fexecve(f.as_raw_fd(), &argv, &env));
    unreachable!()
}

fn mprotect() {
    // SAFETY: a fresh private anonymous mapping, used only through these calls.
    unsafe {
        let len = 4096;
        let addr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        assert_ne!(addr, libc::MAP_FAILED);
        assert_eq!(libc::mprotect(addr, len, libc::PROT_READ | libc::PROT_EXEC), 0, "mprotect");
        println!("mprotect {:#x}", addr as usize);
        libc::munmap(addr, len);
    }
}

fn ptrace() {
    let mut child = check("spawn sleep", Command::new("/bin/sleep").arg("30").spawn());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    check("attach", nix::sys::ptrace::attach(pid));
    check("waitpid", nix::sys::wait::waitpid(pid, None));
    check("detach", nix::sys::ptrace::detach(pid, None));
    println!("ptraced {pid}");
    let _ = child.kill();
    let _ = child.wait();
}

/// PTRACE_SEIZE (no stop) then PTRACE_DETACH of process `pid`.
fn ptrace_seize(pid: i32) {
    // SAFETY: ptrace(2) requests on a pid; no memory is passed.
    let rc = unsafe { libc::ptrace(0x4206, pid, 0, 0) };
    assert_eq!(rc, 0, "PTRACE_SEIZE {pid}: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
    println!("result: seized");
}

/// Detaches BPF link `id` (BPF_LINK_GET_FD_BY_ID, then BPF_LINK_DETACH), as an EDR killer
/// would; prints the result.
fn bpf_detach(id: u32) {
    let mut attr = [0u64; 16];
    attr[0] = id as u64;
    // SAFETY: BPF_LINK_GET_FD_BY_ID (30) with a zeroed attr whose first u32 is the id.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 30, attr.as_mut_ptr(), 128u32) };
    assert!(fd >= 0, "bpf(BPF_LINK_GET_FD_BY_ID {id}): {}", std::io::Error::last_os_error());
    let mut attr = [0u64; 16];
    attr[0] = fd as u64;
    // SAFETY: BPF_LINK_DETACH (34) with a zeroed attr whose first u32 is the link fd.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, 34, attr.as_mut_ptr(), 128u32) };
    let err = std::io::Error::last_os_error();
    println!("result: {}", if rc == 0 { "detached".to_string() } else { format!("error {err}") });
}

fn bpf_load() {
    // r0 = 0; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = CString::new("GPL").unwrap();
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        pad: [u64; 8],
    }
    let mut attr = ProgLoad {
        prog_type: 1, // BPF_PROG_TYPE_SOCKET_FILTER
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..9].copy_from_slice(b"osprey_wl");
    // SAFETY: BPF_PROG_LOAD with a valid, fully initialised attribute of the size given.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 5, &attr as *const ProgLoad, std::mem::size_of::<ProgLoad>()) };
    assert!(fd >= 0, "bpf(BPF_PROG_LOAD): {}", std::io::Error::last_os_error());
    println!("bpf prog fd {fd}");
}

fn unshare() {
    check("unshare", nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS));
}

fn kill_child() {
    let mut child = check("spawn sleep", Command::new("/bin/sleep").arg("30").spawn());
    println!("child {}", child.id());
    check("kill", nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL));
    let _ = child.wait();
}

fn churn(n: u64) {
    for _ in 0..n {
        // SAFETY: the child only calls _exit, which is async-signal-safe.
        match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(0) },
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            pid => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
        }
    }
}

/// Creates `path`: the first thing this process does (the exec-block test checks it is never
/// done by a blocked image).
fn touch(path: &str) {
    std::fs::write(path, b"ran").expect("create the marker");
}

/// A TCP connect to `addr` within `timeout_ms`: exit 0 when it connects, 3 when it does not.
fn try_connect(addr: &str, timeout_ms: u64) {
    let a: std::net::SocketAddr = addr.parse().expect("address");
    match std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_millis(timeout_ms)) {
        Ok(_) => std::process::exit(0),
        Err(e) => {
            eprintln!("connect {addr}: {e}");
            std::process::exit(3)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| panic!("missing argument {i}"));
    match arg(0) {
        "files" => files(arg(1)),
        "write-storm" => write_storm(arg(1), arg(2).parse().expect("count")),
        "chmod-storm" => chmod_storm(arg(1), arg(2).parse().expect("count")),
        "read" => read(arg(1)),
        "creds" => creds(),
        "memfd-exec" => memfd_exec(),
        "mprotect" => mprotect(),
        "ptrace" => ptrace(),
        "bpf-load" => bpf_load(),
        "bpf-detach" => bpf_detach(arg(1).parse().expect("link id")),
        "ptrace-seize" => ptrace_seize(arg(1).parse().expect("pid")),
        "unshare" => unshare(),
        "kill-child" => kill_child(),
        "churn" => churn(arg(1).parse().expect("count")),
        "touch" => touch(arg(1)),
        "try-connect" => try_connect(arg(1), arg(2).parse().expect("timeout ms")),
        "tcp" => net::tcp(arg(1), arg(2).parse().expect("bytes")),
        "connect" => net::connect(arg(1)),
        "dns" => net::dns(arg(1), arg(2), arg(3).parse().expect("port")),
        "dns-tcp" => net::dns_tcp(arg(1), arg(2)),
        "storm" => net::storm(arg(1), arg(2).parse().expect("count")),
        "websrv" => intrusion::websrv(arg(1), arg(2)),
        "fetch" => intrusion::fetch(arg(1), arg(2)),
        "payload" => intrusion::payload(arg(1), arg(2), arg(3)),
        "serve" => net::serve(arg(1), arg(2).parse().expect("count"), arg(3).parse().expect("reply bytes")),
        other => panic!("unknown workload {other}"),
    }
}
