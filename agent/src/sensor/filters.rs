//! In-kernel filters set from user space: the inode watch list (reads of watched files and of
//! everything below watched directories) and the path-prefix trie (write include/exclude).

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use agent_common::{osprey_inode_key, osprey_watch_kind as wk};
use aya::maps::{lpm_trie::Key, HashMap, LpmTrie, MapData, MapError};
use tracing::debug;

/// Bytes of a path the prefix trie compares (PREFIX_MAX in common.h).
pub const PREFIX_MAX: usize = 256;

/// The kernel's internal dev_t (MAJOR << 20 | MINOR) of a userspace st_dev.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let (major, minor) = (libc::major(st_dev), libc::minor(st_dev));
    (major << 20) | minor
}

pub fn inode_key(path: &Path) -> std::io::Result<osprey_inode_key> {
    let m = std::fs::metadata(path)?;
    Ok(osprey_inode_key { ino: m.ino(), dev: kernel_dev(m.dev()), _pad0: 0 })
}

/// Expands `~/` to every home directory in /etc/passwd (and root's), dropping paths that do not
/// exist now.
pub fn expand_homes(paths: &[String], passwd: &str) -> Vec<PathBuf> {
    let homes: Vec<&str> = passwd
        .lines()
        .filter_map(|l| l.split(':').nth(5))
        .filter(|h| h.starts_with('/') && *h != "/" && *h != "/nonexistent")
        .collect();
    let mut out = Vec::new();
    for p in paths {
        match p.strip_prefix("~/") {
            Some(rest) => out.extend(homes.iter().map(|h| Path::new(h).join(rest))),
            None => out.push(PathBuf::from(p)),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Puts every existing path of `paths` into the inode watch map with `kind`; returns the keys
/// it put there.
pub fn watch_inodes(map: &mut HashMap<&mut MapData, osprey_inode_key, u32>, paths: &[PathBuf], kind: u32) -> Result<Vec<osprey_inode_key>, MapError> {
    let mut keys = Vec::new();
    for p in paths {
        let Ok(key) = inode_key(p) else {
            debug!(path = %p.display(), "watch path does not exist (yet)");
            continue;
        };
        let prev = map.get(&key, 0).unwrap_or(0);
        map.insert(key, prev | kind, 0)?;
        keys.push(key);
    }
    Ok(keys)
}

/// The trie key of a path prefix.
pub fn prefix_key(prefix: &str) -> Key<[u8; PREFIX_MAX]> {
    let mut data = [0u8; PREFIX_MAX];
    let bytes = prefix.as_bytes();
    let n = bytes.len().min(PREFIX_MAX);
    data[..n].copy_from_slice(&bytes[..n]);
    Key::new((n * 8) as u32, data)
}

/// Fills the prefix trie: excludes and includes for writes.
pub fn set_prefixes(
    trie: &mut LpmTrie<&mut MapData, [u8; PREFIX_MAX], u32>,
    exclude: &[String],
    include: &[String],
) -> Result<(), MapError> {
    for (list, kind) in [(exclude, wk::OSPREY_WATCH_WRITE_EXCLUDE), (include, wk::OSPREY_WATCH_WRITE_INCLUDE)] {
        for p in list {
            trie.insert(&prefix_key(p), kind, 0)?;
        }
    }
    Ok(())
}

/// Adds self-protected prefixes to the trie. The longest prefix wins there, so an exclude or
/// include entry below a protected path is marked protected as well.
pub fn protect_prefixes(trie: &mut LpmTrie<&mut MapData, [u8; PREFIX_MAX], u32>, paths: &[String]) -> Result<(), MapError> {
    let below: Vec<(Key<[u8; PREFIX_MAX]>, u32)> = trie
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, _)| {
            let p = &k.data()[..(k.prefix_len() / 8) as usize];
            paths.iter().any(|pre| p.starts_with(pre.as_bytes()))
        })
        .collect();
    for (k, kind) in below {
        trie.insert(&k, kind | wk::OSPREY_WATCH_PROTECT, 0)?;
    }
    for p in paths {
        trie.insert(&prefix_key(p), wk::OSPREY_WATCH_PROTECT, 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_expand_and_dedup() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\nann:x:1000:1000::/home/ann:/bin/sh\n";
        let got = expand_homes(&["~/.ssh".into(), "/etc/shadow".into(), "/etc/shadow".into()], passwd);
        assert_eq!(got, [PathBuf::from("/etc/shadow"), "/home/ann/.ssh".into(), "/root/.ssh".into()]);
    }

    #[test]
    fn dev_encoding_matches_the_kernel() {
        // makedev(8, 1) in userspace → MKDEV(8, 1) = 8 << 20 | 1 in the kernel.
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    }

    #[test]
    fn prefix_keys_count_bits() {
        let k = prefix_key("/etc/");
        assert_eq!(k.prefix_len(), 40);
        assert_eq!(&k.data()[..5], b"/etc/");
        assert_eq!(prefix_key(&"x".repeat(400)).prefix_len(), (PREFIX_MAX * 8) as u32);
    }
}
