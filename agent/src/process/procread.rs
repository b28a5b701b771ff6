//! Reading one process from `/proc` (or a test's stand-in root): stat and status through the
//! `procfs` crate, the links and cmdline directly (lossy UTF-8, empty arguments kept).

use std::{
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use procfs::process::Process as ProcfsProcess;

use super::hash::FileKey;
use crate::decode::split_args;

/// What `/proc/PID/stat` says about identity and lineage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatLine {
    pub pid: u32,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    /// Start time in clock ticks since boot (field 22).
    pub ticks: u64,
    pub comm: String,
}

/// One process as /proc shows it.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub stat: StatLine,
    pub exe: Option<String>,
    pub exe_file: Option<FileKey>,
    pub deleted: bool,
    pub memfd: bool,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    /// real, effective, saved uid; real, effective, saved gid
    pub uids: Option<[u32; 3]>,
    pub gids: Option<[u32; 3]>,
    pub cgroup_id: Option<u64>,
}

fn dir(root: &Path, pid: u32) -> PathBuf {
    root.join(pid.to_string())
}

fn to_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

pub(crate) fn read_stat(root: &Path, pid: u32) -> Option<StatLine> {
    let p = ProcfsProcess::new_with_root(dir(root, pid)).ok()?;
    let s = p.stat().ok()?;
    Some(StatLine {
        pid,
        ppid: to_u32(s.ppid),
        pgrp: to_u32(s.pgrp),
        session: to_u32(s.session),
        ticks: s.starttime,
        comm: s.comm,
    })
}

fn read_link(p: &Path) -> Option<String> {
    fs::read_link(p).ok().map(|l| String::from_utf8_lossy(l.as_os_str().as_bytes()).into_owned())
}

/// Reads everything the table keeps about `pid`. None when the process does not exist.
/// `cgroup_mount` turns the cgroup path into a cgroup id (the directory's inode).
pub(crate) fn snapshot(root: &Path, pid: u32, cgroup_mount: Option<&Path>) -> Option<Snapshot> {
    use std::os::unix::fs::MetadataExt;
    let d = dir(root, pid);
    let p = ProcfsProcess::new_with_root(d.clone()).ok()?;
    let s = p.stat().ok()?;
    let stat = StatLine {
        pid,
        ppid: to_u32(s.ppid),
        pgrp: to_u32(s.pgrp),
        session: to_u32(s.session),
        ticks: s.starttime,
        comm: s.comm,
    };
    let (uids, gids) = match p.status() {
        Ok(st) => (Some([st.ruid, st.euid, st.suid]), Some([st.rgid, st.egid, st.sgid])),
        Err(_) => (None, None),
    };
    let mut exe = read_link(&d.join("exe"));
    let mut deleted = false;
    let mut memfd = false;
    if let Some(e) = exe.as_mut() {
        if let Some(stripped) = e.strip_suffix(" (deleted)") {
            deleted = true;
            *e = stripped.to_owned();
        }
        if e.starts_with("/memfd:") {
            memfd = true;
            deleted = false;
        }
    }
    let exe_file = exe.as_ref().and_then(|_| fs::metadata(d.join("exe")).ok()).map(|m| FileKey::from_metadata(&m));
    let args = fs::read(d.join("cmdline")).map(|b| split_args(&b, 0)).unwrap_or_default();
    let cwd = read_link(&d.join("cwd"));
    let cgroup_path = super::container::proc_cgroup_path(root, pid);
    let cgroup_id = match (cgroup_mount, &cgroup_path) {
        (Some(m), Some(cg)) => fs::metadata(m.join(cg.trim_start_matches('/'))).ok().map(|md| md.ino()),
        _ => None,
    };
    Some(Snapshot { stat, exe, exe_file, deleted, memfd, args, cwd, uids, gids, cgroup_id })
}

/// Every numeric directory under the root.
pub(crate) fn list_pids(root: &Path) -> std::io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = fs::read_dir(root)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let s = snapshot(Path::new("/proc"), me, None).expect("own /proc entry");
        assert_eq!(s.stat.pid, me);
        assert_eq!(s.stat.ppid, std::os::unix::process::parent_id());
        assert!(s.stat.ticks > 0);
        assert!(s.exe.is_some());
        assert!(s.exe_file.is_some());
        assert!(!s.args.is_empty());
        assert!(s.uids.is_some());
        assert!(list_pids(Path::new("/proc")).unwrap().contains(&me));
        assert!(read_stat(Path::new("/proc"), u32::MAX).is_none());
    }

    #[test]
    fn cmdline_keeps_empty_arguments() {
        assert_eq!(split_args(b"a\0\0b\0", 0), ["a", "", "b"]);
        assert!(split_args(b"", 0).is_empty());
    }
}
