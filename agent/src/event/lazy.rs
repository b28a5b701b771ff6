//! Parts of a document that are printed when it is serialised, not when it is built: most
//! documents are read for a few fields only (the detector's view, the recorder's index row), and
//! the arguments and command line of a process otherwise cost an allocation per argument.

use std::{borrow::Cow, fmt};

use serde::{ser::SerializeSeq, Serialize};

use crate::{
    enrich::Ancestry,
    process::{table::Image, EntityIds},
};

/// A process's arguments: an exec record's, or a process image's.
#[derive(Debug, Clone, Copy)]
pub(super) enum Args<'a> {
    Record(&'a [String]),
    Image(&'a Image),
}

impl Serialize for Args<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Args::Record(a) => a.serialize(s),
            Args::Image(img) => {
                let mut seq = s.serialize_seq(Some(img.args_count()))?;
                for a in img.args() {
                    seq.serialize_element(a)?;
                }
                seq.end()
            }
        }
    }
}

/// A process's command line: an exec record's arguments shell-quoted (`a 'b c'`), or a process
/// image's joined by spaces.
#[derive(Debug, Clone, Copy)]
pub(super) enum CommandLine<'a> {
    Record(&'a [String]),
    Image(&'a Image),
}

impl fmt::Display for CommandLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CommandLine::Record(args) => {
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    if !a.is_empty() && !a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                        f.write_str(a)?;
                    } else {
                        f.write_str("'")?;
                        let mut parts = a.split('\'');
                        if let Some(first) = parts.next() {
                            f.write_str(first)?;
                        }
                        for p in parts {
                            f.write_str("'\\''")?;
                            f.write_str(p)?;
                        }
                        f.write_str("'")?;
                    }
                }
                Ok(())
            }
            CommandLine::Image(img) => f.write_str(img.command_line()),
        }
    }
}

impl Serialize for CommandLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            CommandLine::Record(_) => s.collect_str(self),
            CommandLine::Image(img) => s.serialize_str(img.command_line()),
        }
    }
}

/// An entity id: known (the process table's), or to be derived from pid and start time only
/// if the document is printed (a parent's, which the table's context usually replaces).
#[derive(Debug, Clone)]
pub(super) enum EntityId<'a> {
    Known(Cow<'a, str>),
    Of { ids: &'a EntityIds, pid: u32, start_ns: u64 },
}

impl Default for EntityId<'_> {
    fn default() -> Self {
        EntityId::Known(Cow::Borrowed(""))
    }
}

impl EntityId<'_> {
    pub(super) fn text(&self) -> Cow<'_, str> {
        match self {
            EntityId::Known(s) => Cow::Borrowed(s),
            EntityId::Of { ids, pid, start_ns } => Cow::Owned(ids.entity_id(*pid, *start_ns)),
        }
    }
}

impl Serialize for EntityId<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// A sha256: the table's digest (printed as hex when serialised), or text at hand.
#[derive(Debug, Clone, Copy)]
pub(super) enum Sha256<'a> {
    Digest(crate::process::hash::Sha256Digest),
    Text(&'a str),
}

impl Sha256<'_> {
    pub(super) fn text(&self) -> Cow<'_, str> {
        match self {
            Sha256::Digest(d) => Cow::Owned(d.to_hex()),
            Sha256::Text(t) => Cow::Borrowed(t),
        }
    }
}

impl Serialize for Sha256<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Sha256::Digest(d) => d.serialize(s),
            Sha256::Text(t) => s.serialize_str(t),
        }
    }
}

/// `process.ancestry`: serialised element by element, or (for serde_json's printer only, see
/// [`super::Doc::printing`]) as the JSON the ancestry printed once for all its events.
#[derive(Debug, Clone, Copy)]
pub(super) enum AncestryDoc<'a> {
    List(&'a Ancestry),
    Printed(&'a Ancestry),
}

impl Serialize for AncestryDoc<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AncestryDoc::List(a) => a[..].serialize(s),
            AncestryDoc::Printed(a) => a.json().serialize(s),
        }
    }
}

/// A user or group id, printed as ECS has it: a string.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdText(pub u32);

impl Serialize for IdText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(itoa::Buffer::new().format(self.0))
    }
}
