//! Osprey's kernel programs, compiled from `src/*.bpf.c` by build.rs and embedded here.

/// The BPF object (ELF with BTF and CO-RE relocations), aligned for aya's parser.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/osprey.bpf.o"));

/// Program names in [`OBJECT`], with the tracepoint each attaches to (tp_btf).
pub const PROCESS_PROGRAMS: &[(&str, &str)] = &[
    ("osprey_prepare_exec", "sched_prepare_exec"),
    ("osprey_exec", "sched_process_exec"),
    ("osprey_fork", "sched_process_fork"),
    ("osprey_exit", "sched_process_exit"),
];
