//! Quarantine, an EDR response action: [`Quarantine::quarantine`] moves a suspicious regular file
//! into a root-only directory (0700) as `<id>.bin`, mode 0000, and records its original path, owner,
//! mode, size, atime/mtime (ns) and sha256 in `<id>.json` (0600); [`Quarantine::restore`] puts it
//! back exactly (path, content, owner, mode with setuid/setgid/sticky, times) after checking it.
//!
//! Crash safety: the manifest is written atomically (temporary file, fsync, rename) before the
//! original leaves its place, and a copy across filesystems is complete and fsynced before its source
//! is removed. A manifest without its `.bin` is a quarantine interrupted before the move (the original
//! is still in place). Symlinks are never followed (lstat, `O_NOFOLLOW`, identity checks), renames
//! never replace anything (`RENAME_NOREPLACE`), and a restored file gets its owner, mode and times
//! through a descriptor before it appears at its original path.

use std::{
    fs::{self, DirBuilder, File, FileTimes, OpenOptions, Permissions},
    io::{self, Read, Write},
    os::unix::fs::{fchown, DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use nix::fcntl::{renameat2, RenameFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::warn;

use crate::process::hash::Sha256Digest;

#[derive(Debug, Error)]
pub enum QuarantineError {
    #[error("{}: {op}: {source}", path.display())]
    Io { path: PathBuf, op: &'static str, source: io::Error },
    #[error("quarantine directory {}: {reason}", path.display())]
    BadDir { path: PathBuf, reason: String },
    #[error("{}: not a regular file ({kind}); only regular files are quarantined", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("invalid quarantine id {0:?} (lowercase hex digits and '-' only)")]
    BadId(String),
    #[error("no quarantine entry {0}")]
    NotFound(String),
    #[error("manifest {}: {source}", path.display())]
    Manifest { path: PathBuf, source: serde_json::Error },
    #[error("{}: something already exists there; nothing restored", path.display())]
    Occupied { path: PathBuf },
    #[error("{}: parent directory is missing or not a directory; nothing restored", path.display())]
    ParentMissing { path: PathBuf },
    #[error("{}: {what} is {actual}, expected {expected}", path.display())]
    Mismatch { path: PathBuf, what: &'static str, expected: String, actual: String },
    #[error("{}: changed while it was being quarantined; left in place", path.display())]
    Changed { path: PathBuf },
}

type Result<T> = std::result::Result<T, QuarantineError>;

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> QuarantineError + 'a {
    move |source| QuarantineError::Io { path: path.to_owned(), op, source }
}

/// `original_path` in a manifest: a string, or an array of bytes when it is not UTF-8.
mod path_repr {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::{
        ffi::OsString,
        os::unix::ffi::OsStrExt,
        os::unix::ffi::OsStringExt,
        path::{Path, PathBuf},
    };

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }
    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        match p.to_str() {
            Some(t) => s.serialize_str(t),
            None => s.collect_seq(p.as_os_str().as_bytes()),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(match Repr::deserialize(d)? {
            Repr::Text(t) => t.into(),
            Repr::Bytes(b) => OsString::from_vec(b).into(),
        })
    }
}

/// One quarantined file, as its manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// First 16 hex digits of the sha256, '-', 16 random hex digits.
    pub id: String,
    /// Absolute; the parent directory's symlinks were resolved at quarantine time.
    #[serde(with = "path_repr")]
    pub original_path: PathBuf,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    /// `st_mode & 0o7777`: permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    /// Lowercase hex.
    pub sha256: String,
    /// When it was quarantined, in ns since the Unix epoch.
    pub quarantined_at_ns: u64,
}

/// A quarantine directory.
#[derive(Debug)]
pub struct Quarantine {
    dir: PathBuf,
}

impl Quarantine {
    /// Opens `dir`, creating it (0700) if missing. Refuses a symlink, a non-directory and a
    /// directory not owned by the current user; tightens any other mode to 0700.
    pub fn open(dir: &Path) -> Result<Self> {
        let bad = |reason: String| QuarantineError::BadDir { path: dir.to_owned(), reason };
        match fs::symlink_metadata(dir) {
            Ok(md) if md.file_type().is_symlink() => return Err(bad("is a symbolic link".into())),
            Ok(md) if !md.is_dir() => return Err(bad("exists and is not a directory".into())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir, "create"))?
            }
            Err(e) => return Err(io_err(dir, "lstat")(e)),
        }
        // Checked again through a descriptor: the path may have been swapped in between.
        let flags = libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let f = OpenOptions::new().read(true).custom_flags(flags).open(dir).map_err(io_err(dir, "open"))?;
        let md = f.metadata().map_err(io_err(dir, "fstat"))?;
        let euid = nix::unistd::geteuid().as_raw();
        if md.uid() != euid {
            return Err(bad(format!("owned by uid {}, not by the current user ({euid})", md.uid())));
        }
        if md.mode() & 0o7777 != 0o700 {
            f.set_permissions(Permissions::from_mode(0o700)).map_err(io_err(dir, "chmod 0700"))?;
        }
        let canonical = fs::canonicalize(dir).map_err(io_err(dir, "canonicalize"))?;
        match fs::symlink_metadata(&canonical) {
            Ok(c) if (c.dev(), c.ino()) == (md.dev(), md.ino()) => Ok(Self { dir: canonical }),
            _ => Err(bad("replaced while being opened".into())),
        }
    }

    /// The quarantine directory (canonical path).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves the regular file at `path` into quarantine and returns its manifest entry.
    pub fn quarantine(&self, path: &Path) -> Result<Entry> {
        let lmd = fs::symlink_metadata(path).map_err(io_err(path, "lstat"))?;
        check_regular(path, &lmd)?;
        let name = path.file_name().ok_or_else(|| QuarantineError::NotRegular { path: path.into(), kind: "no file name" })?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let original_path = fs::canonicalize(parent).map_err(io_err(parent, "canonicalize"))?.join(name);
        let mut src = open_ro(path).map_err(io_err(path, "open"))?;
        let md = src.metadata().map_err(io_err(path, "fstat"))?;
        let changed = || QuarantineError::Changed { path: path.to_owned() };
        if (md.dev(), md.ino()) != (lmd.dev(), lmd.ino()) {
            return Err(changed());
        }
        let (sha256, n) = hash_copy(&mut src, None).map_err(io_err(path, "read"))?;
        if n != md.size() {
            return Err(changed());
        }
        let id = format!("{}-{}", &sha256[..16], random_hex().map_err(io_err(Path::new("/dev/urandom"), "read"))?);
        let quarantined_at_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let Meta { uid, gid, mode, size, atime_ns, mtime_ns } = Meta::of(&md);
        let entry = Entry { id, original_path, size, uid, gid, mode, atime_ns, mtime_ns, sha256, quarantined_at_ns };
        self.write_manifest(&entry)?;
        let (bin, manifest) = (self.file(&entry.id, "bin"), self.file(&entry.id, "json"));
        let copied = match move_file(path, &bin, false, &entry.sha256) {
            Ok(copied) => copied,
            Err(e) => {
                let _ = fs::remove_file(&manifest);
                return Err(io_err(path, "move into quarantine")(e));
            }
        };
        let stored = open_ro(&bin).map_err(io_err(&bin, "open"))?;
        let smd = stored.metadata().map_err(io_err(&bin, "fstat"))?;
        // A rename moves whatever is at the path: it must be the file that was hashed.
        if !copied && (smd.dev(), smd.ino()) != (md.dev(), md.ino()) {
            if rename_noreplace(&bin, path).is_ok() {
                let _ = fs::remove_file(&manifest);
            }
            return Err(changed());
        }
        lock_down(&stored).map_err(io_err(&bin, "chown and chmod 0000"))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir, "fsync"))?;
        Ok(entry)
    }

    /// Puts entry `id` back where it came from, exactly, and forgets it.
    pub fn restore(&self, id: &str) -> Result<Entry> {
        let e = self.get(id)?;
        let dst = e.original_path.as_path();
        let parent = dst.parent().unwrap_or(Path::new("/"));
        if !fs::symlink_metadata(parent).is_ok_and(|m| m.is_dir()) {
            return Err(QuarantineError::ParentMissing { path: parent.to_owned() });
        }
        match fs::symlink_metadata(dst) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Ok(_) => return Err(QuarantineError::Occupied { path: dst.to_owned() }),
            Err(err) => return Err(io_err(dst, "lstat")(err)),
        }
        let bin = self.file(id, "bin");
        let mut stored = open_ro(&bin).map_err(io_err(&bin, "open"))?;
        check_regular(&bin, &stored.metadata().map_err(io_err(&bin, "fstat"))?)?;
        let (sha, _) = hash_copy(&mut stored, None).map_err(io_err(&bin, "read"))?;
        if sha != e.sha256 {
            return Err(QuarantineError::Mismatch { path: bin, what: "sha256", expected: e.sha256, actual: sha });
        }
        let moved = Meta::from(&e).apply(&stored).map_err(io_err(&bin, "set owner, mode and times")).and_then(|()| {
            match move_file(&bin, dst, false, &e.sha256) {
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(QuarantineError::Occupied { path: dst.into() }),
                r => r.map_err(io_err(dst, "restore")),
            }
        });
        if let Err(err) = moved {
            let _ = lock_down(&stored);
            return Err(err);
        }
        verify(dst, &e)?;
        let manifest = self.file(id, "json");
        fs::remove_file(&manifest).map_err(io_err(&manifest, "remove"))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir, "fsync"))?;
        Ok(e)
    }

    /// All entries, oldest first. Unreadable manifests are skipped with a warning.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for de in fs::read_dir(&self.dir).map_err(io_err(&self.dir, "read"))? {
            let de = de.map_err(io_err(&self.dir, "read"))?;
            let name = de.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else { continue };
            if check_id(id).is_err() || !de.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match self.get(id) {
                Ok(e) => out.push(e),
                Err(error) => warn!(%error, "skipping quarantine manifest"),
            }
        }
        out.sort_by(|a, b| (a.quarantined_at_ns, &a.id).cmp(&(b.quarantined_at_ns, &b.id)));
        Ok(out)
    }

    /// The entry `id`.
    pub fn get(&self, id: &str) -> Result<Entry> {
        check_id(id)?;
        let path = self.file(id, "json");
        let mut f = match open_ro(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(QuarantineError::NotFound(id.into())),
            r => r.map_err(io_err(&path, "open"))?,
        };
        check_regular(&path, &f.metadata().map_err(io_err(&path, "fstat"))?)?;
        let mut text = String::new();
        f.read_to_string(&mut text).map_err(io_err(&path, "read"))?;
        let e: Entry = serde_json::from_str(&text).map_err(|source| QuarantineError::Manifest { path: path.clone(), source })?;
        if e.id != id {
            return Err(QuarantineError::Mismatch { path, what: "id", expected: id.into(), actual: e.id });
        }
        Ok(e)
    }

    fn file(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    /// Writes `<id>.json` atomically: temporary file, fsync, rename (never replacing), fsync dir.
    fn write_manifest(&self, e: &Entry) -> Result<()> {
        let path = self.file(&e.id, "json");
        let json = serde_json::to_vec_pretty(e).map_err(|source| QuarantineError::Manifest { path: path.clone(), source })?;
        let tmp = self.dir.join(format!(".{}.json.tmp", e.id));
        let write = || -> io::Result<()> {
            let mut f = create_new(&tmp, 0o600)?;
            f.write_all(&json)?;
            f.sync_all()?;
            rename_noreplace(&tmp, &path)?;
            sync_dir(&self.dir)
        };
        write().map_err(|err| {
            let _ = fs::remove_file(&tmp);
            io_err(&path, "write manifest")(err)
        })
    }
}

/// Checks the restored file: owner, mode, size, times and sha256 as the manifest says.
fn verify(path: &Path, e: &Entry) -> Result<()> {
    let mut f = open_ro(path).map_err(io_err(path, "open restored file"))?;
    let md = f.metadata().map_err(io_err(path, "fstat"))?;
    check_regular(path, &md)?;
    let (want, got) = (Meta::from(e), Meta::of(&md));
    if got != want {
        let (expected, actual) = (format!("{want:?}"), format!("{got:?}"));
        return Err(QuarantineError::Mismatch { path: path.into(), what: "metadata", expected, actual });
    }
    let (sha, _) = hash_copy(&mut f, None).map_err(io_err(path, "read"))?;
    if sha != e.sha256 {
        return Err(QuarantineError::Mismatch { path: path.into(), what: "sha256", expected: e.sha256.clone(), actual: sha });
    }
    Ok(())
}

fn check_regular(path: &Path, md: &fs::Metadata) -> Result<()> {
    let t = md.file_type();
    let kinds = [(t.is_dir(), "directory"), (t.is_symlink(), "symbolic link"), (t.is_fifo(), "fifo"), (t.is_socket(), "socket")];
    let kinds = kinds.into_iter().chain([(t.is_block_device(), "block device"), (t.is_char_device(), "character device")]);
    let kind = kinds.into_iter().find_map(|(is, kind)| is.then_some(kind)).unwrap_or("unknown file type");
    t.is_file().then_some(()).ok_or_else(|| QuarantineError::NotRegular { path: path.to_owned(), kind })
}

/// Lowercase hex and '-': no path separator, no dot.
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'));
    ok.then_some(()).ok_or_else(|| QuarantineError::BadId(id.into()))
}

/// Opens for reading without following a final symlink, blocking on a fifo or touching atime.
fn open_ro(path: &Path) -> io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    match OpenOptions::new().read(true).custom_flags(flags | libc::O_NOATIME).open(path) {
        // O_NOATIME needs ownership or CAP_FOWNER.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => OpenOptions::new().read(true).custom_flags(flags).open(path),
        r => r,
    }
}

fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(mode).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
}

/// Reads `from` to the end, writing to `to` if given; returns the sha256 (hex) and length.
fn hash_copy(from: &mut File, mut to: Option<&mut File>) -> io::Result<(String, u64)> {
    let (mut h, mut buf, mut total) = (Sha256::new(), vec![0u8; 64 << 10], 0u64);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok((Sha256Digest(h.finalize().into()).to_hex(), total)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        if let Some(to) = to.as_deref_mut() {
            to.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

fn system_time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    match ns {
        0.. => UNIX_EPOCH + d,
        _ => UNIX_EPOCH - d,
    }
}

/// The metadata a quarantine keeps and a restore puts back.
#[derive(Debug, PartialEq, Eq)]
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    size: u64,
    atime_ns: i64,
    mtime_ns: i64,
}

impl Meta {
    fn of(md: &fs::Metadata) -> Self {
        let (atime_ns, mtime_ns) = (ns(md.atime(), md.atime_nsec()), ns(md.mtime(), md.mtime_nsec()));
        Self { uid: md.uid(), gid: md.gid(), mode: md.mode() & 0o7777, size: md.size(), atime_ns, mtime_ns }
    }

    fn from(e: &Entry) -> Self {
        Self { uid: e.uid, gid: e.gid, mode: e.mode, size: e.size, atime_ns: e.atime_ns, mtime_ns: e.mtime_ns }
    }

    /// Owner, then mode (chown clears setuid/setgid), then atime/mtime; the size is not touched.
    fn apply(&self, f: &File) -> io::Result<()> {
        fchown(f, Some(self.uid), Some(self.gid))?;
        f.set_permissions(Permissions::from_mode(self.mode))?;
        f.set_times(FileTimes::new().set_accessed(system_time(self.atime_ns)).set_modified(system_time(self.mtime_ns)))
    }
}

/// The stored copy: owned by the current user, mode 0000.
fn lock_down(f: &File) -> io::Result<()> {
    fchown(f, Some(nix::unistd::geteuid().as_raw()), Some(nix::unistd::getegid().as_raw()))?;
    f.set_permissions(Permissions::from_mode(0o000))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn random_hex() -> io::Result<String> {
    let mut b = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// rename(2) that never replaces `to` (EEXIST instead); link + unlink where the filesystem
/// lacks `RENAME_NOREPLACE`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => fs::hard_link(from, to).and_then(|()| fs::remove_file(from)),
        Err(e) => Err(e.into()),
    }
}

/// Moves the regular file `src` to `dst` (which must not exist) and returns whether it copied:
/// rename(2) when possible; across filesystems (EXDEV) or with `force_copy`, a copy to a
/// temporary name beside `dst` keeping owner, mode and times, checked against `sha256`, fsynced
/// and renamed into place before `src` is removed. On error, `src` is left as it was.
fn move_file(src: &Path, dst: &Path, force_copy: bool, sha256: &str) -> io::Result<bool> {
    let dir = dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !force_copy {
        match rename_noreplace(src, dst) {
            Ok(()) => return sync_dir(dir).map(|()| false),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
            Err(e) => return Err(e),
        }
    }
    let tmp = dir.join(format!(".osprey-quarantine-{}.tmp", random_hex()?));
    let copy = || -> io::Result<()> {
        let mut from = open_ro(src)?;
        let md = from.metadata()?;
        if !md.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        let mut to = create_new(&tmp, 0o600)?;
        if hash_copy(&mut from, Some(&mut to))?.0 != sha256 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "content changed while being copied"));
        }
        Meta::of(&md).apply(&to)?;
        to.sync_all()?;
        rename_noreplace(&tmp, dst)
    };
    if let Err(e) = copy() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = sync_dir(dir).and_then(|()| fs::remove_file(src)) {
        let _ = fs::remove_file(dst);
        return Err(e);
    }
    let _ = sync_dir(src.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::{ffi::OsStrExt, fs::symlink};
    use tempfile::{tempdir, tempdir_in, TempDir};

    const ATIME: i64 = 1_000_000_123_456_789; // older than mtime: a relatime read would update it
    const MTIME: i64 = 1_600_000_000_987_654_321;
    const SUSPICIOUS: Meta = Meta { uid: 65534, gid: 65534, mode: 0o4750, size: 0, atime_ns: ATIME, mtime_ns: MTIME };

    fn perms(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    /// A file owned by 65534:65534, mode 04750, with ns atime/mtime.
    fn suspicious(path: &Path, content: &[u8]) -> PathBuf {
        fs::write(path, content).unwrap();
        SUSPICIOUS.apply(&File::open(path).unwrap()).unwrap();
        path.to_owned()
    }

    fn assert_like_suspicious(path: &Path, content: &[u8]) {
        let mut f = open_ro(path).unwrap(); // O_NOATIME: reading does not change what is checked
        assert_eq!(Meta::of(&f.metadata().unwrap()), Meta { size: content.len() as u64, ..SUSPICIOUS });
        assert_eq!(hash_copy(&mut f, None).unwrap().0, Sha256Digest::of(content).to_hex());
        assert!(fs::symlink_metadata(path).unwrap().is_file());
    }

    fn content() -> Vec<u8> {
        (0..200_000u32).map(|i| (i * 31 % 253) as u8).collect()
    }

    fn setup() -> (TempDir, Quarantine) {
        let t = tempdir().unwrap();
        let q = Quarantine::open(&t.path().join("q")).unwrap();
        (t, q)
    }

    #[test]
    fn round_trip_keeps_content_owner_setuid_mode_times_and_size() {
        let (t, q) = setup();
        let src = suspicious(&t.path().join(std::ffi::OsStr::from_bytes(b"evil-\xff")), &content()); // not UTF-8
        let e = q.quarantine(&src).unwrap();
        assert!(fs::symlink_metadata(&src).is_err(), "original removed");
        let sha = Sha256Digest::of(&content()).to_hex();
        assert_eq!((&e.original_path, e.size, e.uid, e.gid, e.mode), (&src, 200_000, 65534, 65534, 0o4750));
        assert_eq!((e.atime_ns, e.mtime_ns, &e.sha256), (ATIME, MTIME, &sha));
        assert!(e.id.starts_with(&format!("{}-", &sha[..16])) && e.id.len() == 33);
        let (bin, json) = (q.dir().join(format!("{}.bin", e.id)), q.dir().join(format!("{}.json", e.id)));
        assert_eq!((perms(q.dir()), perms(&bin), perms(&json)), (0o700, 0, 0o600));
        assert_eq!(fs::read(&bin).unwrap(), content());
        assert_eq!((q.list().unwrap(), q.get(&e.id).unwrap()), (vec![e.clone()], e.clone()));
        assert_eq!(q.restore(&e.id).unwrap(), e);
        assert_like_suspicious(&src, &content());
        assert!(!bin.exists() && !json.exists() && q.list().unwrap().is_empty());
        assert!(matches!(q.restore(&e.id), Err(QuarantineError::NotFound(_))));
    }

    #[test]
    fn open_creates_0700_tightens_and_refuses_symlinks_and_files() {
        let t = tempdir().unwrap();
        let q = Quarantine::open(&t.path().join("a/b")).unwrap();
        assert_eq!(perms(q.dir()), 0o700);
        fs::set_permissions(q.dir(), Permissions::from_mode(0o755)).unwrap();
        assert_eq!(perms(Quarantine::open(q.dir()).unwrap().dir()), 0o700);
        symlink(q.dir(), t.path().join("link")).unwrap();
        fs::write(t.path().join("file"), b"x").unwrap();
        for p in [t.path().join("link"), t.path().join("file")] {
            let err = Quarantine::open(&p).unwrap_err();
            assert!(matches!(err, QuarantineError::BadDir { .. }) && err.to_string().contains(&*p.to_string_lossy()), "{err}");
        }
    }

    #[test]
    fn refuses_directories_symlinks_fifos_sockets_and_devices() {
        let (t, q) = setup();
        let at = |name: &str| t.path().join(name);
        fs::create_dir(at("dir")).unwrap();
        fs::write(at("target"), b"keep").unwrap();
        symlink(at("target"), at("link")).unwrap();
        nix::unistd::mkfifo(&at("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(at("sock")).unwrap();
        let cases =
            [("dir", "directory"), ("link", "symbolic link"), ("fifo", "fifo"), ("sock", "socket"), ("/dev/null", "character device")];
        for (name, want) in cases {
            match q.quarantine(&at(name)) {
                Err(e @ QuarantineError::NotRegular { kind, .. }) if kind == want => assert!(e.to_string().contains(name)),
                r => panic!("{name}: {r:?}"),
            }
            assert!(fs::symlink_metadata(at(name)).is_ok(), "{name} left in place");
        }
        assert_eq!(fs::read(at("target")).unwrap(), b"keep");
        assert_eq!(fs::read_dir(q.dir()).unwrap().count(), 0);
    }

    #[test]
    fn restore_refuses_an_occupied_path_and_changes_nothing() {
        let (t, q) = setup();
        let src = suspicious(&t.path().join("evil"), b"payload");
        let e = q.quarantine(&src).unwrap();
        let bin = q.dir().join(format!("{}.bin", e.id));
        for dangling_symlink in [false, true] {
            if dangling_symlink {
                symlink("/nonexistent", &src).unwrap();
            } else {
                fs::write(&src, b"occupant").unwrap();
            }
            let err = q.restore(&e.id).unwrap_err();
            assert!(matches!(err, QuarantineError::Occupied { .. }) && err.to_string().contains(&*src.to_string_lossy()), "{err}");
            assert!(dangling_symlink || fs::read(&src).unwrap() == b"occupant");
            assert_eq!((perms(&bin), fs::read(&bin).unwrap(), q.get(&e.id).unwrap()), (0, b"payload".to_vec(), e.clone()));
            fs::remove_file(&src).unwrap();
        }
        q.restore(&e.id).unwrap();
        assert_like_suspicious(&src, b"payload");
    }

    #[test]
    fn restore_refuses_a_missing_parent_and_a_tampered_copy() {
        let (t, q) = setup();
        let sub = t.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let e = q.quarantine(&suspicious(&sub.join("evil"), b"payload")).unwrap();
        fs::remove_dir(&sub).unwrap();
        let err = q.restore(&e.id).unwrap_err();
        assert!(matches!(&err, QuarantineError::ParentMissing { path } if path == &sub), "{err}");
        assert!(err.to_string().contains(&*sub.to_string_lossy()));
        fs::create_dir(&sub).unwrap();
        fs::write(q.dir().join(format!("{}.bin", e.id)), b"tampered").unwrap();
        assert!(matches!(q.restore(&e.id), Err(QuarantineError::Mismatch { what: "sha256", .. })));
        assert!(fs::symlink_metadata(sub.join("evil")).is_err(), "nothing restored");
        assert_eq!(q.list().unwrap(), vec![e]);
    }

    #[test]
    fn bad_ids_are_refused_and_symlinks_in_the_dir_not_followed() {
        let (t, q) = setup();
        for id in ["../x", "", "a/b", "..", "ABCDEF", "x.bin", "/etc/passwd", "00\0"] {
            assert!(matches!(q.restore(id), Err(QuarantineError::BadId(_))), "{id:?}");
            assert!(matches!(q.get(id), Err(QuarantineError::BadId(_))), "{id:?}");
        }
        assert!(matches!(q.get("0123456789abcdef-0123456789abcdef"), Err(QuarantineError::NotFound(_))));
        // A manifest reached through a symlink is neither read nor listed.
        let e = q.quarantine(&suspicious(&t.path().join("evil"), b"x")).unwrap();
        let json = q.dir().join(format!("{}.json", e.id));
        fs::rename(&json, t.path().join("m.json")).unwrap();
        symlink(t.path().join("m.json"), &json).unwrap();
        assert!(matches!(q.get(&e.id), Err(QuarantineError::Io { .. })));
        assert!(q.list().unwrap().is_empty());
    }

    #[test]
    fn list_is_sorted_by_time_and_ids_are_unique_for_equal_content() {
        let (t, q) = setup();
        let ids: Vec<String> = ["a", "b", "c"].iter().map(|n| q.quarantine(&suspicious(&t.path().join(n), b"same")).unwrap().id).collect();
        fs::write(q.dir().join("notes.txt"), b"ignored").unwrap();
        let listed = q.list().unwrap();
        assert_eq!(listed.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
        assert!(listed.windows(2).all(|w| w[0].quarantined_at_ns <= w[1].quarantined_at_ns && w[0].id != w[1].id));
        assert!(listed.iter().zip(["a", "b", "c"]).all(|(e, n)| e.original_path == t.path().join(n)));
    }

    #[test]
    fn move_file_copy_fallback_keeps_metadata_and_checks_content() {
        let t = tempdir().unwrap();
        let (src, dst) = (suspicious(&t.path().join("src"), &content()), t.path().join("dst"));
        let sha = Sha256Digest::of(&content()).to_hex();
        assert!(move_file(&src, &dst, true, &sha).unwrap(), "copied");
        assert!(fs::symlink_metadata(&src).is_err());
        assert_like_suspicious(&dst, &content());
        // Content other than expected: nothing moved, no temporary left.
        assert_eq!(move_file(&dst, &src, true, &"0".repeat(64)).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(fs::symlink_metadata(&src).is_err() && fs::read_dir(t.path()).unwrap().count() == 1);
        // Never replaces an existing destination, renaming or copying.
        fs::write(&src, b"other").unwrap();
        for force_copy in [false, true] {
            assert_eq!(move_file(&dst, &src, force_copy, &sha).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        }
        assert_eq!((fs::read(&src).unwrap(), fs::read_dir(t.path()).unwrap().count()), (b"other".to_vec(), 2));
        fs::remove_file(&src).unwrap();
        assert!(!move_file(&dst, &src, false, &sha).unwrap(), "renamed on the same filesystem");
        assert_like_suspicious(&src, &content());
    }

    #[test]
    fn across_filesystems_quarantine_and_restore_go_through_exdev() {
        let (t, q) = setup();
        let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
        let shm = Path::new("/dev/shm");
        if dev(shm).is_none() || dev(shm) == dev(t.path()) {
            return eprintln!("skipped: /dev/shm missing or on the same filesystem as {}", t.path().display());
        }
        let s = tempdir_in(shm).unwrap();
        fs::write(s.path().join("probe"), b"").unwrap();
        let exdev = rename_noreplace(&s.path().join("probe"), &t.path().join("probe")).unwrap_err();
        assert_eq!(exdev.raw_os_error(), Some(libc::EXDEV));
        let src = suspicious(&s.path().join("evil"), &content());
        let e = q.quarantine(&src).unwrap();
        assert!(fs::symlink_metadata(&src).is_err());
        assert_eq!(perms(&q.dir().join(format!("{}.bin", e.id))), 0);
        assert_eq!(fs::read_dir(q.dir()).unwrap().count(), 2, "only <id>.bin and <id>.json");
        q.restore(&e.id).unwrap();
        assert_like_suspicious(&src, &content());
        assert_eq!(fs::read_dir(s.path()).unwrap().count(), 2, "evil and probe, no temporary left");
    }
}
