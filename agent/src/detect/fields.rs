//! The event field model rules are evaluated against.
//!
//! A rule names fields (`Image`, `process.executable`); the compiler resolves each name once to a
//! [`Field`]: a dense [`FieldId`] for per-event caches, the dotted ECS path, and, for the fields
//! Osprey itself produces, a [`Known`] tag so a native event type can answer with a `match`
//! instead of a string lookup. Events implement [`EventFields`]; [`JsonEvent`] implements it over
//! an ECS JSON document, which is what `osprey rules test --events FILE` replays.

use std::borrow::Cow;

/// What kind of event a rule applies to: Sigma's `logsource.category` for `product: linux`,
/// plus Osprey's own categories (see docs/sigma-fields.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    ProcessCreation,
    ProcessTermination,
    FileEvent,
    FileChange,
    FileDelete,
    FileRename,
    FileAccess,
    NetworkConnection,
    DnsQuery,
    PrivilegeChange,
    ModuleLoad,
    Bpf,
    Ptrace,
    MemoryExec,
    Namespace,
}

impl Category {
    pub const ALL: [Category; 15] = [
        Category::ProcessCreation,
        Category::ProcessTermination,
        Category::FileEvent,
        Category::FileChange,
        Category::FileDelete,
        Category::FileRename,
        Category::FileAccess,
        Category::NetworkConnection,
        Category::DnsQuery,
        Category::PrivilegeChange,
        Category::ModuleLoad,
        Category::Bpf,
        Category::Ptrace,
        Category::MemoryExec,
        Category::Namespace,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The `logsource.category` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Category::ProcessCreation => "process_creation",
            Category::ProcessTermination => "process_termination",
            Category::FileEvent => "file_event",
            Category::FileChange => "file_change",
            Category::FileDelete => "file_delete",
            Category::FileRename => "file_rename",
            Category::FileAccess => "file_access",
            Category::NetworkConnection => "network_connection",
            Category::DnsQuery => "dns_query",
            Category::PrivilegeChange => "privilege_change",
            Category::ModuleLoad => "module_load",
            Category::Bpf => "bpf",
            Category::Ptrace => "ptrace",
            Category::MemoryExec => "memory_exec",
            Category::Namespace => "namespace",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Classifies an ECS event by `event.category`, `event.type` and `event.action` (the table is in
    /// docs/sigma-fields.md). Osprey's own categories are recognised by `event.action`.
    pub fn from_ecs(categories: &[&str], types: &[&str], action: &str) -> Option<Self> {
        let lowered;
        let action = if action.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = action.to_ascii_lowercase();
            lowered.as_str()
        } else {
            action
        };
        let by_action = match action {
            "privilege_change" | "setuid" | "setgid" | "setreuid" | "setregid" | "setresuid" | "setresgid"
            | "setfsuid" | "setfsgid" | "capset" | "setgroups" | "unexpected_root" => Some(Category::PrivilegeChange),
            "module_load" | "init_module" | "finit_module" | "load_module" => Some(Category::ModuleLoad),
            "bpf" | "bpf_load" | "bpf_prog_load" | "bpf_map_create" => Some(Category::Bpf),
            "ptrace" | "ptrace_attach" | "ptrace_traceme" | "process_vm_writev" => Some(Category::Ptrace),
            "memory_exec" | "mprotect_exec" | "mmap_exec" | "memfd_create" => Some(Category::MemoryExec),
            "namespace" | "namespace_change" | "setns" | "unshare" | "mount" | "umount" => Some(Category::Namespace),
            // Opening an existing file for writing is Sysmon's "file created or overwritten".
            "open_write" => Some(Category::FileEvent),
            _ => None,
        };
        if by_action.is_some() {
            return by_action;
        }
        let has = |list: &[&str], v: &str| list.iter().any(|x| x.eq_ignore_ascii_case(v));
        if has(categories, "process") {
            if has(types, "start") && action != "fork" {
                return Some(Category::ProcessCreation);
            }
            if has(types, "end") {
                return Some(Category::ProcessTermination);
            }
            return None;
        }
        if has(categories, "file") {
            return if action == "rename" || action == "renamed" || action == "moved" {
                Some(Category::FileRename)
            } else if has(types, "deletion") {
                Some(Category::FileDelete)
            } else if has(types, "creation") {
                Some(Category::FileEvent)
            } else if has(types, "change") {
                Some(Category::FileChange)
            } else if has(types, "access") {
                Some(Category::FileAccess)
            } else {
                None
            };
        }
        if has(categories, "network") {
            // Osprey's DNS query as sent: the answer (`dns_query`) is the event rules see, once.
            if action == "dns_request" {
                return None;
            }
            if action.starts_with("dns")
                || action == "lookup_requested"
                || has(types, "protocol") && action.contains("dns")
            {
                return Some(Category::DnsQuery);
            }
            if has(types, "connection") || has(types, "start") {
                return Some(Category::NetworkConnection);
            }
            return None;
        }
        if has(categories, "driver") {
            return Some(Category::ModuleLoad);
        }
        None
    }
}

macro_rules! known_fields {
    ($($v:ident => $n:literal,)*) => {
        /// The ECS fields Osprey produces (or will): a native event type answers these by `match`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Known { $($v,)* }
        impl Known {
            pub const ALL: &'static [Known] = &[$(Known::$v,)*];
            /// The dotted ECS name.
            pub fn name(self) -> &'static str {
                match self { $(Known::$v => $n,)* }
            }
            pub fn from_name(name: &str) -> Option<Known> {
                match name { $($n => Some(Known::$v),)* _ => None }
            }
        }
    };
}

known_fields! {
    Timestamp => "@timestamp",
    EventKind => "event.kind",
    EventCategory => "event.category",
    EventType => "event.type",
    EventAction => "event.action",
    HostHostname => "host.hostname",
    HostId => "host.id",
    ProcessPid => "process.pid",
    ProcessEntityId => "process.entity_id",
    ProcessExecutable => "process.executable",
    ProcessName => "process.name",
    ProcessArgs => "process.args",
    ProcessArgsCount => "process.args_count",
    ProcessCommandLine => "process.command_line",
    ProcessWorkingDirectory => "process.working_directory",
    ProcessStart => "process.start",
    ProcessExitCode => "process.exit_code",
    ProcessUserId => "process.user.id",
    ProcessUserName => "process.user.name",
    ProcessGroupId => "process.group.id",
    ProcessGroupName => "process.group.name",
    ProcessRealUserId => "process.real_user.id",
    ProcessSavedUserId => "process.saved_user.id",
    ProcessHashSha256 => "process.hash.sha256",
    ProcessParentPid => "process.parent.pid",
    ProcessParentEntityId => "process.parent.entity_id",
    ProcessParentExecutable => "process.parent.executable",
    ProcessParentName => "process.parent.name",
    ProcessParentArgs => "process.parent.args",
    ProcessParentCommandLine => "process.parent.command_line",
    ProcessParentUserId => "process.parent.user.id",
    ProcessParentUserName => "process.parent.user.name",
    UserAuditId => "user.audit.id",
    ContainerId => "container.id",
    FilePath => "file.path",
    FileName => "file.name",
    FileDirectory => "file.directory",
    FileMode => "file.mode",
    FileOwner => "file.owner",
    FileHashSha256 => "file.hash.sha256",
    FileOriginalPath => "file.Ext.original.path",
    SourceIp => "source.ip",
    SourcePort => "source.port",
    SourceDomain => "source.domain",
    DestinationIp => "destination.ip",
    DestinationPort => "destination.port",
    DestinationDomain => "destination.domain",
    NetworkTransport => "network.transport",
    NetworkDirection => "network.direction",
    NetworkProtocol => "network.protocol",
    DnsQuestionName => "dns.question.name",
    DnsQuestionType => "dns.question.type",
    DnsResolvedIp => "dns.resolved_ip",
    DnsResponseCode => "dns.response_code",
    OspreyExecSetuid => "osprey.exec.setuid",
    OspreyExecMemfd => "osprey.exec.memfd",
    OspreyExecDeleted => "osprey.exec.deleted",
}

/// Dense index of a field within one rule set (per-event caches are arrays indexed by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(pub u32);

impl FieldId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A field name resolved at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    id: FieldId,
    name: Box<str>,
    /// Byte ranges of the dot-separated segments of `name`.
    segs: Box<[(u32, u32)]>,
    known: Option<Known>,
}

impl Field {
    pub fn new(id: FieldId, name: &str) -> Self {
        let mut segs = Vec::new();
        let mut start = 0usize;
        for (i, b) in name.bytes().enumerate() {
            if b == b'.' {
                segs.push((start as u32, i as u32));
                start = i + 1;
            }
        }
        segs.push((start as u32, name.len() as u32));
        Self { id, name: name.into(), segs: segs.into(), known: Known::from_name(name) }
    }

    pub fn id(&self) -> FieldId {
        self.id
    }

    /// The dotted ECS name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn known(&self) -> Option<Known> {
        self.known
    }

    /// How many dot-separated segments the name has.
    pub(crate) fn segments(&self) -> usize {
        self.segs.len()
    }

    /// The dotted key made of segments `from..=to` (`process.parent` for 0..=1).
    pub(crate) fn key(&self, from: usize, to: usize) -> &str {
        let (Some(a), Some(b)) = (self.segs.get(from), self.segs.get(to)) else { return "" };
        self.name.get(a.0 as usize..b.1 as usize).unwrap_or("")
    }
}

/// One value of a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
}

impl Scalar<'_> {
    /// As a number, parsing numeric strings ("443").
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::UInt(u) => Some(*u as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Bool(_) => None,
        }
    }

    /// Appends the value as text (numbers in decimal, booleans as `true`/`false`).
    pub fn write_text(&self, out: &mut String) {
        self.with_text(|t| out.push_str(t));
    }

    /// `f` of the value as text: numbers printed on the stack (no `fmt`, no allocation), but
    /// for floats.
    pub fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            Scalar::Str(s) => f(s),
            Scalar::Int(i) => f(itoa::Buffer::new().format(*i)),
            Scalar::UInt(u) => f(itoa::Buffer::new().format(*u)),
            Scalar::Float(x) => f(&x.to_string()),
            Scalar::Bool(b) => f(if *b { "true" } else { "false" }),
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_text(&mut s);
        s
    }
}

/// What an event holds for a field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// The event has no such field.
    Missing,
    /// The field is present with a null value.
    Null,
    One(Scalar<'a>),
    /// A list (e.g. `process.args`); matching applies to each element.
    Many(Vec<Scalar<'a>>),
    /// Present but not a scalar (an object): exists, matches no value.
    Other,
}

impl FieldValue<'_> {
    /// The same value, borrowing its strings from `self`.
    pub fn borrowed(&self) -> FieldValue<'_> {
        fn b<'s>(s: &'s Scalar<'_>) -> Scalar<'s> {
            match s {
                Scalar::Str(t) => Scalar::Str(Cow::Borrowed(t.as_ref())),
                Scalar::Int(i) => Scalar::Int(*i),
                Scalar::UInt(u) => Scalar::UInt(*u),
                Scalar::Float(f) => Scalar::Float(*f),
                Scalar::Bool(x) => Scalar::Bool(*x),
            }
        }
        match self {
            FieldValue::Missing => FieldValue::Missing,
            FieldValue::Null => FieldValue::Null,
            FieldValue::One(s) => FieldValue::One(b(s)),
            FieldValue::Many(v) => FieldValue::Many(v.iter().map(b).collect()),
            FieldValue::Other => FieldValue::Other,
        }
    }

    pub fn exists(&self) -> bool {
        !matches!(self, FieldValue::Missing)
    }

    /// Calls `f` for each scalar (one, or each element of a list).
    pub fn for_each(&self, mut f: impl FnMut(&Scalar<'_>)) {
        match self {
            FieldValue::One(s) => f(s),
            FieldValue::Many(v) => v.iter().for_each(f),
            _ => {}
        }
    }

    /// True if `f` holds for any scalar.
    pub fn any(&self, mut f: impl FnMut(&Scalar<'_>) -> bool) -> bool {
        match self {
            FieldValue::One(s) => f(s),
            FieldValue::Many(v) => v.iter().any(f),
            _ => false,
        }
    }
}

/// An event as rules see it.
pub trait EventFields {
    /// The logsource category this event belongs to (`None`: no rule category applies; IoC lists
    /// still see it).
    fn category(&self) -> Option<Category>;
    /// Event time in ns since the Unix epoch, for correlation windows.
    fn timestamp_ns(&self) -> Option<u64>;
    /// The value of a field.
    fn get(&self, field: &Field) -> FieldValue<'_>;
    /// Calls `f` on every string value of the event (keyword searches); stops and returns true as
    /// soon as `f` does.
    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_events_classify_once_per_flow() {
        let c = |t: &str, a: &str| Category::from_ecs(&["network"], &[t], a);
        assert_eq!(c("connection", "connection_attempted"), Some(Category::NetworkConnection));
        assert_eq!(c("connection", "connection_accepted"), Some(Category::NetworkConnection));
        assert_eq!(c("end", "connection_closed"), None);
        assert_eq!(c("info", "connection_established"), None);
        assert_eq!(c("protocol", "dns_query"), Some(Category::DnsQuery));
        assert_eq!(c("protocol", "dns_request"), None);
    }

    #[test]
    fn known_fields_resolve() {
        assert_eq!(Field::new(FieldId(3), "process.executable").known(), Some(Known::ProcessExecutable));
        assert_eq!(Field::new(FieldId(3), "process.foo").known(), None);
        for k in Known::ALL {
            assert_eq!(Known::from_name(k.name()), Some(*k));
        }
    }
}
