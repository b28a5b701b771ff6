//! Signals to processes and process trees, only ever through pidfds opened and then checked
//! against the process's start time: a pid that was reused by another process is refused,
//! never signalled.

use std::{
    collections::{BTreeSet, VecDeque},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use nix::sys::signal::Signal;
use thiserror::Error;

/// `PF_KTHREAD` in /proc/PID/stat's flags.
const PF_KTHREAD: u32 = 0x0020_0000;

/// How long a walk waits for one process to stop.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// How many times the tree walk looks again for children forked while it was stopping others.
const TREE_PASSES: usize = 4;

/// A process as Osprey knows it: pid and start time in clock ticks since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    pub pid: u32,
    pub ticks: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("process {0} is gone")]
    Gone(u32),
    #[error("pid {pid} now belongs to another process (started at tick {now}, not {expected}): refused")]
    Reused { pid: u32, expected: u64, now: u64 },
    #[error("process {0} is a kernel thread: refused")]
    KernelThread(u32),
    #[error("process {pid}: {reason}")]
    Os { pid: u32, reason: String },
}

/// An open pidfd whose process was verified to be the expected one.
pub struct Verified {
    fd: OwnedFd,
    pub id: Identity,
    pub ppid: u32,
}

struct Stat {
    ticks: u64,
    ppid: u32,
    flags: u32,
}

fn stat(pid: u32) -> Result<Stat, SignalError> {
    let p = procfs::process::Process::new(pid as i32).map_err(|_| SignalError::Gone(pid))?;
    let s = p.stat().map_err(|_| SignalError::Gone(pid))?;
    Ok(Stat { ticks: s.starttime, ppid: s.ppid as u32, flags: s.flags })
}

fn pidfd_open(pid: u32) -> Result<OwnedFd, SignalError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ESRCH) => SignalError::Gone(pid),
            _ => SignalError::Os { pid, reason: format!("pidfd_open: {e}") },
        });
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Opens a pidfd for `id.pid` and checks, after opening it, that the process still has the
/// start time `id.ticks`: the fd then refers to exactly that process for as long as it is held.
pub fn open(id: Identity) -> Result<Verified, SignalError> {
    let fd = pidfd_open(id.pid)?;
    let st = stat(id.pid)?;
    if st.ticks != id.ticks {
        return Err(SignalError::Reused { pid: id.pid, expected: id.ticks, now: st.ticks });
    }
    if st.flags & PF_KTHREAD != 0 {
        return Err(SignalError::KernelThread(id.pid));
    }
    Ok(Verified { fd, id, ppid: st.ppid })
}

/// The identity of whatever runs as `pid` now (for operator requests that name a bare pid:
/// it is resolved once, then every action goes through [`open`]).
pub fn identify(pid: u32) -> Result<Identity, SignalError> {
    Ok(Identity { pid, ticks: stat(pid)?.ticks })
}

impl Verified {
    pub fn signal(&self, sig: Signal) -> Result<(), SignalError> {
        // SAFETY: pidfd_send_signal(pidfd, sig, info = NULL, flags = 0).
        let r = unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.fd.as_raw_fd(), sig as libc::c_int, std::ptr::null::<u8>(), 0u32)
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ESRCH) => SignalError::Gone(self.id.pid),
                _ => SignalError::Os { pid: self.id.pid, reason: format!("pidfd_send_signal({sig}): {e}") },
            });
        }
        Ok(())
    }
}

/// The children of `pid` right now, from every thread's `children` file.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// Waits (briefly) until SIGSTOP has taken effect on `pid`: only a stopped process's list of
/// children is final. Returns false when it did not stop within the bound (or is gone).
fn wait_stopped(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + STOP_WAIT;
    loop {
        match procfs::process::Process::new(pid as i32).and_then(|p| p.stat()) {
            Ok(st) if matches!(st.state, 'T' | 't') => return true,
            Ok(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_micros(100)),
            _ => return false,
        }
    }
}

/// A tree that was stopped: its processes, root first, each held by a verified pidfd.
pub struct StoppedTree {
    pub members: Vec<Verified>,
}

impl StoppedTree {
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.id.pid).collect()
    }

    /// Sends `sig` to every member, descendants before their ancestors; returns the pids it
    /// reached (a member may have died), root first.
    ///
    /// The order matters for SIGKILL: when a process dies and leaves a process group orphaned
    /// with stopped members (ours are stopped), the kernel sends that group SIGHUP + SIGCONT.
    /// Killing the root first let stopped children die of that SIGHUP before our SIGKILL.
    pub fn signal_all(&self, sig: Signal) -> Vec<u32> {
        // `members` is in discovery order (breadth first from the root), so reversed every
        // process comes after all of its descendants.
        let reached: Vec<bool> = self.members.iter().rev().map(|m| m.signal(sig).is_ok()).collect();
        self.members.iter().zip(reached.iter().rev()).filter(|(_, ok)| **ok).map(|(m, _)| m.id.pid).collect()
    }
}

/// Stops `root` and every descendant with SIGSTOP, walking down from the root and looking
/// again until a pass finds no new child (a process forking while the walk ran is caught once
/// it is stopped). Children are verified by pidfd and by their parent pid at the time.
/// `skip` is consulted for every descendant (protected processes are left alone, with their
/// subtrees).
pub fn stop_tree(root: Identity, skip: &dyn Fn(u32) -> bool) -> Result<StoppedTree, SignalError> {
    let first = open(root)?;
    first.signal(Signal::SIGSTOP)?;
    wait_stopped(root.pid);
    let mut seen = BTreeSet::from([root.pid]);
    let mut members = vec![first];
    for _ in 0..TREE_PASSES {
        let mut added = false;
        let mut queue: VecDeque<u32> = members.iter().map(|m| m.id.pid).collect();
        while let Some(parent) = queue.pop_front() {
            for child in children(parent) {
                if seen.contains(&child) || skip(child) {
                    continue;
                }
                let Ok(id) = identify(child) else { continue };
                let Ok(v) = open(id) else { continue };
                if v.ppid != parent || v.signal(Signal::SIGSTOP).is_err() {
                    continue;
                }
                wait_stopped(child);
                seen.insert(child);
                members.push(v);
                queue.push_back(child);
                added = true;
            }
        }
        if !added {
            break;
        }
    }
    Ok(StoppedTree { members })
}

/// The tree below `root` (root included) without stopping it, for SIGCONT.
pub fn tree(root: Identity) -> Result<Vec<Verified>, SignalError> {
    let mut members = vec![open(root)?];
    let mut i = 0;
    while i < members.len() {
        let parent = members[i].id.pid;
        for child in children(parent) {
            if members.iter().any(|m| m.id.pid == child) {
                continue;
            }
            if let Ok(v) = identify(child).and_then(open) {
                if v.ppid == parent {
                    members.push(v);
                }
            }
        }
        i += 1;
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_stale_identity_is_refused_and_the_process_lives() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let id = identify(pid).unwrap();
        let stale = Identity { pid, ticks: id.ticks.saturating_sub(1) };
        assert!(matches!(open(stale), Err(SignalError::Reused { .. })));
        assert_eq!(child.try_wait().unwrap(), None, "still running");
        open(id).unwrap().signal(Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(matches!(open(id), Err(SignalError::Gone(_) | SignalError::Reused { .. })));
    }

    #[test]
    fn kernel_threads_are_refused() {
        // kthreadd is pid 2 on every Linux system.
        let id = identify(2).unwrap();
        assert_eq!(open(id).err(), Some(SignalError::KernelThread(2)));
    }

    /// Kills the test's process group however the test ends (stopped members included).
    struct Group(std::process::Child);

    impl Drop for Group {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_tree_is_stopped_whole_then_killed() {
        use std::os::unix::process::CommandExt;
        // sh → (sleep, sh → sleep): three descendants.
        let mut group = Group(Command::new("sh").args(["-c", "sleep 30 & sh -c 'sleep 30 & wait' & wait"]).process_group(0).spawn().unwrap());
        let root = &mut group.0;
        let id = identify(root.id()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tree(id).unwrap().len() < 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let stopped = stop_tree(id, &|_| false).unwrap();
        assert_eq!(stopped.members.len(), 4, "{:?}", stopped.pids());
        for pid in stopped.pids() {
            let state = procfs::process::Process::new(pid as i32).unwrap().stat().unwrap().state;
            assert_eq!(state, 'T', "{pid} is stopped");
        }
        assert_eq!(stopped.signal_all(Signal::SIGKILL).len(), 4);
    }
}
