//! Pseudo filesystems the sensor needs: tracefs (classic tracepoints), bpffs (pins) and
//! securityfs (the active LSM list, read by the prevention guard). None is mounted at boot on
//! every machine; mount them when absent.

use std::path::Path;

use nix::mount::{mount, MsFlags};
use tracing::info;

const MOUNTS: [(&str, &str); 3] =
    [("tracefs", "/sys/kernel/tracing"), ("bpf", "/sys/fs/bpf"), ("securityfs", "/sys/kernel/security")];

fn is_mounted(fstype: &str, target: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| mountinfo_has(&m, fstype, target))
        .unwrap_or(false)
}

/// True when a mountinfo line mounts `fstype` at `target`.
fn mountinfo_has(mountinfo: &str, fstype: &str, target: &str) -> bool {
    mountinfo.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else { return false };
        left.split_whitespace().nth(4) == Some(target)
            && right.split_whitespace().next() == Some(fstype)
    })
}

/// Mounts tracefs, bpffs and securityfs where they are missing. Errors are returned, not fatal: a kernel
/// without them still runs the tp_btf programs.
pub fn ensure_mounted() -> Vec<String> {
    let mut problems = Vec::new();
    for (fstype, target) in MOUNTS {
        if is_mounted(fstype, target) {
            continue;
        }
        if !Path::new(target).exists() {
            problems.push(format!("{target} does not exist; {fstype} not mounted"));
            continue;
        }
        match mount(Some(fstype), target, Some(fstype), MsFlags::empty(), None::<&str>) {
            Ok(()) => info!(fstype, target, "mounted"),
            Err(e) => problems.push(format!("mount {fstype} on {target}: {e}")),
        }
    }
    problems
}

/// The cgroup v2 mount point, from /proc/self/mountinfo (hybrid hosts mount it elsewhere than
/// /sys/fs/cgroup).
pub fn cgroup2_mount() -> Option<String> {
    let m = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    crate::process::container::find_cgroup2_mount(&m).map(|p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw
36 25 0:31 / /sys/kernel/tracing rw,relatime - tracefs tracefs rw";

    #[test]
    fn parses_mountinfo() {
        assert!(mountinfo_has(SAMPLE, "tracefs", "/sys/kernel/tracing"));
        assert!(!mountinfo_has(SAMPLE, "bpf", "/sys/fs/bpf"));
        assert!(!mountinfo_has(SAMPLE, "tracefs", "/sys/fs/bpf"));
    }
}
