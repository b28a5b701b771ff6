//! The telemetry sections of the configuration file: which event domains the kernel reports and
//! the in-kernel file filters.

use agent_common::{osprey_file_op as fo, osprey_system_op as so};
use serde::{Deserialize, Serialize};

/// File operations by name, as `file.ops` lists them.
pub const FILE_OPS: &[(&str, u32)] = &[
    ("open_write", fo::OSPREY_FILE_OPEN_WRITE),
    ("create", fo::OSPREY_FILE_CREATE),
    ("modify", fo::OSPREY_FILE_MODIFY),
    ("read", fo::OSPREY_FILE_READ),
    ("unlink", fo::OSPREY_FILE_UNLINK),
    ("rmdir", fo::OSPREY_FILE_RMDIR),
    ("rename", fo::OSPREY_FILE_RENAME),
    ("chmod", fo::OSPREY_FILE_CHMOD),
    ("chown", fo::OSPREY_FILE_CHOWN),
    ("truncate", fo::OSPREY_FILE_TRUNCATE),
    ("link", fo::OSPREY_FILE_LINK),
    ("symlink", fo::OSPREY_FILE_SYMLINK),
];

/// System operations by name, as `system.ops` lists them.
pub const SYSTEM_OPS: &[(&str, u32)] = &[
    ("module_load", so::OSPREY_SYS_MODULE_LOAD),
    ("bpf_prog_load", so::OSPREY_SYS_BPF_PROG_LOAD),
    ("bpf_map_create", so::OSPREY_SYS_BPF_MAP_CREATE),
    ("ptrace", so::OSPREY_SYS_PTRACE),
    ("memfd_create", so::OSPREY_SYS_MEMFD_CREATE),
    ("mprotect_exec", so::OSPREY_SYS_MPROTECT_EXEC),
    ("mmap_exec", so::OSPREY_SYS_MMAP_EXEC),
    ("mount", so::OSPREY_SYS_MOUNT),
    ("umount", so::OSPREY_SYS_UMOUNT),
    ("unshare", so::OSPREY_SYS_UNSHARE),
    ("setns", so::OSPREY_SYS_SETNS),
    ("signal", so::OSPREY_SYS_SIGNAL),
];

/// Sensitive files whose reads are reported by default (DESIGN.md; `~/` means every home).
pub const DEFAULT_READ_WATCH: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/doas.conf",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/root/.ssh",
    "~/.ssh",
    "~/.aws",
    "~/.azure",
    "~/.config/gcloud",
    "~/.kube",
    "~/.docker/config.json",
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/pki",
    "/var/lib/kubelet/pki",
    "/var/run/secrets/kubernetes.io",
    "/run/secrets/kubernetes.io",
    "/dev/mem",
    "/dev/kmem",
    "/dev/port",
];

/// Prefixes whose writes are noise: terminals and the kernel's own counters.
pub const DEFAULT_WRITE_EXCLUDE: &[&str] = &["/dev/pts/", "/dev/null", "/proc/self/fd/", "/sys/kernel/tracing/trace_marker"];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileSection {
    /// Attach the file programs at all (syscall tracepoints: they cost every syscall a little).
    pub enabled: bool,
    /// Operations to report (see FILE_OPS); all by default.
    pub ops: Vec<String>,
    /// Files and directories whose reads are reported; `~/` expands to every home directory.
    pub watch_reads: Vec<String>,
    /// Path prefixes whose writes are never reported.
    pub write_exclude: Vec<String>,
    /// If not empty, writes are reported only under these prefixes.
    pub write_include: Vec<String>,
    /// A record of the same process, operation, attributes (open flags, chmod's setuid, setgid,
    /// sticky, execute and world-writable bits, chown's owner, truncate's length) and file(s)
    /// as one sent less than this ago is folded in the kernel: counted
    /// (`osprey_events_folded_total`) and carried by the next such record sent
    /// (`osprey.file.folded`). Self-protected paths are never folded. `0s` sends every record.
    #[serde(with = "humantime_serde")]
    pub fold_window: std::time::Duration,
}

/// See [`FileSection::fold_window`].
pub const DEFAULT_FILE_FOLD_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

impl Default for FileSection {
    fn default() -> Self {
        Self {
            enabled: true,
            ops: FILE_OPS.iter().map(|(n, _)| n.to_string()).collect(),
            watch_reads: strings(DEFAULT_READ_WATCH),
            write_exclude: strings(DEFAULT_WRITE_EXCLUDE),
            write_include: Vec::new(),
            fold_window: DEFAULT_FILE_FOLD_WINDOW,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SystemSection {
    /// Attach the credential-change programs (setuid family, capset).
    pub credentials: bool,
    /// Attach the system programs (modules, bpf, ptrace, memfd, exec memory, mounts, namespaces, signals).
    pub enabled: bool,
    /// Operations to report (see SYSTEM_OPS); all by default.
    pub ops: Vec<String>,
}

impl Default for SystemSection {
    fn default() -> Self {
        Self { credentials: true, enabled: true, ops: SYSTEM_OPS.iter().map(|(n, _)| n.to_string()).collect() }
    }
}

/// Turns op names into the kernel's bit mask; an unknown name is an error naming it.
pub fn op_mask(names: &[String], table: &[(&str, u32)], key: &str) -> Result<u32, String> {
    names.iter().try_fold(0u32, |mask, n| {
        let (_, op) = table.iter().find(|(name, _)| name == n).ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            format!("{key}: unknown operation `{n}` (known: {})", known.join(", "))
        })?;
        Ok(mask | 1 << op)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        let all = op_mask(&FileSection::default().ops, FILE_OPS, "file.ops").unwrap();
        assert_eq!(all.count_ones() as usize, FILE_OPS.len());
        let err = op_mask(&["opne".into()], FILE_OPS, "file.ops").unwrap_err();
        assert!(err.contains("`opne`") && err.contains("open_write"), "{err}");
    }
}
