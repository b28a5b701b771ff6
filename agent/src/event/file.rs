//! ECS form of file records.

use agent_common::osprey_file_op as fo;
use serde::Serialize;

use super::lazy::{NumText, Octal};
use crate::decode::File;

#[derive(Serialize)]
pub struct FileDoc<'a> {
    pub path: &'a str,
    pub name: &'a str,
    pub directory: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<NumText<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Octal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<NumText<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<NumText<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// symlink target
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_path: Option<&'a str>,
    #[serde(rename = "Ext", skip_serializing_if = "Option::is_none")]
    pub ext: Option<FileExt<'a>>,
}

/// Elastic's extension for the previous path of a renamed file.
#[derive(Serialize)]
pub struct FileExt<'a> {
    pub original: Original<'a>,
}

#[derive(Serialize)]
pub struct Original<'a> {
    pub path: &'a str,
    pub name: &'a str,
}

#[derive(Serialize)]
pub struct FileMeta {
    pub op: &'static str,
    pub flags: u32,
    pub watched: bool,
    pub path_truncated: bool,
    pub device: u32,
    /// Records like this one folded in the kernel since the last one sent (`file.fold_window`).
    #[serde(skip_serializing_if = "super::is_zero")]
    pub folded: u32,
}

/// (event.type, event.action) of a file operation.
pub fn classify(op: u32) -> (&'static str, &'static str) {
    match op {
        fo::OSPREY_FILE_OPEN_WRITE => ("access", "open_write"),
        fo::OSPREY_FILE_CREATE => ("creation", "creation"),
        fo::OSPREY_FILE_MODIFY => ("change", "modification"),
        fo::OSPREY_FILE_READ => ("access", "read"),
        fo::OSPREY_FILE_UNLINK => ("deletion", "deletion"),
        fo::OSPREY_FILE_RMDIR => ("deletion", "rmdir"),
        fo::OSPREY_FILE_RENAME => ("change", "rename"),
        fo::OSPREY_FILE_CHMOD => ("change", "chmod"),
        fo::OSPREY_FILE_CHOWN => ("change", "chown"),
        fo::OSPREY_FILE_TRUNCATE => ("change", "truncate"),
        fo::OSPREY_FILE_LINK => ("creation", "link"),
        fo::OSPREY_FILE_SYMLINK => ("creation", "symlink"),
        _ => ("info", "unknown"),
    }
}

/// The last `b` in `s`, searched byte by byte from the end: a name is short, and `rfind`'s
/// searcher costs more to set up than the scan.
fn last(s: &str, b: u8) -> Option<usize> {
    s.bytes().rposition(|c| c == b)
}

fn split(path: &str) -> (&str, &str) {
    match last(path, b'/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn file_type(mode: u32) -> Option<&'static str> {
    match mode & 0o170000 {
        0o100000 => Some("file"),
        0o040000 => Some("dir"),
        0o120000 => Some("symlink"),
        0 => None,
        _ => Some("other"),
    }
}

/// The subject file is the new path for rename/link/symlink, the only path otherwise.
pub fn doc(f: &File) -> (FileDoc<'_>, FileMeta) {
    let moved = matches!(f.op, fo::OSPREY_FILE_RENAME | fo::OSPREY_FILE_LINK | fo::OSPREY_FILE_SYMLINK);
    let subject = match (&f.path2, moved) {
        (Some(p2), true) => p2.as_str(),
        _ => f.path.as_str(),
    };
    let (directory, name) = split(subject);
    let extension = last(name, b'.').map(|i| &name[i + 1..]).filter(|e| !e.is_empty() && !name.starts_with('.'));
    let known = f.ino != 0;
    let (orig_dir_name, target) = match f.op {
        fo::OSPREY_FILE_RENAME => (Some(split(&f.path).1), None),
        fo::OSPREY_FILE_SYMLINK => (None, Some(f.path.as_str())),
        fo::OSPREY_FILE_LINK => (None, Some(f.path.as_str())),
        _ => (None, None),
    };
    let mode = (known || f.op == fo::OSPREY_FILE_CHMOD).then_some(Octal(f.mode & 0o7777));
    // chown(-1) leaves an id unchanged: it is not reported.
    let (uid, gid) = if known || f.op == fo::OSPREY_FILE_CHOWN {
        ((f.uid != u32::MAX).then_some(NumText(f.uid)), (f.gid != u32::MAX).then_some(NumText(f.gid)))
    } else {
        (None, None)
    };
    let doc = FileDoc {
        path: subject,
        name,
        directory,
        extension,
        type_: if known { file_type(f.mode) } else { None },
        inode: known.then_some(NumText(f.ino)),
        mode,
        uid,
        gid,
        size: (known || f.op == fo::OSPREY_FILE_TRUNCATE).then_some(f.size),
        target_path: target,
        ext: orig_dir_name.map(|name| FileExt { original: Original { path: &f.path, name } }),
    };
    let meta = FileMeta {
        op: classify(f.op).1,
        flags: f.flags,
        watched: f.watched(),
        path_truncated: f.path_truncated(),
        device: f.dev,
        folded: f.folded,
    };
    (doc, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_directory_name_and_extension() {
        for path in ["/", "/a", "/a/b.txt", "a", "", "/a/.hidden", "/a/b.", "/a/b.tar.gz", "/dir.d/x", "/é/ü.tär", "//x"] {
            let want_split = match path.rfind('/') {
                Some(0) => ("/", &path[1..]),
                Some(i) => (&path[..i], &path[i + 1..]),
                None => ("", path),
            };
            assert_eq!(split(path), want_split, "{path:?}");
            let rec = crate::decode::raw::file(1, 1, fo::OSPREY_FILE_CREATE, "/x", None);
            let crate::decode::Record::File(mut f) = crate::decode::decode(&rec).unwrap() else { panic!() };
            f.path = path.into();
            let (d, _) = doc(&f);
            let name = want_split.1;
            let want_ext = name.rsplit_once('.').map(|(_, e)| e).filter(|e| !e.is_empty() && !name.starts_with('.'));
            assert_eq!((d.directory, d.name, d.extension), (want_split.0, name, want_ext), "{path:?}");
        }
    }
}
