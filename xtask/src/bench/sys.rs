//! What the bench needs from the system, std only: a few libc calls, /proc readers, a minimal
//! HTTP GET for the agent's /metrics, and free loopback ports.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

mod c {
    extern "C" {
        pub fn getppid() -> i32;
        pub fn sysconf(name: i32) -> i64;
        pub fn kill(pid: i32, sig: i32) -> i32;
        pub fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
        pub fn sched_getaffinity(pid: i32, size: usize, mask: *mut u64) -> i32;
        pub fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    }
}

const SC_CLK_TCK: i32 = 2;
pub const SIGTERM: i32 = 15;

pub fn getppid() -> i32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { c::getppid() }
}

/// Clock ticks per second of /proc/PID/stat times.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { c::sysconf(SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill has no memory preconditions; `pid` is a child this process started.
    unsafe { c::kill(pid as i32, sig) == 0 }
}

/// Closes `s` with an RST (SO_LINGER 0) so no TIME_WAIT socket is left behind.
pub fn close_with_reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        onoff: i32,
        linger: i32,
    }
    let l = Linger { onoff: 1, linger: 0 };
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    // SAFETY: a valid socket fd and a properly sized `struct linger`.
    unsafe {
        c::setsockopt(s.as_raw_fd(), SOL_SOCKET, SO_LINGER, (&l as *const Linger).cast(), size_of::<Linger>() as u32)
    };
    drop(s);
}

/// A CPU affinity mask (cpu_set_t: 1024 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSet([u64; 16]);

impl CpuSet {
    pub fn one(cpu: usize) -> Self {
        let mut m = [0u64; 16];
        m[cpu / 64] |= 1 << (cpu % 64);
        CpuSet(m)
    }
}

/// The calling thread's CPU affinity.
pub fn affinity() -> Option<CpuSet> {
    let mut m = CpuSet([0; 16]);
    // SAFETY: the mask is a valid, writable cpu_set_t-sized buffer; pid 0 is the calling thread.
    (unsafe { c::sched_getaffinity(0, size_of::<CpuSet>(), m.0.as_mut_ptr()) } == 0).then_some(m)
}

/// Sets the calling thread's CPU affinity.
pub fn set_affinity(m: &CpuSet) -> bool {
    // SAFETY: the mask is a valid cpu_set_t-sized buffer; pid 0 is the calling thread.
    unsafe { c::sched_setaffinity(0, size_of::<CpuSet>(), m.0.as_ptr()) == 0 }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// `GET path` on 127.0.0.1:port (HTTP/1.0, so the body is never chunked): (status, body).
pub fn http_get(port: u16, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // field 3 of the line is f[0]; utime is field 14, stime field 15
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A `Name:  value kB` line of /proc/PID/status, in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

/// Resets the peak RSS (VmHWM) of a process to its current RSS.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Kernel-side run statistics of one BPF program a process holds an fd to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgStat {
    pub id: u32,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Every BPF program `pid` holds, from /proc/PID/fdinfo (run_* count only with
/// kernel.bpf_stats_enabled=1).
pub fn prog_stats(pid: u32) -> Vec<ProgStat> {
    let mut out: Vec<ProgStat> = Vec::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return out };
    for fd in fds.flatten() {
        let is_prog = std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy())) else {
            continue;
        };
        let field = |name: &str| -> u64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
                .unwrap_or(0)
        };
        let s = ProgStat { id: field("prog_id") as u32, run_time_ns: field("run_time_ns"), run_cnt: field("run_cnt") };
        if s.id != 0 && !out.iter().any(|o| o.id == s.id) {
            out.push(s);
        }
    }
    out.sort_by_key(|s| s.id);
    out
}

/// Names (as the kernel keeps them, 15 bytes at most) of loaded BPF programs by id, from
/// `bpftool prog show`. Empty when bpftool is missing.
pub fn prog_names() -> Vec<(u32, String)> {
    let Ok(out) = std::process::Command::new("bpftool").args(["prog", "show"]).output() else { return Vec::new() };
    parse_prog_names(&String::from_utf8_lossy(&out.stdout))
}

fn parse_prog_names(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| {
            let (id, rest) = l.split_once(':')?;
            let id: u32 = id.trim().parse().ok()?;
            let mut words = rest.split_whitespace();
            words.find(|w| *w == "name")?;
            Some((id, words.next()?.to_string()))
        })
        .collect()
}

/// MemTotal of /proc/meminfo, in KiB.
pub fn status_kib_meminfo() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    info.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok())
}

pub fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time_and_memory() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(status_kib(me, "VmRSS").unwrap() > 0);
        assert!(status_kib(me, "VmHWM").unwrap() > 0);
    }

    #[test]
    fn pins_and_restores_the_calling_thread() {
        std::thread::spawn(|| {
            let before = affinity().unwrap();
            assert!(set_affinity(&CpuSet::one(0)));
            assert_eq!(affinity(), Some(CpuSet::one(0)));
            assert!(set_affinity(&before));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn parses_bpftool_prog_show() {
        let text = "12: tracepoint  name file_openat  tag 0123456789abcdef  gpl run_time_ns 5 run_cnt 1\n\
                    \tloaded_at 2026-01-01T00:00:00+0000  uid 0\n\
                    13: tracing  name proc_exec  tag fedcba9876543210  gpl\n";
        assert_eq!(parse_prog_names(text), [(12, "file_openat".to_string()), (13, "proc_exec".to_string())]);
    }
}
