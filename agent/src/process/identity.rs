//! Stable identities. A PID is reused; `process.entity_id` is not: it hashes the boot id, the
//! pid and the process start time, in the clock-tick resolution /proc exposes, so an id computed
//! from a kernel record and one computed from /proc/PID/stat agree.

use xxhash_rust::xxh3::xxh3_128;

/// Facts about this host, read once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Host {
    pub hostname: String,
    /// /etc/machine-id when present, else the boot id.
    pub id: String,
    #[serde(skip)]
    pub boot_id: String,
}

impl Host {
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
        let boot_id = read("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".into());
        let id = read("/etc/machine-id").filter(|s| !s.is_empty()).unwrap_or_else(|| boot_id.clone());
        Self { hostname, id, boot_id }
    }
}

/// Computes entity ids for this boot.
#[derive(Debug, Clone)]
pub struct EntityIds {
    boot_id: String,
    ns_per_tick: u64,
}

/// An entity id's 32 lower-case hex digits, on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityIdText([u8; 32]);

impl EntityIdText {
    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl EntityIds {
    pub fn new(boot_id: &str) -> Self {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as u64 } else { 100 };
        Self { boot_id: boot_id.to_owned(), ns_per_tick: 1_000_000_000 / hz }
    }

    /// Start time in clock ticks since boot, as field 22 of /proc/PID/stat reports it.
    pub fn ticks(&self, start_ns: u64) -> u64 {
        start_ns / self.ns_per_tick
    }

    /// The entity id of process `pid` that started `start_ns` after boot.
    pub fn entity_id(&self, pid: u32, start_ns: u64) -> String {
        self.entity_id_from_ticks(pid, self.ticks(start_ns))
    }

    /// The same from a /proc start time in clock ticks: the 128-bit xxh3 of
    /// `"{boot_id}:{pid}:{ticks}"` in lower-case hex (32 characters), built without `fmt`: it
    /// is asked for on every event whose process the table does not name.
    pub fn entity_id_from_ticks(&self, pid: u32, ticks: u64) -> String {
        self.text_from_ticks(pid, ticks).as_str().to_owned()
    }

    /// [`EntityIds::entity_id`] on the stack.
    pub fn text(&self, pid: u32, start_ns: u64) -> EntityIdText {
        self.text_from_ticks(pid, self.ticks(start_ns))
    }

    /// [`EntityIds::entity_id_from_ticks`] on the stack: the text hashed is built in a stack
    /// buffer too (a boot id is 36 bytes), in a vector only for a boot id of over 64.
    pub fn text_from_ticks(&self, pid: u32, ticks: u64) -> EntityIdText {
        let (mut pid_digits, mut tick_digits) = (itoa::Buffer::new(), itoa::Buffer::new());
        let parts = [self.boot_id.as_bytes(), b":", pid_digits.format(pid).as_bytes(), b":", tick_digits.format(ticks).as_bytes()];
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut stack = [0u8; 96];
        let mut heap = Vec::new();
        let key: &mut [u8] = match stack.get_mut(..len) {
            Some(k) => k,
            None => {
                heap.resize(len, 0);
                &mut heap
            }
        };
        let mut at = 0;
        for p in parts {
            key[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        let mut hex = [0u8; 32];
        super::hash::hex_lower(&xxh3_128(key).to_be_bytes(), &mut hex);
        EntityIdText(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_process_same_id_and_reuse_differs() {
        let ids = EntityIds { boot_id: "b".into(), ns_per_tick: 10_000_000 };
        let a = ids.entity_id(100, 5_000_000_000);
        assert_eq!(a, ids.entity_id(100, 5_009_999_999), "same tick");
        assert_eq!(a, ids.entity_id_from_ticks(100, 500), "matches /proc ticks");
        assert_ne!(a, ids.entity_id(100, 6_000_000_000), "pid reused later");
        assert_ne!(a, ids.entity_id(101, 5_000_000_000));
        assert_ne!(a, EntityIds { boot_id: "c".into(), ns_per_tick: 10_000_000 }.entity_id(100, 5_000_000_000));
        assert_eq!(a.len(), 32);
        // The text hashed, and its hex, as the format of earlier versions had them.
        assert_eq!(a, format!("{:032x}", xxh3_128(b"b:100:500")));
        assert_eq!(ids.entity_id_from_ticks(u32::MAX, 0), format!("{:032x}", xxh3_128(format!("b:{}:0", u32::MAX).as_bytes())));
        assert_eq!(ids.entity_id_from_ticks(u32::MAX, u64::MAX), format!("{:032x}", xxh3_128(format!("b:{}:{}", u32::MAX, u64::MAX).as_bytes())));
        // A boot id too long for the stack buffer.
        let long = "x".repeat(100);
        let ids = EntityIds { boot_id: long.clone(), ns_per_tick: 10_000_000 };
        assert_eq!(ids.entity_id_from_ticks(7, 9), format!("{:032x}", xxh3_128(format!("{long}:7:9").as_bytes())));
        assert_eq!(ids.text(7, 90_000_000).as_str(), ids.entity_id_from_ticks(7, 9));
    }
}
