//! Osprey's kernel programs, compiled from `src/*.bpf.c` by build.rs and embedded here.

/// The BPF object (ELF with BTF and CO-RE relocations), aligned for aya's parser.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/osprey.bpf.o"));

/// Network isolation (`cgroup_skb` ingress/egress programs `iso_ingress`, `iso_egress` and
/// their maps `iso_allow`, `iso_allow_n`, `iso_dropped`, pinned by name), loaded on demand.
pub static ISOLATE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/isolate.bpf.o"));

/// The exec block guard (`tp_btf/sched_process_exec` program `blk_exec`, maps `blk_inodes`,
/// `blk_paths`, `blk_hashes` pinned by name): the block list enforced while the agent is down.
pub static BLOCK_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/block.bpf.o"));
/// Prevention with BPF-LSM: programs `lsm_task_kill`, `lsm_ptrace`, `lsm_bpf` (hooks
/// `task_kill`, `ptrace_access_check`, `bpf`), maps `protected_tgids`, `protected_ids`, the
/// ring buffer `denials` (struct osprey_denial) and `denials_lost`; plus the empty feature probes
/// `probe_kprobe` and `probe_fentry` (both on `security_task_kill`).
pub static LSM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lsm.bpf.o"));

/// Where a program attaches, from its ELF section name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `tp_btf/NAME`: a BTF-typed raw tracepoint.
    TpBtf(&'static str),
    /// `tracepoint/CATEGORY/NAME`: a classic tracepoint (tracefs).
    TracePoint(&'static str, &'static str),
    /// `cgroup_skb/ingress|egress`: every packet of the cgroup (attached to the root cgroup v2).
    CgroupSkb(&'static str),
    /// `cgroup/connect4|connect6|sendmsg4|sendmsg6|recvmsg4|recvmsg6`: socket address calls.
    CgroupSockAddr(&'static str),
}

/// A program in [`OBJECT`] and one of its hooks (a program may have several: ATTACH_ALSO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub hook: Hook,
}

impl Program {
    /// The domain a program belongs to, from its name's prefix: `proc`, `file`, `cred`, `sys`, `net`, `prot` (self-protection).
    pub fn domain(&self) -> &'static str {
        self.name.split('_').next().unwrap_or(self.name)
    }

    /// The name as the kernel shows it (BPF_OBJ_NAME_LEN: 15 bytes).
    pub fn kernel_name(&self) -> &'static str {
        &self.name[..self.name.len().min(15)]
    }
}

/// Every program in [`OBJECT`], read from the object's sections at build time.
pub const PROGRAMS: &[Program] = include!(concat!(env!("OUT_DIR"), "/programs.rs"));

/// The floor for benchmarks: the programs of [`OBJECT`] under the same names, on the same hooks,
/// with empty bodies (`return 0;`). Generated from [`OBJECT`] by build.rs; it has the shared maps
/// (rings, counters, settings) but nothing ever writes to them.
pub static BARE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/osprey_bare.bpf.o"));

/// Every program in [`BARE_OBJECT`]: the same table as [`PROGRAMS`].
pub const BARE_PROGRAMS: &[Program] = include!(concat!(env!("OUT_DIR"), "/bare_programs.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_the_process_hooks() {
        let find = |n: &str| PROGRAMS.iter().find(|p| p.name == n).map(|p| p.hook);
        assert_eq!(find("proc_exec"), Some(Hook::TpBtf("sched_process_exec")));
        let has = |n: &str, h: Hook| PROGRAMS.iter().any(|p| p.name == n && p.hook == h);
        assert!(has("file_write", Hook::TracePoint("syscalls", "sys_enter_write")));
        // opens and name-based operations: one exit program, no enter program
        assert!(has("file_open_x", Hook::TracePoint("syscalls", "sys_exit_openat")));
        assert!(!PROGRAMS.iter().any(|p| p.name.starts_with("file_") && matches!(p.hook, Hook::TracePoint(_, h) if h.starts_with("sys_enter_open") || h == "sys_enter_chmod")));
        assert!(PROGRAMS.len() > 40, "{}", PROGRAMS.len());
        // one program, several hooks
        let path_hooks: Vec<Hook> = PROGRAMS.iter().filter(|p| p.name == "file_path_x").map(|p| p.hook).collect();
        assert!(path_hooks.contains(&Hook::TracePoint("syscalls", "sys_exit_renameat2")), "{path_hooks:?}");
        assert!(path_hooks.len() >= 20, "{path_hooks:?}");
        for p in PROGRAMS {
            assert!(["proc", "file", "cred", "sys", "net", "prot"].contains(&p.domain()), "{} has no known domain", p.name);
        }
    }

    #[test]
    fn the_bare_object_has_the_same_programs_on_the_same_hooks() {
        use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
        assert_eq!(BARE_PROGRAMS, PROGRAMS);
        // (symbol, section) of every program, and the maps, in each object
        let parts = |bytes: &[u8]| {
            let file = object::File::parse(bytes).expect("BPF object parses");
            let mut progs = Vec::new();
            let mut maps = Vec::new();
            for sym in file.symbols() {
                let Some(section) = sym.section_index().and_then(|i| file.section_by_index(i).ok()) else { continue };
                let section = section.name().unwrap().to_string();
                let name = sym.name().unwrap().to_string();
                // Programs only: a global function in .text (exec_cred_flags) is a subprogram
                // the verifier checks on its own, with no hook; the bare object needs none.
                if sym.kind() == SymbolKind::Text && sym.is_global() && section != ".text" {
                    progs.push((name, section));
                } else if section == ".maps" {
                    maps.push(name);
                }
            }
            progs.sort();
            (progs, maps)
        };
        let (real, real_maps) = parts(OBJECT);
        let (bare, bare_maps) = parts(BARE_OBJECT);
        assert_eq!(bare, real);
        for map in ["rings", "loss", "filtered", "config", "scratch"] {
            assert!(real_maps.iter().any(|m| m == map) && bare_maps.iter().any(|m| m == map), "map {map}: {bare_maps:?}");
        }
    }
}
