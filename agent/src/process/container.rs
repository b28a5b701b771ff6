//! Container and Kubernetes context from a cgroup v2 path, and the cgroup id → path resolver.
//!
//! Runtimes name the cgroup of a container after its id; the kubelet names pod cgroups after the
//! pod UID under a QoS slice. Both cgroup drivers are understood:
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`
//! - cgroupfs: `/kubepods/burstable/pod<uid>/<id>`
//!
//! The id of a cgroup v2 directory is its inode number, so the resolver finds a cgroup's path by
//! reading `/proc/PID/cgroup` of a process in it (checked against the inode) or, failing that, by
//! walking the cgroup2 mount (rate-limited). Results are cached per cgroup id.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use serde::Serialize;

/// The container runtime a cgroup path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Containerd,
    #[serde(rename = "cri-o")]
    CriO,
    Docker,
    Podman,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
        }
    }
}

/// Kubernetes pod quality-of-service class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QosClass {
    Guaranteed,
    Burstable,
    #[serde(rename = "besteffort")]
    BestEffort,
}

impl QosClass {
    pub fn name(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "guaranteed",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
        }
    }
}

/// What a cgroup path says about containers and pods. Every field is optional: a kubepods path
/// of a pod-level process has a pod but no container; a plain Docker container has no pod; a
/// cgroupfs kubepods path names the container but not its runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<QosClass>,
}

impl ContainerInfo {
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.pod_uid.is_none()
    }
}

fn is_hex_id(s: &str) -> bool {
    (12..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A container name in a runtime's own namespace (`/containerd/<id>`): letters, digits, `_.-`.
fn is_name_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn is_pod_uid(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// `<prefix><id>[.scope]` for runtimes that name one cgroup per container. Monitor processes
/// (`crio-conmon-`, `libpod-conmon-`) are not in the container and return None.
fn scope_container(comp: &str) -> Option<(&str, Runtime)> {
    let c = comp.strip_suffix(".scope").unwrap_or(comp);
    if c.starts_with("crio-conmon-") || c.starts_with("libpod-conmon-") {
        return None;
    }
    const PREFIXES: [(&str, Runtime); 5] = [
        ("cri-containerd-", Runtime::Containerd),
        ("nerdctl-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("docker-", Runtime::Docker),
        ("libpod-", Runtime::Podman),
    ];
    PREFIXES.iter().find_map(|&(p, rt)| c.strip_prefix(p).filter(|id| is_hex_id(id)).map(|id| (id, rt)))
}

/// Parses a cgroup v2 path (as /proc/PID/cgroup shows it, or absolute under the mount). When a
/// path nests containers (Docker in Docker), the innermost one wins. Returns None when the path
/// has neither a container nor a pod.
pub fn parse_cgroup_path(path: &str) -> Option<ContainerInfo> {
    let mut info = ContainerInfo::default();
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    // Index of the cgroupfs-driver pod directory, whose child is the container.
    let mut cgroupfs_pod_at: Option<usize> = None;
    for (i, &c) in comps.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|j| comps.get(j)).copied().unwrap_or("");

        // systemd driver: kubepods-<qos>.slice, kubepods-[<qos>-]pod<uid>.slice
        if let Some(rest) = c.strip_prefix("kubepods-").and_then(|r| r.strip_suffix(".slice")) {
            let (qos, pod) = match rest {
                "burstable" => (Some(QosClass::Burstable), None),
                "besteffort" => (Some(QosClass::BestEffort), None),
                _ => {
                    if let Some(uid) = rest.strip_prefix("burstable-pod") {
                        (Some(QosClass::Burstable), Some(uid))
                    } else if let Some(uid) = rest.strip_prefix("besteffort-pod") {
                        (Some(QosClass::BestEffort), Some(uid))
                    } else if let Some(uid) = rest.strip_prefix("pod") {
                        (Some(QosClass::Guaranteed), Some(uid))
                    } else {
                        (None, None)
                    }
                }
            };
            if let Some(uid) = pod.map(|u| u.replace('_', "-")) {
                if is_pod_uid(&uid) {
                    info.pod_uid = Some(uid);
                    info.qos = qos;
                }
            } else if qos.is_some() {
                info.qos = qos;
            }
            continue;
        }

        // cgroupfs driver: /kubepods[/<qos>]/pod<uid>/<container>
        if c == "kubepods" {
            continue;
        }
        if prev == "kubepods" && (c == "burstable" || c == "besteffort") {
            info.qos = Some(if c == "burstable" { QosClass::Burstable } else { QosClass::BestEffort });
            continue;
        }
        if let Some(uid) = c.strip_prefix("pod") {
            let under_kubepods = prev == "kubepods"
                || ((prev == "burstable" || prev == "besteffort")
                    && i >= 2
                    && comps.get(i - 2) == Some(&"kubepods"));
            if under_kubepods && is_pod_uid(uid) {
                info.pod_uid = Some(uid.to_owned());
                if prev == "kubepods" {
                    info.qos = Some(QosClass::Guaranteed);
                }
                cgroupfs_pod_at = Some(i);
                continue;
            }
        }

        if let Some((id, rt)) = scope_container(c) {
            info.id = Some(id.to_owned());
            info.runtime = Some(rt);
            continue;
        }
        if cgroupfs_pod_at.is_some_and(|p| p + 1 == i) && is_hex_id(c) {
            // The runtime is not in the name with the cgroupfs driver.
            info.id = Some(c.to_owned());
            info.runtime = None;
            continue;
        }
        match prev {
            "docker" if is_hex_id(c) => {
                info.id = Some(c.to_owned());
                info.runtime = Some(Runtime::Docker);
            }
            "containerd" if is_name_id(c) => {
                info.id = Some(c.to_owned());
                info.runtime = Some(Runtime::Containerd);
            }
            _ => {}
        }
    }
    (!info.is_empty()).then_some(info)
}

/// A resolved cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupInfo {
    pub id: u64,
    /// Path relative to the cgroup2 mount, starting with `/`.
    pub path: String,
    pub container: Option<ContainerInfo>,
}

/// Finds the cgroup2 mount point in a mountinfo file (`<proc>/self/mountinfo`).
pub fn find_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        if let Some(mp) = left.split_whitespace().nth(4) {
            return Some(PathBuf::from(unescape_mount(mp)));
        }
    }
    None
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = u32::from(b[i + 1] - b'0') * 64 + u32::from(b[i + 2] - b'0') * 8 + u32::from(b[i + 3] - b'0');
            out.push((v & 0xff) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup v2 path of a process, from `<proc>/<pid>/cgroup` (the `0::` line).
pub fn proc_cgroup_path(proc_root: &Path, pid: u32) -> Option<String> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_owned)
}

/// Counters of the resolver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub hits: u64,
    pub resolved_by_pid: u64,
    pub walks: u64,
    pub unresolved: u64,
    pub cache_resets: u64,
}

/// cgroup id → path and container context, cached per id.
#[derive(Debug)]
pub struct CgroupResolver {
    mount: Option<PathBuf>,
    proc_root: PathBuf,
    cache: FxHashMap<u64, Arc<CgroupInfo>>,
    max_entries: usize,
    walk_interval: Duration,
    last_walk: Option<Instant>,
    max_walk_depth: usize,
    stats: CgroupStats,
}

impl CgroupResolver {
    /// Finds the cgroup2 mount from `<proc_root>/self/mountinfo`.
    pub fn detect(proc_root: impl Into<PathBuf>) -> Self {
        let proc_root = proc_root.into();
        let mount = fs::read_to_string(proc_root.join("self/mountinfo"))
            .ok()
            .and_then(|m| find_cgroup2_mount(&m));
        Self::new(mount, proc_root)
    }

    /// With a known mount (None: only ids seen before can resolve, which is none).
    pub fn new(mount: Option<PathBuf>, proc_root: impl Into<PathBuf>) -> Self {
        Self {
            mount,
            proc_root: proc_root.into(),
            cache: FxHashMap::default(),
            max_entries: 16_384,
            walk_interval: Duration::from_secs(2),
            last_walk: None,
            max_walk_depth: 32,
            stats: CgroupStats::default(),
        }
    }

    /// Bounds the cache (it is cleared, and refilled on demand, when it would grow past this).
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// The least time between two walks of the whole hierarchy.
    pub fn with_walk_interval(mut self, d: Duration) -> Self {
        self.walk_interval = d;
        self
    }

    pub fn mount(&self) -> Option<&Path> {
        self.mount.as_deref()
    }

    pub fn stats(&self) -> CgroupStats {
        self.stats
    }

    pub fn cached(&self, cgroup_id: u64) -> Option<Arc<CgroupInfo>> {
        self.cache.get(&cgroup_id).cloned()
    }

    fn insert(&mut self, id: u64, path: String) -> Arc<CgroupInfo> {
        if self.cache.len() >= self.max_entries && !self.cache.contains_key(&id) {
            self.cache.clear();
            self.stats.cache_resets += 1;
        }
        let container = parse_cgroup_path(&path);
        let info = Arc::new(CgroupInfo { id, path, container });
        self.cache.insert(id, info.clone());
        info
    }

    fn inode_of(&self, rel: &str) -> Option<u64> {
        let mount = self.mount.as_ref()?;
        let full = mount.join(rel.trim_start_matches('/'));
        fs::metadata(full).ok().map(|m| m.ino())
    }

    /// Resolves `cgroup_id`; `pid` names a process believed to be in it (its /proc entry is
    /// read first, which is cheap). Falls back to a walk of the hierarchy at most every
    /// walk interval.
    pub fn resolve(&mut self, cgroup_id: u64, pid: Option<u32>) -> Option<Arc<CgroupInfo>> {
        if let Some(hit) = self.cache.get(&cgroup_id) {
            self.stats.hits += 1;
            return Some(hit.clone());
        }
        if let Some(pid) = pid {
            if let Some(path) = proc_cgroup_path(&self.proc_root, pid) {
                if self.inode_of(&path) == Some(cgroup_id) {
                    self.stats.resolved_by_pid += 1;
                    return Some(self.insert(cgroup_id, path));
                }
            }
        }
        let due = self.last_walk.is_none_or(|t| t.elapsed() >= self.walk_interval);
        if due && self.mount.is_some() {
            if let Some(found) = self.walk_for(Some(cgroup_id)) {
                return Some(found);
            }
        }
        self.stats.unresolved += 1;
        None
    }

    /// Walks the whole cgroup2 hierarchy and caches every directory (up to the cache bound).
    pub fn walk(&mut self) {
        self.walk_for(None);
    }

    /// Walks the hierarchy, caching directories while the cache has room, and returns `target`
    /// when found (it is cached in any case).
    fn walk_for(&mut self, target: Option<u64>) -> Option<Arc<CgroupInfo>> {
        const MAX_VISIT: usize = 1 << 18;
        self.last_walk = Some(Instant::now());
        self.stats.walks += 1;
        let mount = self.mount.clone()?;
        let mut stack: Vec<(PathBuf, String, usize)> = vec![(mount, String::from("/"), 0)];
        let mut room = self.max_entries.saturating_sub(self.cache.len());
        let mut found = None;
        let mut visited = 0;
        while let Some((dir, rel, depth)) = stack.pop() {
            visited += 1;
            if visited > MAX_VISIT {
                break;
            }
            let Ok(md) = fs::metadata(&dir) else { continue };
            let ino = md.ino();
            if target == Some(ino) {
                found = Some(self.insert(ino, rel.clone()));
                if room == 0 {
                    break;
                }
            } else if room > 0 && !self.cache.contains_key(&ino) {
                room -= 1;
                self.insert(ino, rel.clone());
            } else if room == 0 && (target.is_none() || found.is_some()) {
                break;
            }
            if depth >= self.max_walk_depth {
                continue;
            }
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for ent in rd.flatten() {
                if !ent.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = ent.file_name().to_string_lossy().into_owned();
                let child_rel = if rel == "/" { format!("/{name}") } else { format!("{rel}/{name}") };
                stack.push((ent.path(), child_rel, depth + 1));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4b3d9e0f0a1c2b3d4e5f60718293a4b5c6d7e8f9011223344556677889900aab";
    const POD: &str = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809";
    const POD_US: &str = "1a2b3c4d_5e6f_7081_92a3_b4c5d6e7f809";

    fn p(path: &str) -> ContainerInfo {
        parse_cgroup_path(path).unwrap_or_else(|| panic!("no context in {path}"))
    }

    #[test]
    fn docker_systemd_and_cgroupfs() {
        let i = p(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!((i.id.as_deref(), i.runtime, i.pod_uid), (Some(ID), Some(Runtime::Docker), None));
        let i = p(&format!("/docker/{ID}"));
        assert_eq!((i.id.as_deref(), i.runtime), (Some(ID), Some(Runtime::Docker)));
        // Docker in Docker: the innermost container wins
        let inner = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let i = p(&format!("/docker/{ID}/docker/{inner}"));
        assert_eq!(i.id.as_deref(), Some(inner));
    }

    #[test]
    fn containerd_forms() {
        let i = p(&format!("/system.slice/cri-containerd-{ID}.scope"));
        assert_eq!((i.id.as_deref(), i.runtime), (Some(ID), Some(Runtime::Containerd)));
        let i = p(&format!("/containerd/{ID}"));
        assert_eq!((i.id.as_deref(), i.runtime), (Some(ID), Some(Runtime::Containerd)));
        let i = p(&format!("/system.slice/nerdctl-{ID}.scope"));
        assert_eq!(i.runtime, Some(Runtime::Containerd));
    }

    #[test]
    fn crio_and_podman() {
        let i = p(&format!("/machine.slice/crio-{ID}.scope"));
        assert_eq!((i.id.as_deref(), i.runtime), (Some(ID), Some(Runtime::CriO)));
        let i = p(&format!("/machine.slice/libpod-{ID}.scope"));
        assert_eq!((i.id.as_deref(), i.runtime), (Some(ID), Some(Runtime::Podman)));
        let i = p(&format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"));
        assert_eq!((i.id.as_deref(), i.runtime), (Some(ID), Some(Runtime::Podman)));
        let i = p(&format!("/libpod_parent/libpod-{ID}"));
        assert_eq!(i.runtime, Some(Runtime::Podman));
        // conmon monitors are outside the container
        assert_eq!(parse_cgroup_path(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
        assert_eq!(parse_cgroup_path(&format!("/system.slice/crio-conmon-{ID}.scope")), None);
    }

    #[test]
    fn kubepods_systemd_driver_every_qos() {
        let base = "/kubepods.slice";
        let cases = [
            (
                format!("{base}/kubepods-burstable.slice/kubepods-burstable-pod{POD_US}.slice/cri-containerd-{ID}.scope"),
                QosClass::Burstable,
                Some(Runtime::Containerd),
            ),
            (
                format!("{base}/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_US}.slice/crio-{ID}.scope"),
                QosClass::BestEffort,
                Some(Runtime::CriO),
            ),
            (
                format!("{base}/kubepods-pod{POD_US}.slice/docker-{ID}.scope"),
                QosClass::Guaranteed,
                Some(Runtime::Docker),
            ),
        ];
        for (path, qos, rt) in cases {
            let i = p(&path);
            assert_eq!(i.pod_uid.as_deref(), Some(POD), "{path}");
            assert_eq!(i.qos, Some(qos), "{path}");
            assert_eq!(i.id.as_deref(), Some(ID), "{path}");
            assert_eq!(i.runtime, rt, "{path}");
        }
        // a pod-level cgroup (the sandbox's own processes) has a pod and no container
        let i = p(&format!("{base}/kubepods-burstable.slice/kubepods-burstable-pod{POD_US}.slice"));
        assert_eq!((i.pod_uid.as_deref(), i.id), (Some(POD), None));
    }

    #[test]
    fn kubepods_cgroupfs_driver_every_qos() {
        for (path, qos) in [
            (format!("/kubepods/burstable/pod{POD}/{ID}"), QosClass::Burstable),
            (format!("/kubepods/besteffort/pod{POD}/{ID}"), QosClass::BestEffort),
            (format!("/kubepods/pod{POD}/{ID}"), QosClass::Guaranteed),
        ] {
            let i = p(&path);
            assert_eq!(i.pod_uid.as_deref(), Some(POD), "{path}");
            assert_eq!(i.qos, Some(qos), "{path}");
            assert_eq!(i.id.as_deref(), Some(ID), "{path}");
            assert_eq!(i.runtime, None, "{path}");
        }
        let i = p(&format!("/kubepods/burstable/pod{POD}/crio-{ID}"));
        assert_eq!((i.id.as_deref(), i.runtime), (Some(ID), Some(Runtime::CriO)));
    }

    #[test]
    fn ordinary_paths_have_no_context() {
        for path in ["/", "", "/user.slice/user-0.slice/session-3.scope", "/system.slice/sshd.service",
            "/docker", "/docker/not-hex", "/kubepods", "/podman", "/x/pod123", "///", "/kubepods-.slice"]
        {
            assert_eq!(parse_cgroup_path(path), None, "{path}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 7;
        let alphabet = b"/-_.kubepodscri-containerdpod0123456789abcdef.slice.scope";
        for len in 0..400 {
            let s: String = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    alphabet[(x >> 16) as usize % alphabet.len()] as char
                })
                .collect();
            let _ = parse_cgroup_path(&s);
        }
    }

    #[test]
    fn mountinfo_finds_cgroup2() {
        let mi = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(find_cgroup2_mount(mi), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let mi = "41 31 0:38 / /mnt/with\\040space rw - cgroup2 none rw\n";
        assert_eq!(find_cgroup2_mount(mi), Some(PathBuf::from("/mnt/with space")));
        assert_eq!(find_cgroup2_mount("garbage\n1 2 3\n"), None);
    }

    #[test]
    fn resolver_walks_a_fake_hierarchy_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let rel = format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_US}.slice/cri-containerd-{ID}.scope");
        let full = dir.path().join(&rel);
        fs::create_dir_all(&full).unwrap();
        let ino = fs::metadata(&full).unwrap().ino();
        let mut r = CgroupResolver::new(Some(dir.path().to_owned()), "/nonexistent-proc");
        let info = r.resolve(ino, None).expect("found by walking");
        assert_eq!(info.path, format!("/{rel}"));
        let c = info.container.as_ref().unwrap();
        assert_eq!((c.id.as_deref(), c.pod_uid.as_deref(), c.qos), (Some(ID), Some(POD), Some(QosClass::BestEffort)));
        assert_eq!(r.stats().walks, 1);
        // second lookup is a cache hit, no walk
        assert!(r.resolve(ino, None).is_some());
        assert_eq!((r.stats().walks, r.stats().hits), (1, 1));
        // an unknown id inside the walk interval does not walk again
        assert!(r.resolve(u64::MAX, None).is_none());
        assert_eq!(r.stats().walks, 1);
        assert_eq!(r.stats().unresolved, 1);
    }

    #[test]
    fn resolver_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            fs::create_dir_all(dir.path().join(format!("g{i}"))).unwrap();
        }
        let mut r = CgroupResolver::new(Some(dir.path().to_owned()), "/proc")
            .with_max_entries(8)
            .with_walk_interval(Duration::ZERO);
        r.walk();
        assert!(r.cache.len() <= 8);
        for i in 0..20 {
            let ino = fs::metadata(dir.path().join(format!("g{i}"))).unwrap().ino();
            assert!(r.resolve(ino, None).is_some(), "g{i}");
            assert!(r.cache.len() <= 8);
        }
    }

    #[test]
    fn resolver_uses_proc_of_this_process() {
        // Only meaningful where cgroup v2 is mounted and this process's cgroup is visible.
        let mut r = CgroupResolver::detect("/proc");
        let Some(mount) = r.mount().map(Path::to_owned) else { return };
        let Some(path) = proc_cgroup_path(Path::new("/proc"), std::process::id()) else { return };
        let Ok(md) = fs::metadata(mount.join(path.trim_start_matches('/'))) else { return };
        let info = r.resolve(md.ino(), Some(std::process::id())).expect("resolved by pid");
        assert_eq!(info.path, path);
        assert_eq!(r.stats().resolved_by_pid, 1);
        assert_eq!(r.stats().walks, 0);
    }
}
