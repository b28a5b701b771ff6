//! Osprey's kernel programs, compiled from `src/*.bpf.c` by build.rs and embedded here.

/// The BPF object (ELF with BTF and CO-RE relocations), aligned for aya's parser.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/osprey.bpf.o"));

/// Where a program attaches, from its ELF section name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `tp_btf/NAME`: a BTF-typed raw tracepoint.
    TpBtf(&'static str),
    /// `tracepoint/CATEGORY/NAME`: a classic tracepoint (tracefs).
    TracePoint(&'static str, &'static str),
}

/// A program in [`OBJECT`] and one of its hooks (a program may have several: ATTACH_ALSO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub hook: Hook,
}

impl Program {
    /// The domain a program belongs to, from its name's prefix: `proc`, `file`, `cred`, `sys`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_the_process_hooks() {
        let find = |n: &str| PROGRAMS.iter().find(|p| p.name == n).map(|p| p.hook);
        assert_eq!(find("proc_exec"), Some(Hook::TpBtf("sched_process_exec")));
        assert_eq!(find("file_openat"), Some(Hook::TracePoint("syscalls", "sys_enter_openat")));
        assert!(PROGRAMS.len() > 40, "{}", PROGRAMS.len());
        // one program, several hooks
        let path_hooks: Vec<Hook> = PROGRAMS.iter().filter(|p| p.name == "file_path_x").map(|p| p.hook).collect();
        assert!(path_hooks.contains(&Hook::TracePoint("syscalls", "sys_exit_renameat2")), "{path_hooks:?}");
        assert!(path_hooks.len() >= 20, "{path_hooks:?}");
        for p in PROGRAMS {
            assert!(["proc", "file", "cred", "sys"].contains(&p.domain()), "{} has no known domain", p.name);
        }
    }
}
