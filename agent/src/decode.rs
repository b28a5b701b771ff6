//! Raw kernel record → typed record. Every length and offset is checked against the buffer:
//! a short, oversized, unknown or self-inconsistent record is an error with a reason (counted by
//! the caller), never a panic and never a read past the end.

use std::mem::size_of;

use agent_common::{
    osprey_cred, osprey_exec, osprey_exec_flags as xf, osprey_exit, osprey_exit_flags, osprey_file,
    osprey_file_flags as ff, osprey_fork, osprey_fork_flags, osprey_hdr, osprey_str, osprey_system,
    RecordType, UnknownTag,
};
use thiserror::Error;

pub use crate::net::record::{Dns, Net};

/// Why a record was rejected. `reason()` is the metrics label.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need} its type needs")]
    Truncated { len: usize, need: usize },
    #[error("record declares {declared} bytes but {actual} arrived")]
    SizeMismatch { declared: usize, actual: usize },
    #[error("unknown record type {0}")]
    UnknownType(u32),
    #[error("field {field}: bytes {off}..{end} lie outside the {data_len} bytes of trailing data")]
    SliceOutOfBounds { field: &'static str, off: usize, end: usize, data_len: usize },
    #[error("field {field}: value {value} is not one this build knows")]
    BadValue { field: &'static str, value: u64 },
    #[error("DNS message: {0}")]
    Dns(crate::net::dns::DnsError),
}

impl DecodeError {
    pub const REASONS: [&'static str; 6] =
        ["truncated", "size_mismatch", "unknown_type", "slice_out_of_bounds", "bad_value", "dns_malformed"];

    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::SizeMismatch { .. } => "size_mismatch",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::SliceOutOfBounds { .. } => "slice_out_of_bounds",
            DecodeError::BadValue { .. } => "bad_value",
            DecodeError::Dns(_) => "dns_malformed",
        }
    }
}

impl From<UnknownTag> for DecodeError {
    fn from(t: UnknownTag) -> Self {
        DecodeError::UnknownType(t.0)
    }
}

/// The fields every record carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: RecordType,
    pub ktime_ns: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub start_ns: u64,
    pub parent_start_ns: u64,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub cgroup_id: u64,
    pub comm: Comm,
}

/// Exec flags, decoded from `enum osprey_exec_flags`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecFlags(pub u32);

impl ExecFlags {
    fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
    pub fn memfd(self) -> bool {
        self.has(xf::OSPREY_EXEC_MEMFD)
    }
    pub fn deleted(self) -> bool {
        self.has(xf::OSPREY_EXEC_DELETED)
    }
    pub fn setuid(self) -> bool {
        self.has(xf::OSPREY_EXEC_SETUID)
    }
    pub fn setgid(self) -> bool {
        self.has(xf::OSPREY_EXEC_SETGID)
    }
    pub fn caps_gained(self) -> bool {
        self.has(xf::OSPREY_EXEC_CAPS_GAINED)
    }
    pub fn args_truncated(self) -> bool {
        self.has(xf::OSPREY_EXEC_ARGS_TRUNC)
    }
    pub fn path_truncated(self) -> bool {
        self.has(xf::OSPREY_EXEC_PATH_TRUNC)
    }
    pub fn cwd_truncated(self) -> bool {
        self.has(xf::OSPREY_EXEC_CWD_TRUNC)
    }
    pub fn cred_unknown(self) -> bool {
        self.has(xf::OSPREY_EXEC_CRED_UNKNOWN)
    }
    /// The image was on the exec block list: the kernel sent SIGKILL before it ran.
    pub fn blocked(self) -> bool {
        self.has(xf::OSPREY_EXEC_BLOCKED)
    }
}

/// A successful exec: the process now runs `exe_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub hdr: Header,
    pub exe_ino: u64,
    pub exe_ctime_ns: u64,
    pub exe_size: u64,
    pub exe_dev: u32,
    pub exe_mode: u32,
    pub exe_uid: u32,
    pub exe_gid: u32,
    pub flags: ExecFlags,
    pub argc: u32,
    pub suid: u32,
    pub sgid: u32,
    pub old_uid: u32,
    pub old_euid: u32,
    pub old_gid: u32,
    pub old_egid: u32,
    pub old_pid: u32,
    pub cap_effective: u64,
    pub old_cap_effective: u64,
    pub exe_path: String,
    pub filename: String,
    pub args: Vec<String>,
    pub cwd: String,
}

/// A clone: the header is the parent, `child_*` the new task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    pub hdr: Header,
    pub child_pid: u32,
    pub child_tid: u32,
    pub child_start_ns: u64,
    pub thread: bool,
}

/// A process (or thread) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub hdr: Header,
    /// Raw wait status: exit status in bits 8..16, terminating signal in bits 0..7.
    pub status: u32,
    pub thread: bool,
}

impl Exit {
    /// The exit status when the process called exit(), None when a signal killed it.
    pub fn exit_status(&self) -> Option<i32> {
        (self.status & 0x7f == 0).then_some(((self.status >> 8) & 0xff) as i32)
    }
    /// The signal that killed the process.
    pub fn signal(&self) -> Option<i32> {
        let sig = self.status & 0x7f;
        (sig != 0).then_some(sig as i32)
    }
    pub fn core_dumped(&self) -> bool {
        self.status & 0x80 != 0
    }
}

/// Something happened to a file (enum osprey_file_op).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub hdr: Header,
    /// enum osprey_file_op; see [`crate::sensor::settings::FILE_OPS`] for names.
    pub op: u32,
    pub ret: i32,
    pub flags: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub ino: u64,
    pub dev: u32,
    pub pflags: u32,
    /// Records like this one (same process, operation, attributes, path) folded in the kernel
    /// since the last one sent (`file.fold_window`).
    pub folded: u32,
    /// Absolute path (normalised when the kernel joined a directory and a relative name).
    pub path: String,
    /// Second path: rename/link destination, symlink's new link.
    pub path2: Option<String>,
}

impl File {
    pub fn path_truncated(&self) -> bool {
        self.pflags & ff::OSPREY_FILE_PATH_TRUNC != 0
    }
    pub fn watched(&self) -> bool {
        self.pflags & ff::OSPREY_FILE_WATCHED != 0
    }
}

/// A credential change (enum osprey_cred_op), before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cred {
    pub hdr: Header,
    pub op: u32,
    pub ret: i32,
    /// uid, euid, suid, fsuid before and after
    pub old_uids: [u32; 4],
    pub new_uids: [u32; 4],
    /// gid, egid, sgid, fsgid before and after
    pub old_gids: [u32; 4],
    pub new_gids: [u32; 4],
    pub old_caps: u64,
    pub new_caps: u64,
    pub args: [u64; 3],
}

/// A system-level action (enum osprey_system_op).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    pub hdr: Header,
    pub op: u32,
    pub ret: i32,
    pub target_pid: u32,
    pub target_start_ns: u64,
    pub args: [u64; 3],
    pub text: String,
    pub text2: String,
    pub text3: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Exec(Box<Exec>),
    Fork(Fork),
    Exit(Exit),
    File(Box<File>),
    Cred(Box<Cred>),
    System(Box<System>),
    Net(Box<Net>),
    Dns(Box<Dns>),
}

impl Record {
    pub fn header(&self) -> &Header {
        match self {
            Record::Exec(e) => &e.hdr,
            Record::Fork(f) => &f.hdr,
            Record::Exit(x) => &x.hdr,
            Record::File(f) => &f.hdr,
            Record::Cred(c) => &c.hdr,
            Record::System(s) => &s.hdr,
            Record::Net(n) => &n.hdr,
            Record::Dns(d) => &d.hdr,
        }
    }
    pub fn kind(&self) -> RecordType {
        self.header().kind
    }
}

/// Reads a `T` from the start of `buf`, which must be at least `size_of::<T>()` long.
fn read<T>(buf: &[u8]) -> Result<T, DecodeError> {
    if buf.len() < size_of::<T>() {
        return Err(DecodeError::Truncated { len: buf.len(), need: size_of::<T>() });
    }
    // SAFETY: the length was checked above; T is a plain-old-data C struct generated from
    // osprey.h (every bit pattern is valid) and read_unaligned tolerates any alignment.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// A task's comm (at most 15 bytes), stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Comm {
    len: u8,
    bytes: [u8; 16],
}

impl Comm {
    pub fn new(s: &str) -> Self {
        let mut end = s.len().min(16);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; 16];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        Self { len: end as u8, bytes }
    }

    /// From the kernel's NUL-padded bytes (not UTF-8 only when a task named itself so).
    pub fn from_kernel(bytes: &[u8]) -> Self {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        match std::str::from_utf8(&bytes[..end]) {
            Ok(s) => Self::new(s),
            Err(_) => Self::new(&String::from_utf8_lossy(&bytes[..end])),
        }
    }

    pub fn as_str(&self) -> &str {
        let b = &self.bytes[..usize::from(self.len).min(16)];
        debug_assert!(std::str::from_utf8(b).is_ok());
        // SAFETY: `new` (the only constructor but `Default`'s empty one) copies a `&str` cut on
        // a character boundary: the bytes up to `len` are UTF-8. It is read on every event,
        // and checking it again each time cost more than the rest of the read.
        unsafe { std::str::from_utf8_unchecked(b) }
    }
}

impl std::ops::Deref for Comm {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, o: &&str) -> bool {
        self.as_str() == *o
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `bytes` as text, invalid UTF-8 replaced by U+FFFD. The checked conversion first: it has a
/// fast path for ASCII that the lossy one's chunking lacks, and nearly all kernel text is valid.
fn lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    lossy(&bytes[..end])
}

fn slice<'a>(data: &'a [u8], s: osprey_str, field: &'static str) -> Result<&'a [u8], DecodeError> {
    let off = s.off as usize;
    let end = off + s.len as usize;
    data.get(off..end)
        .ok_or(DecodeError::SliceOutOfBounds { field, off, end, data_len: data.len() })
}

fn text(data: &[u8], s: osprey_str, field: &'static str) -> Result<String, DecodeError> {
    Ok(lossy(slice(data, s, field)?))
}

/// True if [`normalize`] would give `path` back as it is (most joined paths: the kernel joins
/// a clean relative name to the working directory), so it need not be rebuilt.
fn is_normal(path: &str) -> bool {
    let Some(rest) = path.as_bytes().strip_prefix(b"/") else { return false };
    // A component of `len` bytes, `dots` of them dots, is one normalising drops or applies:
    // empty, `.` or `..`. One pass over the bytes (no search per component).
    let dropped = |len: usize, dots: usize| len == 0 || (len == dots && len <= 2);
    let (mut len, mut dots) = (0, 0);
    for &b in rest {
        if b == b'/' {
            if dropped(len, dots) {
                return false;
            }
            (len, dots) = (0, 0);
        } else {
            len += 1;
            dots += usize::from(b == b'.');
        }
    }
    rest.is_empty() || !dropped(len, dots)
}

/// Lexically normalises an absolute path: drops `.` and empty components, applies `..`.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Splits NUL-separated argv bytes; a trailing NUL does not make an empty last argument.
/// `argc` (the count the kernel saw, more than were captured when they were cut) sizes the
/// vector once (0 when unknown, as for /proc/PID/cmdline).
pub(crate) fn split_args(bytes: &[u8], argc: u32) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    let mut args = Vec::with_capacity((argc as usize).clamp(1, 64));
    args.extend(bytes.split(|&b| b == 0).map(lossy));
    args
}

fn header(h: &osprey_hdr, kind: RecordType) -> Header {
    Header {
        kind,
        ktime_ns: h.ktime_ns,
        cpu: h.cpu,
        pid: h.pid,
        tid: h.tid,
        ppid: h.ppid,
        start_ns: h.start_ns,
        parent_start_ns: h.parent_start_ns,
        uid: h.uid,
        gid: h.gid,
        euid: h.euid,
        egid: h.egid,
        cgroup_id: h.cgroup_id,
        comm: Comm::from_kernel(&h.comm.map(|c| c as u8)),
    }
}

/// Decodes one record as it came out of a ring buffer.
pub fn decode(buf: &[u8]) -> Result<Record, DecodeError> {
    let h: osprey_hdr = read(buf)?;
    let kind = RecordType::try_from(h.type_)?;
    let declared = h.size as usize;
    if declared > buf.len() {
        return Err(DecodeError::SizeMismatch { declared, actual: buf.len() });
    }
    let buf = &buf[..declared];
    let hdr = header(&h, kind);
    Ok(match kind {
        RecordType::Exec => {
            let e: osprey_exec = read(buf)?;
            let data = &buf[size_of::<osprey_exec>()..];
            Record::Exec(Box::new(Exec {
                hdr,
                exe_ino: e.exe_ino,
                exe_ctime_ns: e.exe_ctime_ns,
                exe_size: e.exe_size,
                exe_dev: e.exe_dev,
                exe_mode: e.exe_mode,
                exe_uid: e.exe_uid,
                exe_gid: e.exe_gid,
                flags: ExecFlags(e.flags),
                argc: e.argc,
                suid: e.suid,
                sgid: e.sgid,
                old_uid: e.old_uid,
                old_euid: e.old_euid,
                old_gid: e.old_gid,
                old_egid: e.old_egid,
                old_pid: e.old_pid,
                cap_effective: e.cap_effective,
                old_cap_effective: e.old_cap_effective,
                exe_path: text(data, e.exe_path, "exe_path")?,
                filename: text(data, e.filename, "filename")?,
                args: split_args(slice(data, e.args, "args")?, e.argc),
                cwd: text(data, e.cwd, "cwd")?,
            }))
        }
        RecordType::Fork => {
            let f: osprey_fork = read(buf)?;
            Record::Fork(Fork {
                hdr,
                child_pid: f.child_pid,
                child_tid: f.child_tid,
                child_start_ns: f.child_start_ns,
                thread: f.flags & osprey_fork_flags::OSPREY_FORK_THREAD != 0,
            })
        }
        RecordType::Exit => {
            let x: osprey_exit = read(buf)?;
            Record::Exit(Exit {
                hdr,
                status: x.exit_code,
                thread: x.flags & osprey_exit_flags::OSPREY_EXIT_THREAD != 0,
            })
        }
        RecordType::File => {
            let f: osprey_file = read(buf)?;
            let data = &buf[size_of::<osprey_file>()..];
            let joined = |flag: u32, p: String| if f.pflags & flag != 0 && !is_normal(&p) { normalize(&p) } else { p };
            let path = joined(ff::OSPREY_FILE_PATH_JOINED, text(data, f.path, "path")?);
            let path2 = if f.path2.len > 0 {
                Some(joined(ff::OSPREY_FILE_PATH2_JOINED, text(data, f.path2, "path2")?))
            } else {
                None
            };
            Record::File(Box::new(File {
                hdr,
                op: f.op,
                ret: f.ret,
                flags: f.flags,
                mode: f.mode,
                uid: f.uid,
                gid: f.gid,
                size: f.size,
                ino: f.ino,
                dev: f.dev,
                pflags: f.pflags,
                folded: f.folded,
                path,
                path2,
            }))
        }
        RecordType::Cred => {
            let c: osprey_cred = read(buf)?;
            Record::Cred(Box::new(Cred {
                hdr,
                op: c.op,
                ret: c.ret,
                old_uids: [c.old_uid, c.old_euid, c.old_suid, c.old_fsuid],
                new_uids: [c.new_uid, c.new_euid, c.new_suid, c.new_fsuid],
                old_gids: [c.old_gid, c.old_egid, c.old_sgid, c.old_fsgid],
                new_gids: [c.new_gid, c.new_egid, c.new_sgid, c.new_fsgid],
                old_caps: c.old_cap_effective,
                new_caps: c.new_cap_effective,
                args: [c.arg0, c.arg1, c.arg2],
            }))
        }
        RecordType::System => {
            let y: osprey_system = read(buf)?;
            let data = &buf[size_of::<osprey_system>()..];
            Record::System(Box::new(System {
                hdr,
                op: y.op,
                ret: y.ret,
                target_pid: y.target_pid,
                target_start_ns: y.target_start_ns,
                args: [y.arg0, y.arg1, y.arg2],
                text: cstr(slice(data, y.str_, "str")?),
                text2: cstr(slice(data, y.str2, "str2")?),
                text3: cstr(slice(data, y.str3, "str3")?),
            }))
        }
        RecordType::Net => Record::Net(Box::new(crate::net::record::decode_net(buf, hdr)?)),
        RecordType::Dns => Record::Dns(Box::new(crate::net::record::decode_dns(buf, hdr)?)),
    })
}

/// Builders of raw records, for tests and benchmarks that exercise the decoder without a kernel.
pub mod raw {
    use super::*;

    fn bytes_of<T>(v: &T) -> &[u8] {
        // SAFETY: T is a plain C struct from osprey.h; viewing it as bytes is always valid.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
    }

    pub fn hdr(kind: RecordType, size: usize, pid: u32, ktime_ns: u64) -> osprey_hdr {
        let mut h = osprey_hdr { type_: kind as u32, size: size as u32, ktime_ns, ..Default::default() };
        h.pid = pid;
        h.tid = pid;
        h.ppid = 1;
        for (dst, src) in h.comm.iter_mut().zip(b"test") {
            *dst = *src as _;
        }
        h
    }

    /// An exec record whose trailing data holds `exe`, `filename`, argv and `cwd` in that order.
    pub fn exec(pid: u32, ktime_ns: u64, exe: &str, args: &[&str], cwd: &str) -> Vec<u8> {
        let mut data = Vec::new();
        let mut put = |bytes: &[u8]| {
            let s = osprey_str { off: data.len() as u16, len: bytes.len() as u16 };
            data.extend_from_slice(bytes);
            s
        };
        let exe_path = put(exe.as_bytes());
        let filename = put(exe.as_bytes());
        let argv: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
        let args_s = put(&argv);
        let cwd_s = put(cwd.as_bytes());
        let size = size_of::<osprey_exec>() + data.len();
        let e = osprey_exec {
            hdr: hdr(RecordType::Exec, size, pid, ktime_ns),
            argc: args.len() as u32,
            exe_path,
            filename,
            args: args_s,
            cwd: cwd_s,
            ..Default::default()
        };
        let mut out = bytes_of(&e)[..size_of::<osprey_exec>()].to_vec();
        out.extend_from_slice(&data);
        out
    }

    /// A file record; `path` is marked as joined (normalised on decode).
    pub fn file(pid: u32, ktime_ns: u64, op: u32, path: &str, path2: Option<&str>) -> Vec<u8> {
        let mut data = path.as_bytes().to_vec();
        let p = osprey_str { off: 0, len: path.len() as u16 };
        let p2 = match path2 {
            Some(p2) => {
                let s = osprey_str { off: data.len() as u16, len: p2.len() as u16 };
                data.extend_from_slice(p2.as_bytes());
                s
            }
            None => osprey_str::default(),
        };
        let size = size_of::<osprey_file>() + data.len();
        let f = osprey_file {
            hdr: hdr(RecordType::File, size, pid, ktime_ns),
            op,
            path: p,
            path2: p2,
            pflags: ff::OSPREY_FILE_PATH_JOINED,
            ..Default::default()
        };
        let mut out = bytes_of(&f)[..size_of::<osprey_file>()].to_vec();
        out.extend_from_slice(&data);
        out
    }

    /// A system record with `text` in `str`.
    pub fn system(pid: u32, op: u32, target_pid: u32, args: [u64; 3], text: &str) -> Vec<u8> {
        let size = size_of::<osprey_system>() + text.len();
        let y = osprey_system {
            hdr: hdr(RecordType::System, size, pid, 1),
            op,
            target_pid,
            arg0: args[0],
            arg1: args[1],
            arg2: args[2],
            str_: osprey_str { off: 0, len: text.len() as u16 },
            ..Default::default()
        };
        let mut out = bytes_of(&y)[..size_of::<osprey_system>()].to_vec();
        out.extend_from_slice(text.as_bytes());
        out
    }

    pub fn fork(pid: u32, child: u32, ktime_ns: u64) -> Vec<u8> {
        let f = osprey_fork {
            hdr: hdr(RecordType::Fork, size_of::<osprey_fork>(), pid, ktime_ns),
            child_pid: child,
            child_tid: child,
            child_start_ns: ktime_ns,
            ..Default::default()
        };
        bytes_of(&f).to_vec()
    }

    pub fn exit(pid: u32, status: u32, ktime_ns: u64) -> Vec<u8> {
        let x = osprey_exit {
            hdr: hdr(RecordType::Exit, size_of::<osprey_exit>(), pid, ktime_ns),
            exit_code: status,
            flags: 0,
        };
        bytes_of(&x).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::osprey_file_op as fo;
    use std::mem::offset_of;

    #[test]
    fn decodes_a_well_formed_exec() {
        let raw = raw::exec(42, 7, "/usr/bin/echo", &["/bin/echo", "a", "b c"], "/tmp");
        let Record::Exec(e) = decode(&raw).unwrap() else { panic!("not an exec") };
        assert_eq!(e.hdr.pid, 42);
        assert_eq!(e.hdr.comm, "test");
        assert_eq!(e.exe_path, "/usr/bin/echo");
        assert_eq!(e.args, ["/bin/echo", "a", "b c"]);
        assert_eq!(e.cwd, "/tmp");
    }

    #[test]
    fn decodes_fork_and_exit() {
        let Record::Fork(f) = decode(&raw::fork(1, 2, 3)).unwrap() else { panic!() };
        assert_eq!((f.hdr.pid, f.child_pid, f.thread), (1, 2, false));
        let Record::Exit(x) = decode(&raw::exit(5, 3 << 8, 9)).unwrap() else { panic!() };
        assert_eq!((x.exit_status(), x.signal()), (Some(3), None));
        let Record::Exit(x) = decode(&raw::exit(5, 9, 9)).unwrap() else { panic!() };
        assert_eq!((x.exit_status(), x.signal()), (None, Some(9)));
    }

    #[test]
    fn rejects_every_truncation_without_panicking() {
        for raw in [raw::exec(1, 1, "/x", &["a"], "/"), raw::fork(1, 2, 3), raw::exit(1, 0, 1)] {
            for len in 0..raw.len() {
                let err = decode(&raw[..len]).unwrap_err();
                assert!(
                    matches!(err, DecodeError::Truncated { .. } | DecodeError::SizeMismatch { .. }),
                    "len {len}: {err}"
                );
            }
        }
    }

    #[test]
    fn rejects_unknown_tags() {
        let mut raw = raw::fork(1, 2, 3);
        raw[..4].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(decode(&raw), Err(DecodeError::UnknownType(99)));
        raw[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(decode(&raw).unwrap_err().reason(), "unknown_type");
    }

    #[test]
    fn rejects_offsets_past_the_end() {
        let mut raw = raw::exec(1, 1, "/bin/true", &["true"], "/");
        let at = offset_of!(osprey_exec, cwd);
        let bad = osprey_str { off: 60000, len: 10 };
        raw[at..at + 2].copy_from_slice(&bad.off.to_ne_bytes());
        raw[at + 2..at + 4].copy_from_slice(&bad.len.to_ne_bytes());
        let err = decode(&raw).unwrap_err();
        assert_eq!(err.reason(), "slice_out_of_bounds");
        // a length that runs past the end from a valid offset
        let mut raw = raw::exec(1, 1, "/bin/true", &["true"], "/");
        let at = offset_of!(osprey_exec, args) + 2;
        raw[at..at + 2].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(matches!(decode(&raw), Err(DecodeError::SliceOutOfBounds { field: "args", .. })));
    }

    #[test]
    fn a_declared_size_larger_than_the_buffer_is_rejected() {
        let mut raw = raw::exit(1, 0, 1);
        let at = offset_of!(osprey_hdr, size);
        raw[at..at + 4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert!(matches!(decode(&raw), Err(DecodeError::SizeMismatch { declared: 10_000, .. })));
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic pseudo-random sweep over short buffers with a valid tag in front.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for i in 0..20_000u32 {
            let len = (i as usize * 7) % 600;
            let mut buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if buf.len() >= 4 {
                buf[..4].copy_from_slice(&(1 + i % 3).to_ne_bytes());
            }
            let _ = decode(&buf);
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        assert_eq!(lossy(b"/tmp/caf\xc3\xa9"), "/tmp/café");
        assert_eq!(lossy(b"/tmp/a\xffb"), "/tmp/a\u{fffd}b");
        assert_eq!(split_args(b"ls\0\xff\0", 2), ["ls", "\u{fffd}"]);
    }

    #[test]
    fn normalises_joined_paths() {
        assert_eq!(normalize("/tmp/d/./x"), "/tmp/d/x");
        assert_eq!(normalize("/tmp/d/../x"), "/tmp/x");
        assert_eq!(normalize("/../../etc//passwd"), "/etc/passwd");
        assert_eq!(normalize("/"), "/");
        let paths = ["/", "/tmp/x", "/tmp/d/./x", "/tmp/d/../x", "//x", "/x/", "/x/.", "/x/..", "/.x/..y/...", "x/y", "", "/a//b", "/.", "/..", "/..."];
        for p in paths {
            assert_eq!(is_normal(p), normalize(p) == p, "{p:?}");
        }
        // Every path of up to seven of `/`, `.` and `a`.
        let mut all = vec![String::new()];
        for _ in 0..7 {
            let longer: Vec<String> = all.iter().flat_map(|p| ['/', '.', 'a'].map(|c| format!("{p}{c}"))).collect();
            for p in &longer {
                assert_eq!(is_normal(p), normalize(p) == *p, "{p:?}");
            }
            all = longer;
        }
    }

    #[test]
    fn file_records_decode_and_reject_bad_offsets() {
        let mut rec = raw::file(9, 5, fo::OSPREY_FILE_RENAME, "/tmp/a/../b", Some("/tmp/c"));
        let Record::File(f) = decode(&rec).unwrap() else { panic!() };
        assert_eq!((f.op, f.path.as_str(), f.path2.as_deref()), (fo::OSPREY_FILE_RENAME, "/tmp/b", Some("/tmp/c")));
        let at = offset_of!(osprey_file, path2) + 2;
        rec[at..at + 2].copy_from_slice(&500u16.to_ne_bytes());
        assert_eq!(decode(&rec).unwrap_err().reason(), "slice_out_of_bounds");
        for len in 0..rec.len() {
            assert!(decode(&rec[..len]).is_err());
        }
    }

    #[test]
    fn comms_are_cut_on_a_character_boundary() {
        assert_eq!(Comm::new("aéééééééé").as_str(), "aééééééé");
        assert_eq!(Comm::new("éééééééé").as_str(), "éééééééé");
        assert_eq!(Comm::new("").as_str(), "");
        assert_eq!(Comm::default().as_str(), "");
        assert_eq!(Comm::from_kernel(b"ab\xffc\0\0\0\0\0\0\0\0\0\0\0\0").as_str(), "ab\u{fffd}c");
        assert_eq!(Comm::from_kernel(b"0123456789abcdef").as_str(), "0123456789abcdef");
    }

    #[test]
    fn args_split_keeps_spaces_and_drops_the_final_nul() {
        assert_eq!(split_args(b"a\0b c\0", 2), ["a", "b c"]);
        assert_eq!(split_args(b"a\0\0b", 0), ["a", "", "b"]);
        assert!(split_args(b"", 9).is_empty());
    }
}
