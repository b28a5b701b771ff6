//! ECS form of credential-change and system records.

use agent_common::{osprey_cred_op as co, osprey_system_op as so};
use serde::Serialize;

use crate::{
    decode::{Cred, System},
    process::EntityIds,
};

#[derive(Serialize)]
pub struct Id {
    pub id: String,
}

/// ECS `user.*` of a credential change: who it was, who it became.
#[derive(Serialize)]
pub struct UserDoc {
    pub id: String,
    pub effective: Id,
    pub changes: Id,
    pub group: Id,
}

#[derive(Serialize)]
pub struct Ids {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    pub cap_effective: String,
}

#[derive(Serialize)]
pub struct CredMeta {
    pub op: &'static str,
    pub before: Ids,
    pub after: Ids,
    pub args: [u64; 3],
    pub became_root: bool,
    pub caps_gained: bool,
}

pub fn cred_op(op: u32) -> &'static str {
    match op {
        co::OSPREY_CRED_SETUID => "setuid",
        co::OSPREY_CRED_SETGID => "setgid",
        co::OSPREY_CRED_SETREUID => "setreuid",
        co::OSPREY_CRED_SETREGID => "setregid",
        co::OSPREY_CRED_SETRESUID => "setresuid",
        co::OSPREY_CRED_SETRESGID => "setresgid",
        co::OSPREY_CRED_SETFSUID => "setfsuid",
        co::OSPREY_CRED_SETFSGID => "setfsgid",
        co::OSPREY_CRED_CAPSET => "capset",
        co::OSPREY_CRED_UNEXPECTED_ROOT => "unexpected_root",
        _ => "unknown",
    }
}

fn ids(u: [u32; 4], g: [u32; 4], caps: u64) -> Ids {
    Ids {
        uid: u[0],
        euid: u[1],
        suid: u[2],
        fsuid: u[3],
        gid: g[0],
        egid: g[1],
        sgid: g[2],
        fsgid: g[3],
        cap_effective: format!("{caps:#x}"),
    }
}

pub fn cred_doc(c: &Cred) -> (UserDoc, CredMeta) {
    let user = UserDoc {
        id: c.old_uids[0].to_string(),
        effective: Id { id: c.new_uids[1].to_string() },
        changes: Id { id: c.new_uids[0].to_string() },
        group: Id { id: c.new_gids[0].to_string() },
    };
    let meta = CredMeta {
        op: cred_op(c.op),
        before: ids(c.old_uids, c.old_gids, c.old_caps),
        after: ids(c.new_uids, c.new_gids, c.new_caps),
        args: c.args,
        became_root: c.old_uids[1] != 0 && c.new_uids[1] == 0,
        caps_gained: c.new_caps & !c.old_caps != 0,
    };
    (user, meta)
}

#[derive(Serialize)]
pub struct Target {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
}

#[derive(Serialize)]
pub struct SystemMeta<'a> {
    pub op: &'static str,
    pub result: i32,
    pub args: [u64; 3],
    #[serde(skip_serializing_if = "str::is_empty")]
    pub text: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub text2: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub text3: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

/// (category, type, action) of a system operation.
pub fn classify(op: u32) -> (&'static str, &'static str, &'static str) {
    match op {
        so::OSPREY_SYS_MODULE_LOAD => ("driver", "start", "module_load"),
        so::OSPREY_SYS_BPF_PROG_LOAD => ("process", "info", "bpf_prog_load"),
        so::OSPREY_SYS_BPF_MAP_CREATE => ("process", "info", "bpf_map_create"),
        so::OSPREY_SYS_PTRACE => ("process", "access", "ptrace"),
        so::OSPREY_SYS_MEMFD_CREATE => ("process", "creation", "memfd_create"),
        so::OSPREY_SYS_MPROTECT_EXEC => ("process", "change", "mprotect_exec"),
        so::OSPREY_SYS_MMAP_EXEC => ("process", "change", "mmap_exec"),
        so::OSPREY_SYS_MOUNT => ("configuration", "change", "mount"),
        so::OSPREY_SYS_UMOUNT => ("configuration", "change", "umount"),
        so::OSPREY_SYS_UNSHARE => ("process", "change", "unshare"),
        so::OSPREY_SYS_SETNS => ("process", "change", "setns"),
        so::OSPREY_SYS_SIGNAL => ("process", "info", "signal"),
        so::OSPREY_SYS_TAMPER_SIGNAL => ("process", "info", "tamper_signal"),
        so::OSPREY_SYS_TAMPER_BPF => ("process", "info", "tamper_bpf"),
        so::OSPREY_SYS_BPF_ATTACH => ("process", "info", "bpf_attach"),
        so::OSPREY_SYS_TAMPER_PTRACE => ("process", "access", "tamper_ptrace"),
        _ => ("process", "info", "unknown"),
    }
}

pub fn system_doc<'a>(y: &'a System, ids: &EntityIds) -> SystemMeta<'a> {
    let target = (y.target_pid != 0).then(|| Target {
        pid: y.target_pid,
        entity_id: (y.target_start_ns != 0).then(|| ids.entity_id(y.target_pid, y.target_start_ns)),
    });
    SystemMeta { op: classify(y.op).2, result: y.ret, args: y.args, text: &y.text, text2: &y.text2, text3: &y.text3, target }
}
