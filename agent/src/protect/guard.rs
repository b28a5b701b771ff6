//! The exec block list that outlives the agent (agent-ebpf/src/block.bpf.c): program
//! `blk_exec` on `sched_process_exec` with its link pinned at `<bpffs dir>/exec_guard_link`,
//! and the block list in maps pinned by name in the same directory. While the agent runs, the
//! sensor's own check reports blocked execs; while it is down (kill -9, crash, restart) the
//! guard still kills them. A restarted agent adopts the pins (no second link) and reloads the
//! block list from them.

use std::path::{Path, PathBuf};

use agent_common::{osprey_block_path, osprey_inode_key};
use aya::{
    maps::{HashMap, MapData},
    programs::{links::FdLink, BtfTracePoint},
    Btf, Ebpf, EbpfLoader,
};
use tracing::info;

use crate::sensor::error_chain;

pub struct ExecGuard {
    _ebpf: Ebpf,
    inodes: HashMap<MapData, osprey_inode_key, u32>,
    paths: HashMap<MapData, osprey_block_path, osprey_inode_key>,
    hashes: HashMap<MapData, [u8; 32], u32>,
    /// Whether this start found the guard already in place.
    pub adopted: bool,
}

fn err(e: impl std::error::Error) -> String {
    error_chain(&e)
}

pub fn link_pin(dir: &Path) -> PathBuf {
    dir.join("exec_guard_link")
}

/// What the pinned block list holds.
#[derive(Debug, Default)]
pub struct Saved {
    pub paths: Vec<(osprey_block_path, osprey_inode_key)>,
    pub hashes: Vec<[u8; 32]>,
    pub inodes: Vec<(osprey_inode_key, u32)>,
}

impl ExecGuard {
    /// Opens the pinned guard in `dir`, creating (loading, attaching, pinning) it if absent.
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut ebpf = EbpfLoader::new().default_map_pin_directory(dir).load(agent_ebpf::BLOCK_OBJECT).map_err(err)?;
        let pin = link_pin(dir);
        let adopted = pin.exists();
        if !adopted {
            let btf = Btf::from_sys_fs().map_err(err)?;
            let p: &mut BtfTracePoint = ebpf.program_mut("blk_exec").ok_or("blk_exec missing")?.try_into().map_err(err)?;
            p.load("sched_process_exec", &btf).map_err(err)?;
            let id = p.attach().map_err(err)?;
            let link: FdLink = p.take_link(id).map_err(err)?.into();
            link.pin(&pin).map_err(err)?;
            info!(pin = %pin.display(), "exec block guard attached and pinned");
        } else {
            info!(pin = %pin.display(), "exec block guard adopted");
        }
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or_else(|| format!("{name} missing"));
        let inodes = HashMap::try_from(take("blk_inodes")?).map_err(err)?;
        let paths = HashMap::try_from(take("blk_paths")?).map_err(err)?;
        let hashes = HashMap::try_from(take("blk_hashes")?).map_err(err)?;
        Ok(Self { _ebpf: ebpf, inodes, paths, hashes, adopted })
    }

    pub fn saved(&self) -> Saved {
        Saved {
            paths: self.paths.iter().filter_map(Result::ok).collect(),
            hashes: self.hashes.keys().filter_map(Result::ok).collect(),
            inodes: self.inodes.iter().filter_map(Result::ok).collect(),
        }
    }

    pub fn add_inode(&mut self, k: osprey_inode_key, reason: u32) -> Result<(), String> {
        self.inodes.insert(k, reason, 0).map_err(err)
    }

    pub fn remove_inode(&mut self, k: &osprey_inode_key) {
        let _ = self.inodes.remove(k);
    }

    pub fn add_path(&mut self, p: osprey_block_path, file: osprey_inode_key) -> Result<(), String> {
        self.paths.insert(p, file, 0).map_err(err)
    }

    pub fn remove_path(&mut self, p: &osprey_block_path) {
        let _ = self.paths.remove(p);
    }

    pub fn add_hash(&mut self, h: [u8; 32]) -> Result<(), String> {
        self.hashes.insert(h, 1, 0).map_err(err)
    }

    pub fn remove_hash(&mut self, h: &[u8; 32]) {
        let _ = self.hashes.remove(h);
    }
}

/// sha256 hex → bytes (the digest was validated by the caller).
pub fn digest_bytes(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    out
}

pub fn digest_hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
