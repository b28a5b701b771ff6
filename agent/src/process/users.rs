//! uid/gid → name from `<root>/etc/passwd` and `<root>/etc/group`, cached and reloaded when either
//! file changes (mtime, size or inode), checked at most every `check_interval`.
//!
//! Only the local files are read: users that exist only in a directory service (LDAP, sssd)
//! resolve to no name, and the event carries the numeric id alone.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use rustc_hash::FxHashMap;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum UsersError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    mtime: Option<SystemTime>,
    size: u64,
    ino: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsersStats {
    pub reloads: u64,
    pub checks: u64,
    pub users: usize,
    pub groups: usize,
}

/// The names of users and groups.
#[derive(Debug)]
pub struct UserDb {
    root: PathBuf,
    check_interval: Duration,
    last_check: Instant,
    passwd_sig: Option<Signature>,
    group_sig: Option<Signature>,
    users: FxHashMap<u32, Arc<str>>,
    groups: FxHashMap<u32, Arc<str>>,
    stats: UsersStats,
}

/// `name:x:id:...` lines; the first entry of an id wins, as getpwuid would return.
fn parse_ids(text: &str) -> FxHashMap<u32, Arc<str>> {
    let mut out = FxHashMap::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') || line.starts_with('+') || line.starts_with('-') {
            continue;
        }
        let mut f = line.split(':');
        let (Some(name), Some(_pw), Some(id)) = (f.next(), f.next(), f.next()) else { continue };
        let Ok(id) = id.trim().parse::<u32>() else { continue };
        if name.is_empty() {
            continue;
        }
        out.entry(id).or_insert_with(|| Arc::from(name));
    }
    out
}

impl UserDb {
    /// Loads `<root>/etc/passwd` and `<root>/etc/group` (missing files give no names).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let mut db = Self {
            root: root.into(),
            check_interval: Duration::from_secs(5),
            last_check: Instant::now(),
            passwd_sig: None,
            group_sig: None,
            users: FxHashMap::default(),
            groups: FxHashMap::default(),
            stats: UsersStats::default(),
        };
        let _ = db.refresh();
        db
    }

    pub fn with_check_interval(mut self, d: Duration) -> Self {
        self.check_interval = d;
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join("etc").join(name)
    }

    fn signature(&self, name: &str) -> Option<Signature> {
        let md = fs::metadata(self.path(name)).ok()?;
        Some(Signature { mtime: md.modified().ok(), size: md.len(), ino: md.ino() })
    }

    fn load(&self, name: &str) -> Result<FxHashMap<u32, Arc<str>>, UsersError> {
        let path = self.path(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(parse_ids(&String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FxHashMap::default()),
            Err(source) => Err(UsersError::Read { path, source }),
        }
    }

    /// Checks both files now and reloads the ones that changed. Returns whether anything was
    /// reloaded. On a read error the previous names are kept.
    pub fn refresh(&mut self) -> Result<bool, UsersError> {
        self.last_check = Instant::now();
        self.stats.checks += 1;
        let mut reloaded = false;
        let sig = self.signature("passwd");
        if sig != self.passwd_sig || self.stats.reloads == 0 {
            self.users = self.load("passwd")?;
            self.passwd_sig = sig;
            reloaded = true;
        }
        let sig = self.signature("group");
        if sig != self.group_sig || self.stats.reloads == 0 {
            self.groups = self.load("group")?;
            self.group_sig = sig;
            reloaded = true;
        }
        if reloaded {
            self.stats.reloads += 1;
            self.stats.users = self.users.len();
            self.stats.groups = self.groups.len();
        }
        Ok(reloaded)
    }

    /// Refreshes when the check interval has passed since the last check. Cheap otherwise:
    /// call it before a batch of lookups.
    pub fn maybe_refresh(&mut self) -> bool {
        if self.last_check.elapsed() < self.check_interval {
            return false;
        }
        self.refresh().unwrap_or(false)
    }

    pub fn user_name(&self, uid: u32) -> Option<&str> {
        self.users.get(&uid).map(|s| &**s)
    }

    pub fn group_name(&self, gid: u32) -> Option<&str> {
        self.groups.get(&gid).map(|s| &**s)
    }

    /// Shared handles, for callers that keep names beyond the borrow.
    pub fn user(&self, uid: u32) -> Option<Arc<str>> {
        self.users.get(&uid).cloned()
    }

    pub fn group(&self, gid: u32) -> Option<Arc<str>> {
        self.groups.get(&gid).cloned()
    }

    pub fn stats(&self) -> UsersStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs::File, io::Write};

    fn write(dir: &std::path::Path, name: &str, text: &str, mtime_secs: u64) {
        let p = dir.join("etc").join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut f = File::create(&p).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime_secs)).unwrap();
    }

    #[test]
    fn parses_passwd_and_group() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "passwd", "root:x:0:0:root:/root:/bin/bash\n# comment\n\nbad line\nnobody:x:65534:65534::/:/usr/sbin/nologin\ntoor:x:0:0::/:/bin/sh\nnoid:x:abc:1::/:/bin/sh\n", 1);
        write(dir.path(), "group", "root:x:0:\nwheel:x:10:alice,bob\n", 1);
        let db = UserDb::new(dir.path());
        assert_eq!(db.user_name(0), Some("root"), "first entry of a uid wins");
        assert_eq!(db.user_name(65534), Some("nobody"));
        assert_eq!(db.user_name(1000), None);
        assert_eq!(db.group_name(10), Some("wheel"));
        assert_eq!(db.stats().users, 2);
    }

    #[test]
    fn missing_files_mean_no_names() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::new(dir.path());
        assert_eq!(db.user_name(0), None);
        assert_eq!(db.group_name(0), None);
    }

    #[test]
    fn reloads_when_the_file_changes_but_not_more_often_than_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "passwd", "alice:x:1000:1000::/:/bin/sh\n", 100);
        write(dir.path(), "group", "staff:x:50:\n", 100);
        let mut db = UserDb::new(dir.path()).with_check_interval(Duration::from_secs(3600));
        assert_eq!(db.user_name(1000), Some("alice"));
        let reloads = db.stats().reloads;

        write(dir.path(), "passwd", "alice2:x:1000:1000::/:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n", 200);
        assert!(!db.maybe_refresh(), "inside the check interval nothing is read");
        assert_eq!(db.user_name(1000), Some("alice"));

        assert!(db.refresh().unwrap(), "a forced check sees the new mtime");
        assert_eq!(db.user_name(1000), Some("alice2"));
        assert_eq!(db.user_name(1001), Some("bob"));
        assert_eq!(db.stats().reloads, reloads + 1);

        // unchanged files are not reloaded
        assert!(!db.refresh().unwrap());
        assert_eq!(db.stats().reloads, reloads + 1);

        // with a zero interval, maybe_refresh checks every time
        let mut db = db.with_check_interval(Duration::ZERO);
        write(dir.path(), "group", "staff2:x:50:\n", 300);
        assert!(db.maybe_refresh());
        assert_eq!(db.group_name(50), Some("staff2"));
    }

    #[test]
    fn same_mtime_different_size_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "passwd", "a:x:1:1::/:/bin/sh\n", 100);
        let mut db = UserDb::new(dir.path());
        write(dir.path(), "passwd", "abc:x:1:1::/:/bin/sh\n", 100);
        assert!(db.refresh().unwrap());
        assert_eq!(db.user_name(1), Some("abc"));
    }

    #[test]
    fn reads_this_machine() {
        let db = UserDb::new("/");
        if std::path::Path::new("/etc/passwd").exists() {
            assert_eq!(db.user_name(0), Some("root"));
        }
    }
}
