//! The exec block list: executables that are killed by the kernel at exec, before the new
//! image runs one instruction (`bpf_send_signal(SIGKILL)` at `sched_process_exec`; there is no
//! BPF-LSM on this kernel to deny the exec outright).
//!
//! - by path: the exact resolved path, compared in the kernel;
//! - by sha256: the kernel cannot hash, so a digest becomes inode keys. Files of that digest
//!   already in the hash cache are blocked at once; a file first hashed later (its first exec)
//!   is blocked from then on, and that first process is killed as soon as its hash is known.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use agent_common::{osprey_block_path, osprey_block_reason as reason, osprey_inode_key, OSPREY_BLOCK_PATH_MAX};
use aya::maps::{Array, HashMap, Map, MapData};
use serde::Serialize;
use thiserror::Error;

use crate::{process::hash::FileKey, sensor::error_chain};

#[derive(Debug, Error)]
pub enum BlockError {
    #[error("{0}: a blocked path must be absolute")]
    Relative(PathBuf),
    #[error("{0}: longer than {max} bytes, block it by sha256 instead", max = OSPREY_BLOCK_PATH_MAX - 1)]
    TooLong(PathBuf),
    #[error("{0:?} is not a sha256 (64 hex digits)")]
    BadHash(String),
    #[error("{0} is not blocked")]
    NotBlocked(String),
    #[error("block list map: {0}")]
    Map(String),
}

fn map_err(e: impl std::error::Error) -> BlockError {
    BlockError::Map(error_chain(&e))
}

/// What is blocked, for `osprey block --list` and status.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct BlockList {
    pub paths: Vec<PathBuf>,
    pub sha256: Vec<String>,
    /// Inode keys in the kernel for the blocked digests.
    pub inodes: usize,
}

pub struct ExecBlocker {
    inodes: HashMap<MapData, osprey_inode_key, u32>,
    paths: HashMap<MapData, osprey_block_path, u32>,
    state: Array<MapData, u32>,
    path_set: BTreeSet<PathBuf>,
    /// Blocked digests (lower-case hex) and the files blocked for each.
    hashes: BTreeMap<String, BTreeSet<(u64, u64)>>,
    /// The pinned copy that outlives the agent (enforce mode), see crate::protect::guard.
    guard: Option<crate::protect::guard::ExecGuard>,
    /// Where the guard goes at the first block (enforce mode) when none was adopted.
    guard_dir: Option<PathBuf>,
    /// Inodes a restarted agent found blocked in the guard for digests (which file belongs to
    /// which digest is not kept in bpffs).
    adopted_inodes: usize,
}

fn inode_key(dev: u64, ino: u64) -> osprey_inode_key {
    osprey_inode_key { ino, dev: dev as u32, _pad0: 0 }
}

fn path_key(p: &Path) -> Result<osprey_block_path, BlockError> {
    use std::os::unix::ffi::OsStrExt;
    let b = p.as_os_str().as_bytes();
    if !p.is_absolute() {
        return Err(BlockError::Relative(p.to_owned()));
    }
    if b.len() >= OSPREY_BLOCK_PATH_MAX as usize {
        return Err(BlockError::TooLong(p.to_owned()));
    }
    let mut k = osprey_block_path { path: [0; OSPREY_BLOCK_PATH_MAX as usize] };
    for (d, s) in k.path.iter_mut().zip(b) {
        *d = *s as _;
    }
    Ok(k)
}

/// Lower-case hex of a sha256, validated.
pub fn normalize_sha256(s: &str) -> Result<String, BlockError> {
    let h = s.trim().to_ascii_lowercase();
    if h.len() != 64 || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(BlockError::BadHash(s.to_owned()));
    }
    Ok(h)
}

impl ExecBlocker {
    /// From the sensor's `block_inodes`, `block_paths` and `block_state` maps.
    pub fn new(inodes: Map, paths: Map, state: Map) -> Result<Self, BlockError> {
        Ok(Self {
            inodes: HashMap::try_from(inodes).map_err(map_err)?,
            paths: HashMap::try_from(paths).map_err(map_err)?,
            state: Array::try_from(state).map_err(map_err)?,
            path_set: BTreeSet::new(),
            hashes: BTreeMap::new(),
            guard: None,
            guard_dir: None,
            adopted_inodes: 0,
        })
    }

    /// Keeps the block list in the pinned guard under `dir` too: adopts what a previous run left
    /// there now; `create` (enforce mode): sets the guard up at the first block otherwise.
    pub fn with_guard(mut self, dir: &Path, create: bool) -> Self {
        if create {
            self.guard_dir = Some(dir.to_owned());
        }
        if !crate::protect::guard::link_pin(dir).exists() {
            return self;
        }
        self.open_guard(dir);
        self
    }

    /// Sets the guard up before the first block, if it is wanted and not there yet.
    fn ensure_guard(&mut self) {
        if self.guard.is_none() {
            if let Some(dir) = self.guard_dir.take() {
                self.open_guard(&dir);
            }
        }
    }

    fn open_guard(&mut self, dir: &Path) {
        let guard = match crate::protect::guard::ExecGuard::open(dir) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "exec block guard unavailable: blocks end with the agent");
                return;
            }
        };
        let saved = guard.saved();
        for (p, _) in &saved.paths {
            let bytes: Vec<u8> = p.path.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            let path = PathBuf::from(String::from_utf8_lossy(&bytes).into_owned());
            if self.paths.insert(*p, reason::OSPREY_BLOCK_BY_PATH, 0).is_ok() {
                self.path_set.insert(path);
            }
        }
        let _ = self.state.set(0, self.path_set.len() as u32, 0);
        for h in &saved.hashes {
            self.hashes.entry(crate::protect::guard::digest_hex(h)).or_default();
        }
        for (k, why) in &saved.inodes {
            if *why == reason::OSPREY_BLOCK_BY_HASH && self.inodes.insert(*k, *why, 0).is_ok() {
                self.adopted_inodes += 1;
            }
        }
        if guard.adopted {
            tracing::info!(paths = saved.paths.len(), sha256 = saved.hashes.len(), inodes = saved.inodes.len(), "exec block list adopted from bpffs");
        }
        self.guard = Some(guard);
    }

    /// Blocks the exact path (symlinks are resolved when the file exists: the kernel compares
    /// the path of the image it maps).
    pub fn block_path(&mut self, path: &Path) -> Result<PathBuf, BlockError> {
        let p = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let key = path_key(&p)?;
        self.ensure_guard();
        self.paths.insert(key, reason::OSPREY_BLOCK_BY_PATH, 0).map_err(map_err)?;
        self.path_set.insert(p.clone());
        if let Some(g) = self.guard.as_mut() {
            // The guard matches inodes: the file the path names now.
            let file = file_identity(&p).map(|(dev, ino)| inode_key(dev, ino)).unwrap_or(osprey_inode_key { ino: 0, dev: 0, _pad0: 0 });
            if file.ino != 0 {
                g.add_inode(file, reason::OSPREY_BLOCK_BY_PATH).map_err(BlockError::Map)?;
            }
            g.add_path(key, file).map_err(BlockError::Map)?;
        }
        self.state.set(0, self.path_set.len() as u32, 0).map_err(map_err)?;
        Ok(p)
    }

    pub fn unblock_path(&mut self, path: &Path) -> Result<PathBuf, BlockError> {
        let p = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        if !self.path_set.remove(&p) {
            return Err(BlockError::NotBlocked(p.display().to_string()));
        }
        let key = path_key(&p)?;
        let _ = self.paths.remove(&key);
        if let Some(g) = self.guard.as_mut() {
            if let Some((_, file)) = g.saved().paths.into_iter().find(|(k, _)| k.path == key.path) {
                g.remove_inode(&file);
            }
            g.remove_path(&key);
        }
        self.state.set(0, self.path_set.len() as u32, 0).map_err(map_err)?;
        Ok(p)
    }

    /// Blocks a digest; `known` are files already hashed to it (the hash cache). Returns how many
    /// files were blocked at once.
    pub fn block_hash(&mut self, sha256: &str, known: &[FileKey]) -> Result<usize, BlockError> {
        let h = normalize_sha256(sha256)?;
        self.ensure_guard();
        self.hashes.entry(h.clone()).or_default();
        if let Some(g) = self.guard.as_mut() {
            g.add_hash(crate::protect::guard::digest_bytes(&h)).map_err(BlockError::Map)?;
        }
        let mut n = 0;
        for f in known {
            if self.add_inode(&h, f.dev, f.ino)? {
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn unblock_hash(&mut self, sha256: &str) -> Result<String, BlockError> {
        let h = normalize_sha256(sha256)?;
        let files = self.hashes.remove(&h).ok_or_else(|| BlockError::NotBlocked(h.clone()))?;
        for (dev, ino) in files {
            let _ = self.inodes.remove(&inode_key(dev, ino));
            if let Some(g) = self.guard.as_mut() {
                g.remove_inode(&inode_key(dev, ino));
            }
        }
        if let Some(g) = self.guard.as_mut() {
            g.remove_hash(&crate::protect::guard::digest_bytes(&h));
        }
        Ok(h)
    }

    fn add_inode(&mut self, h: &str, dev: u64, ino: u64) -> Result<bool, BlockError> {
        let files = self.hashes.get_mut(h).expect("digest registered");
        if !files.insert((dev, ino)) {
            return Ok(false);
        }
        self.inodes.insert(inode_key(dev, ino), reason::OSPREY_BLOCK_BY_HASH, 0).map_err(map_err)?;
        if let Some(g) = self.guard.as_mut() {
            g.add_inode(inode_key(dev, ino), reason::OSPREY_BLOCK_BY_HASH).map_err(BlockError::Map)?;
        }
        Ok(true)
    }

    /// A file was hashed: if its digest is blocked, its inode is blocked from now on. Returns
    /// whether the digest is blocked (the process that exec'd it should be killed).
    pub fn on_hashed(&mut self, file: &FileKey, sha256: &str) -> bool {
        if !self.hashes.contains_key(sha256) {
            return false;
        }
        if let Err(e) = self.add_inode(sha256, file.dev, file.ino) {
            tracing::warn!(error = %e, sha256, "could not add a file to the exec block list");
        }
        true
    }

    pub fn is_hash_blocked(&self, sha256: &str) -> bool {
        self.hashes.contains_key(sha256)
    }

    pub fn list(&self) -> BlockList {
        BlockList {
            paths: self.path_set.iter().cloned().collect(),
            sha256: self.hashes.keys().cloned().collect(),
            inodes: self.hashes.values().map(BTreeSet::len).sum::<usize>() + self.adopted_inodes,
        }
    }
}

/// The (kernel dev, inode) of a file, as exec records carry them.
pub fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((crate::process::hash::kernel_dev(m.dev()), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_hashes_are_validated() {
        assert!(matches!(path_key(Path::new("bin/x")), Err(BlockError::Relative(_))));
        let long = PathBuf::from(format!("/{}", "a".repeat(300)));
        assert!(matches!(path_key(&long), Err(BlockError::TooLong(_))));
        let k = path_key(Path::new("/usr/bin/nc")).unwrap();
        assert_eq!(&k.path[..11].iter().map(|&c| c as u8).collect::<Vec<_>>(), b"/usr/bin/nc");
        assert!(k.path[11..].iter().all(|&c| c == 0), "NUL padded: the kernel builds the same key");
        assert!(normalize_sha256("xyz").is_err());
        assert_eq!(normalize_sha256(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
    }
}
