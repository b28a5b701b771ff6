//! The event model and its ECS JSON form (one object per line; DESIGN.md "Event schema").

mod emit;
mod file;
mod lazy;
mod net;
mod print;
mod system;
mod row;
mod view;

pub use self::view::EcsView;

use std::{borrow::Cow, sync::Arc};

use agent_common::RecordType;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::{
    alerting::{AlertEvent, AlertMeta, RuleDoc, ThreatDoc},
    decode::{Exec, Exit, Fork, Header, Record},
    enrich::{Context, LateHash, ProcCtx},
    output::Facts,
    process::{
        table::{Image, PrintedAs},
        EntityIds, Host,
    },
};

/// What flows from the sensor through the pipeline to the outputs.
#[derive(Debug, Clone)]
pub struct Event {
    /// Wall-clock time of the event, ns since the Unix epoch.
    pub wall_ns: u64,
    pub body: EventBody,
    /// What the process table adds: image, parent, ancestry, users, container, hash.
    pub ctx: Option<Arc<Context>>,
}

#[derive(Debug, Clone)]
pub enum EventBody {
    Record(Record),
    /// The kernel could not deliver some records (ring buffer full): how many, since the last
    /// report, by type. Loss is data, so it is reported in the stream too.
    Loss(Vec<(RecordType, u64)>),
    /// The sha256 of an executable that was still being hashed when its exec event left.
    Hash(LateHash),
    /// A rule, IoC or correlation matched.
    Alert(Box<AlertEvent>),
    /// A response action was taken (or refused, or only recorded in monitor mode).
    Response(Box<crate::respond::ResponseEvent>),
    /// Self-protection's signed heartbeat (docs/self-protection.md).
    Heartbeat(Box<crate::protect::heartbeat::Heartbeat>),
}

impl Event {
    pub fn record(&self) -> Option<&Record> {
        match &self.body {
            EventBody::Record(r) => Some(r),
            EventBody::Loss(_) | EventBody::Hash(_) | EventBody::Alert(_) | EventBody::Response(_) | EventBody::Heartbeat(_) => None,
        }
    }
}

/// Turns events into ECS documents for this host.
#[derive(Debug, Clone)]
pub struct Ecs {
    host: Host,
    /// `host` as documents print it.
    host_printed: Box<RawValue>,
    ids: EntityIds,
    boot_wall_ns: u64,
}

#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Time,
    /// `"event":{…}` as printed once for every event of its kind (for [`Doc::emit`] only: see
    /// [`Doc::printing`]).
    #[serde(skip)]
    event_printed: Option<&'static str>,
    #[serde(skip_serializing_if = "EventMeta::is_printed")]
    event: EventMeta,
    host: lazy::HostDoc<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Process<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<file::FileDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<system::UserDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<net::Endpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<net::Endpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<net::NetworkDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<Box<net::DnsDoc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<Box<RuleDoc<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat: Option<Box<ThreatDoc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<ContainerDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orchestrator: Option<Orchestrator<'a>>,
    osprey: Osprey<'a>,
}

impl Doc<'_> {
    /// The document as [`Doc::emit`] prints it: parts printed once for many events (the event
    /// kind, the host, the images, the shared ancestry, the ids) are copied in as the JSON they
    /// already are. The fields they replace are cleared, so only [`Doc::emit`] prints the
    /// document whole from then on (serde would leave those parts out).
    fn printing(&mut self) {
        if let Some(printed) = lazy::printed_event(&self.event) {
            self.event_printed = Some(printed);
            self.event.printed = true;
        }
        self.host.printed = true;
        if let Some(p) = self.process.as_mut() {
            // Printed by the code that prints them when they are not kept (emit.rs), from the
            // fields the image set.
            if let Some(img) = p.image {
                let run = img.printed(PrintedAs::Process, |_| p.image_run());
                p.image_printed = Some(run);
                (p.name, p.executable, p.args, p.args_count, p.command_line, p.working_directory) = Default::default();
            }
            if let Some(par) = p.parent.as_mut() {
                if let Some(img) = par.image {
                    let run = img.printed(PrintedAs::Parent, |_| par.image_run());
                    par.image_printed = Some(run);
                    (par.executable, par.name, par.args, par.command_line) = Default::default();
                }
            }
            if let Some(prev) = p.previous.as_mut() {
                let run = prev.image.printed(PrintedAs::Previous, |_| prev.run());
                prev.printed = Some(run);
            }
            if let Some(lazy::AncestryDoc::List(a)) = p.ancestry {
                p.ancestry = Some(lazy::AncestryDoc::Printed(a));
            }
            if let (Some(u), Some(g), Some(ru), Some(rg)) = (&p.user, &p.group, &p.real_user, &p.real_group) {
                if let Some(printed) = lazy::printed_ids([u, g, ru, rg]) {
                    p.ids_printed = Some(printed);
                    (p.user, p.group, p.real_user, p.real_group) = Default::default();
                }
            }
        }
    }
}

/// The fields of a process that are its image's, as [`fill_image`] sets them.
struct ProcessImage<'a> {
    name: &'a str,
    executable: &'a str,
    args: lazy::Args<'a>,
    args_count: u32,
    command_line: lazy::CommandLine<'a>,
    working_directory: &'a str,
}

impl<'a> ProcessImage<'a> {
    fn of(img: &'a Image) -> Self {
        ProcessImage {
            name: img.name(),
            executable: img.exe(),
            args: lazy::Args::Image(img),
            args_count: img.args_count() as u32,
            command_line: lazy::CommandLine::Image(img),
            working_directory: img.cwd(),
        }
    }
}

/// The fields of a parent that are its image's, as [`Ecs::apply_ctx`] sets them.
struct ParentImage<'a> {
    executable: &'a str,
    name: &'a str,
    args: lazy::Args<'a>,
    command_line: lazy::CommandLine<'a>,
}

impl<'a> ParentImage<'a> {
    fn of(img: &'a Image) -> Self {
        ParentImage { executable: img.exe(), name: img.name(), args: lazy::Args::Image(img), command_line: lazy::CommandLine::Image(img) }
    }
}

#[derive(Serialize)]
struct ContainerDoc<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<&'static str>,
}

#[derive(Serialize)]
struct Orchestrator<'a> {
    #[serde(rename = "type")]
    type_: &'static str,
    resource: PodResource<'a>,
}

#[derive(Serialize)]
struct PodResource<'a> {
    #[serde(rename = "type")]
    type_: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    qos: Option<&'static str>,
}

#[derive(Serialize)]
struct EventMeta {
    /// Printed already, as [`Doc::event_printed`].
    #[serde(skip)]
    printed: bool,
    /// ECS `event.id`: alerts carry one, for `osprey story ALERT_ID`.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    type_: [&'static str; 1],
    action: &'static str,
    module: &'static str,
    dataset: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
}

impl EventMeta {
    fn is_printed(&self) -> bool {
        self.printed
    }

    fn facts(&self) -> Facts {
        Facts { kind: self.kind, category: self.category[0], action: self.action, severity: self.severity.map(i64::from) }
    }
}

#[derive(Serialize)]
struct Id<'a> {
    id: lazy::NumText<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

fn id<'a>(v: u32) -> Id<'a> {
    Id { id: lazy::NumText(v), name: None }
}

#[derive(Serialize, Default)]
struct Parent<'a> {
    pid: u32,
    entity_id: lazy::EntityId<'a>,
    start: Time,
    /// As in [`Process`]: the image the fields from `executable` on are of, and their print.
    #[serde(skip)]
    image: Option<&'a Image>,
    #[serde(skip)]
    image_printed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    executable: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<lazy::Args<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<lazy::CommandLine<'a>>,
}

#[derive(Serialize)]
struct Previous<'a> {
    /// The image before the exec, whose fields these are.
    #[serde(skip)]
    image: &'a Image,
    /// Its fields as the image printed them once (for [`Doc::emit`] only: see
    /// [`Doc::printing`]).
    #[serde(skip)]
    printed: Option<&'a str>,
    executable: &'a str,
    args: lazy::Args<'a>,
}

impl<'a> Previous<'a> {
    fn of(img: &'a Image) -> Self {
        Previous { image: img, printed: None, executable: img.exe(), args: lazy::Args::Image(img) }
    }
}

#[derive(Serialize)]
struct Hash<'a> {
    sha256: lazy::Sha256<'a>,
}

#[derive(Serialize)]
struct Thread {
    id: u32,
}

#[derive(Serialize, Default)]
struct Process<'a> {
    pid: u32,
    entity_id: lazy::EntityId<'a>,
    /// The image the fields from `name` to `working_directory` are of, if it is the table's.
    #[serde(skip)]
    image: Option<&'a Image>,
    /// Those fields as the image printed them once (for [`Doc::emit`] only: see
    /// [`Doc::printing`]).
    #[serde(skip)]
    image_printed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    executable: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<lazy::Args<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<lazy::CommandLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_directory: Option<&'a str>,
    start: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<Thread>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<Parent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ancestry: Option<lazy::AncestryDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<Previous<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<Hash<'a>>,
    /// `user` to `real_group` as printed once for every event with the same ids and names
    /// (for [`Doc::emit`] only: see [`Doc::printing`]).
    #[serde(skip)]
    ids_printed: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<Id<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Id<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    real_user: Option<Id<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    real_group: Option<Id<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_user: Option<Id<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_group: Option<Id<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
}

#[derive(Serialize, Default)]
struct Osprey<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ktime_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<ExecMeta<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fork: Option<ForkMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit: Option<ExitMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lost: Option<Vec<LostMeta>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hash_pending: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    process_incomplete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<Box<AlertMeta<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<file::FileMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cred: Option<Box<system::CredMeta>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<Box<system::SystemMeta<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a crate::respond::Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    net: Option<net::NetMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<net::DnsMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat: Option<&'a crate::protect::heartbeat::Heartbeat>,
}

#[derive(Serialize)]
struct ExecMeta<'a> {
    filename: &'a str,
    memfd: bool,
    deleted: bool,
    setuid: bool,
    setgid: bool,
    caps_gained: bool,
    args_truncated: bool,
    executable_truncated: bool,
    cwd_truncated: bool,
    previous_credentials_known: bool,
    previous_user: Id<'a>,
    previous_effective_user: Id<'a>,
    inode: u64,
    device: u32,
    mode: lazy::Octal,
    size: u64,
    ctime_ns: u64,
    previous_pid: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    blocked: bool,
}

#[derive(Serialize)]
struct ForkMeta {
    thread: bool,
}

#[derive(Serialize)]
struct ExitMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    core_dumped: bool,
    thread: bool,
}

#[derive(Serialize)]
struct LostMeta {
    #[serde(rename = "type")]
    kind: &'static str,
    count: u64,
}

pub fn rfc3339(ns: u64) -> String {
    Time(ns).to_string()
}

/// A wall-clock time (ns since the epoch) that a document prints as RFC 3339 when it is
/// serialised, not when it is built (most documents are read for a few fields only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Time(u64);

impl Time {
    /// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, as `humantime::format_rfc3339_nanos` prints it, on
    /// the stack: every document has two to four of these. (A u64 of ns ends in 2554.) The
    /// date and time of day of recent seconds are kept per thread, four slots by the second's
    /// last two bits: a document's times (the event's, the process's and its parent's start)
    /// and the next document's are mostly of a few seconds.
    fn text(self) -> [u8; 30] {
        type Slot = std::cell::Cell<(u64, [u8; 19])>;
        thread_local! {
            static RECENT: [Slot; 4] = const { [const { std::cell::Cell::new((u64::MAX, [0; 19])) }; 4] };
        }
        let secs = self.0 / 1_000_000_000;
        let nanos = (self.0 % 1_000_000_000) as u32;
        let mut b = *b"0000-00-00T00:00:00.000000000Z";
        let slot = (secs % 4) as usize;
        let prefix = match RECENT.try_with(|r| r[slot].get()) {
            Ok((s, text)) if s == secs => text,
            recent => {
                let text = Self::second(secs);
                if recent.is_ok() {
                    RECENT.with(|r| r[slot].set((secs, text)));
                }
                text
            }
        };
        b[..19].copy_from_slice(&prefix);
        b[20] = b'0' + (nanos / 100_000_000) as u8;
        let r = nanos % 100_000_000;
        for (at, v) in [(21, r / 1_000_000), (23, r / 10_000 % 100), (25, r / 100 % 100), (27, r % 100)] {
            pair(&mut b, at, v);
        }
        b
    }

    /// [`Time::text`] in quotes: a JSON string with nothing to escape. Kept per thread in
    /// eight slots by a hash of the time: the start times of a process and of its parent are
    /// printed again with each of the process's events.
    fn quoted(self) -> [u8; 32] {
        type Slot = std::cell::Cell<Option<(u64, [u8; 32])>>;
        thread_local! {
            static KEPT: [Slot; 8] = const { [const { std::cell::Cell::new(None) }; 8] };
        }
        let slot = (self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 61) as usize;
        match KEPT.try_with(|k| k[slot].get()) {
            Ok(Some((ns, q))) if ns == self.0 => q,
            kept => {
                let mut q = [b'"'; 32];
                q[1..31].copy_from_slice(&self.text());
                if kept.is_ok() {
                    KEPT.with(|k| k[slot].set(Some((self.0, q))));
                }
                q
            }
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS` of `secs` since the epoch.
    fn second(secs: u64) -> [u8; 19] {
        let (days, sod) = (secs / 86_400, (secs % 86_400) as u32);
        // u64 ns / 86,400 s fits an i64; the year stays four digits (≤ 2554).
        let (year, month, day) = civil_from_days(days as i64);
        let mut b = *b"0000-00-00T00:00:00";
        let year = year as u32;
        for (at, v) in [(0, year / 100), (2, year % 100), (5, month), (8, day), (11, sod / 3600), (14, sod / 60 % 60), (17, sod % 60)] {
            pair(&mut b, at, v);
        }
        b
    }
}

/// Writes `v` (< 100) as two digits at `b[at..]`.
#[inline(always)]
fn pair(b: &mut [u8], at: usize, v: u32) {
    const DIGITS: [[u8; 2]; 100] = {
        let mut t = [[0; 2]; 100];
        let mut i = 0;
        while i < 100 {
            t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
            i += 1;
        }
        t
    };
    b[at..at + 2].copy_from_slice(&DIGITS[v as usize % 100]);
}

/// Days since 1970-01-01 as a proleptic Gregorian (year, month, day) (Howard Hinnant's
/// `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // ASCII digits and separators only.
        f.write_str(std::str::from_utf8(&self.text()).unwrap_or_default())
    }
}

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.text();
        // SAFETY: `text` is ASCII digits and separators.
        s.serialize_str(unsafe { std::str::from_utf8_unchecked(&text) })
    }
}

/// `a 'b c'` style: arguments with spaces or quotes are single-quoted, as a shell would need.
pub fn command_line(args: &[String]) -> String {
    lazy::CommandLine::Record(args).to_string()
}

/// serde's `skip_serializing_if` for counts that are absent when zero.
fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl Ecs {
    /// `boot_wall_ns` is the wall-clock time of boot: realtime − boottime.
    pub fn new(host: Host, boot_wall_ns: u64) -> Self {
        let ids = EntityIds::new(&host.boot_id);
        let host_printed = serde_json::value::to_raw_value(&host).expect("a host prints");
        Self { host, host_printed, ids, boot_wall_ns }
    }

    pub fn ids(&self) -> &EntityIds {
        &self.ids
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Wall-clock ns of a kernel boot-time timestamp.
    pub fn wall_ns(&self, ktime_ns: u64) -> u64 {
        self.boot_wall_ns + ktime_ns
    }

    fn base_process<'a>(&'a self, h: &'a Header) -> Process<'a> {
        Process {
            pid: h.pid,
            entity_id: lazy::EntityId::Of { ids: &self.ids, pid: h.pid, start_ns: h.start_ns },
            name: Some(&h.comm),
            start: Time(self.wall_ns(h.start_ns)),
            thread: Some(Thread { id: h.tid }),
            parent: Some(Parent {
                pid: h.ppid,
                entity_id: lazy::EntityId::Of { ids: &self.ids, pid: h.ppid, start_ns: h.parent_start_ns },
                start: Time(self.wall_ns(h.parent_start_ns)),
                ..Default::default()
            }),
            user: Some(id(h.euid)),
            group: Some(id(h.egid)),
            real_user: Some(id(h.uid)),
            real_group: Some(id(h.gid)),
            ..Default::default()
        }
    }

    /// `osprey.*` of a record's header, set in the document's own (documents are kilobytes:
    /// they are filled in place, not built in parts and moved in).
    fn set_meta(o: &mut Osprey<'_>, h: &Header) {
        o.record = Some(h.kind.name());
        o.cpu = Some(h.cpu);
        o.ktime_ns = Some(h.ktime_ns);
        o.cgroup_id = Some(h.cgroup_id);
    }

    fn exec_doc<'a>(&'a self, e: &'a Exec, doc: &mut Doc<'a>) {
        doc.event = meta("process", "start", "exec");
        let p = doc.process.insert(self.base_process(&e.hdr));
        p.name = Some(basename(&e.exe_path));
        p.executable = Some(&e.exe_path);
        p.args = Some(lazy::Args::Record(&e.args));
        p.args_count = Some(e.argc);
        p.command_line = Some(lazy::CommandLine::Record(&e.args));
        p.working_directory = Some(&e.cwd);
        p.saved_user = Some(id(e.suid));
        p.saved_group = Some(id(e.sgid));
        Self::set_meta(&mut doc.osprey, &e.hdr);
        let f = e.flags;
        doc.osprey.exec = Some(ExecMeta {
            filename: &e.filename,
            memfd: f.memfd(),
            deleted: f.deleted(),
            setuid: f.setuid(),
            setgid: f.setgid(),
            caps_gained: f.caps_gained(),
            args_truncated: f.args_truncated(),
            executable_truncated: f.path_truncated(),
            cwd_truncated: f.cwd_truncated(),
            previous_credentials_known: !f.cred_unknown(),
            previous_user: id(e.old_uid),
            previous_effective_user: id(e.old_euid),
            inode: e.exe_ino,
            device: e.exe_dev,
            mode: lazy::Octal(e.exe_mode),
            size: e.exe_size,
            ctime_ns: e.exe_ctime_ns,
            previous_pid: e.old_pid,
            blocked: f.blocked(),
        });
    }

    fn fork_doc<'a>(&'a self, f: &'a Fork, doc: &mut Doc<'a>) {
        // The subject is the child; its parent is the task that cloned it.
        let h = &f.hdr;
        doc.event = meta("process", "start", "fork");
        let p = doc.process.insert(self.base_process(h));
        p.pid = f.child_pid;
        p.entity_id = lazy::EntityId::Of { ids: &self.ids, pid: f.child_pid, start_ns: f.child_start_ns };
        p.start = Time(self.wall_ns(f.child_start_ns));
        p.thread = Some(Thread { id: f.child_tid });
        p.parent = Some(Parent {
            pid: h.pid,
            entity_id: lazy::EntityId::Of { ids: &self.ids, pid: h.pid, start_ns: h.start_ns },
            start: Time(self.wall_ns(h.start_ns)),
            ..Default::default()
        });
        Self::set_meta(&mut doc.osprey, h);
        doc.osprey.fork = Some(ForkMeta { thread: f.thread });
    }

    fn exit_doc<'a>(&'a self, x: &'a Exit, doc: &mut Doc<'a>) {
        doc.event = meta("process", "end", "exit");
        let p = doc.process.insert(self.base_process(&x.hdr));
        // ECS has one exit code; a death by signal reads as 128 + signal, as shells report it.
        p.exit_code = Some(x.exit_status().unwrap_or_else(|| 128 + x.signal().unwrap_or(0)));
        Self::set_meta(&mut doc.osprey, &x.hdr);
        doc.osprey.exit = Some(ExitMeta {
            status: x.exit_status(),
            signal: x.signal(),
            core_dumped: x.core_dumped(),
            thread: x.thread,
        });
    }

    /// Appends the event's ECS JSON object (no newline) to `out`.
    pub fn write(&self, ev: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
        self.encode(ev, out).map(drop)
    }

    /// Appends the event's ECS JSON object (no newline) to `out` and returns its `event.*`
    /// facts, from the one typed document both are made of.
    pub fn encode(&self, ev: &Event, out: &mut Vec<u8>) -> serde_json::Result<Facts> {
        // Filled where it lies: a document is kilobytes, and moving it costs a memcpy.
        let mut doc = self.blank();
        self.fill(ev, &mut doc);
        doc.printing();
        doc.emit(out)?;
        Ok(doc.event.facts())
    }

    /// The `event.*` facts sinks filter and route on, as the document has them (nothing printed).
    pub fn facts(&self, ev: &Event) -> Facts {
        Facts::known(ev).unwrap_or_else(|| self.doc(ev).event.facts())
    }

    /// The event's ECS document, typed: what [`Ecs::write`] and [`Ecs::to_value`] serialise.
    fn doc<'a>(&'a self, ev: &'a Event) -> Doc<'a> {
        let mut doc = self.blank();
        self.fill(ev, &mut doc);
        doc
    }

    /// A document with nothing in it yet (an `events_lost` host event, until filled).
    fn blank(&self) -> Doc<'_> {
        Doc {
            timestamp: Time(0),
            event_printed: None,
            event: meta("host", "info", "events_lost"),
            host: lazy::HostDoc { host: &self.host, json: &self.host_printed, printed: false },
            process: None,
            file: None,
            user: None,
            source: None,
            destination: None,
            network: None,
            dns: None,
            rule: None,
            threat: None,
            container: None,
            orchestrator: None,
            osprey: Osprey::default(),
        }
    }

    /// Fills a [`Ecs::blank`] document with the event.
    fn fill<'a>(&'a self, ev: &'a Event, doc: &mut Doc<'a>) {
        doc.timestamp = Time(ev.wall_ns);
        match &ev.body {
            EventBody::Record(Record::Exec(e)) => {
                self.exec_doc(e, doc);
            }
            EventBody::Record(Record::Fork(f)) => {
                self.fork_doc(f, doc);
            }
            EventBody::Record(Record::Exit(x)) => {
                self.exit_doc(x, doc);
            }
            EventBody::Record(Record::File(f)) => {
                let (fdoc, fmeta) = file::doc(f);
                let (type_, action) = file::classify(f.op);
                doc.event = meta("file", type_, action);
                doc.event.dataset = "osprey.file";
                doc.process = Some(self.base_process(&f.hdr));
                doc.file = Some(fdoc);
                Self::set_meta(&mut doc.osprey, &f.hdr);
                doc.osprey.file = Some(fmeta);
            }
            EventBody::Record(Record::Cred(c)) => {
                let (user, cmeta) = system::cred_doc(c);
                doc.event = meta("process", "change", cmeta.op);
                doc.event.dataset = "osprey.credentials";
                doc.process = Some(self.base_process(&c.hdr));
                doc.user = Some(user);
                Self::set_meta(&mut doc.osprey, &c.hdr);
                doc.osprey.cred = Some(Box::new(cmeta));
            }
            EventBody::Record(Record::System(y)) => {
                let (category, type_, action) = system::classify(y.op);
                doc.event = meta(category, type_, action);
                doc.event.dataset = "osprey.system";
                doc.process = Some(self.base_process(&y.hdr));
                Self::set_meta(&mut doc.osprey, &y.hdr);
                doc.osprey.system = Some(Box::new(system::system_doc(y, &self.ids)));
            }
            EventBody::Record(Record::Net(n)) => {
                let (type_, outcome) = net::classify(n.op);
                let (src, dst, network, nmeta) = net::net_doc(n);
                doc.event = meta("network", type_, net::op_name(n.op));
                doc.event.dataset = "osprey.network";
                doc.event.outcome = outcome;
                doc.event.duration = (n.duration_ns != 0).then_some(n.duration_ns);
                if !n.owner_unknown() {
                    doc.process = Some(self.base_process(&n.hdr));
                }
                (doc.source, doc.destination, doc.network) = (src, Some(dst), Some(network));
                Self::set_meta(&mut doc.osprey, &n.hdr);
                doc.osprey.net = Some(nmeta);
            }
            EventBody::Record(Record::Dns(d)) => {
                let (src, dst, network, dns, dmeta) = net::dns_doc(d);
                doc.event = meta("network", "protocol", net::dns_action(d));
                doc.event.dataset = "osprey.dns";
                if !d.owner_unknown() {
                    doc.process = Some(self.base_process(&d.hdr));
                }
                (doc.source, doc.destination, doc.network, doc.dns) = (Some(src), Some(dst), Some(network), Some(Box::new(dns)));
                Self::set_meta(&mut doc.osprey, &d.hdr);
                doc.osprey.dns = Some(dmeta);
            }
            EventBody::Loss(lost) => {
                doc.osprey.lost = Some(lost.iter().map(|(k, n)| LostMeta { kind: k.name(), count: *n }).collect());
            }
            EventBody::Alert(a) => {
                doc.event = meta("intrusion_detection", "info", "alert");
                doc.event.kind = "alert";
                doc.event.id = Some(a.id.clone());
                doc.event.dataset = "osprey.alert";
                doc.event.severity = Some(a.alert.severity());
                doc.rule = Some(Box::new(a.rule_doc()));
                doc.threat = a.threat_doc().map(Box::new);
                doc.osprey.alert = Some(Box::new(a.meta()));
                if let Some(ctx) = &a.ctx {
                    doc.process = Some(self.ctx_process(&ctx.process));
                    self.apply_ctx(doc, ctx, false);
                }
            }
            EventBody::Response(r) => {
                use crate::respond::Verdict;
                doc.event = meta(r.outcome.category, "change", "osprey-response");
                doc.event.dataset = "osprey.response";
                doc.event.outcome = Some(match r.outcome.result {
                    Verdict::Done => "success",
                    Verdict::Failed | Verdict::Refused => "failure",
                    Verdict::Would | Verdict::RateLimited => "unknown",
                });
                doc.rule = r.rule.as_deref().map(|r| Box::new(crate::alerting::rule_doc(r)));
                doc.osprey.response = Some(&r.outcome);
                if let Some(ctx) = &ev.ctx {
                    doc.process = Some(self.ctx_process(&ctx.process));
                }
            }
            EventBody::Heartbeat(hb) => {
                doc.event = meta("host", "info", "heartbeat");
                doc.event.dataset = "osprey.heartbeat";
                doc.osprey.heartbeat = Some(hb);
            }
            EventBody::Hash(late) => {
                doc.event = meta("process", "info", "hash");
                let mut p = self.ctx_process(&late.process);
                p.hash = Some(Hash { sha256: lazy::Sha256::Text(&late.sha256) });
                doc.process = Some(p);
            }
        }
        if let Some(ctx) = &ev.ctx {
            let is_exec = matches!(ev.body, EventBody::Record(Record::Exec(_)));
            self.apply_ctx(doc, ctx, is_exec);
        }
    }

    /// A process as the table knows it (no record at hand).
    fn ctx_process<'a>(&self, c: &'a ProcCtx) -> Process<'a> {
        let mut p = Process {
            pid: c.pid,
            entity_id: lazy::EntityId::Known(Cow::Borrowed(&c.entity_id)),
            name: Some(c.name()),
            start: Time(self.wall_ns(c.start_ns)),
            ..Default::default()
        };
        fill_image(&mut p, c);
        p
    }

    /// Adds the process table's view: image (except for execs, whose record is the truth),
    /// parent image, ancestry, previous image, hash, user names, container and pod.
    fn apply_ctx<'a>(&self, doc: &mut Doc<'a>, ctx: &'a Context, is_exec: bool) {
        if let Some(p) = doc.process.as_mut() {
            if !is_exec {
                fill_image(p, &ctx.process);
            } else if let Some(img) = doc.osprey.ktime_ns.and_then(|t| ctx.process.image_of_exec(t)) {
                p.command_line = Some(lazy::CommandLine::Image(img));
            }
            // The table's id of the subject is the one the record's pid and start would give.
            if let lazy::EntityId::Of { pid, start_ns, .. } = p.entity_id {
                let c = &ctx.process;
                if c.pid == pid && self.ids.ticks(c.start_ns) == self.ids.ticks(start_ns) {
                    p.entity_id = lazy::EntityId::Known(Cow::Borrowed(&c.entity_id));
                }
            }
            if let Some(par) = &ctx.parent {
                let parent = p.parent.get_or_insert_with(Parent::default);
                parent.pid = par.pid;
                parent.entity_id = lazy::EntityId::Known(Cow::Borrowed(&par.entity_id));
                parent.start = Time(self.wall_ns(par.start_ns));
                if let Some(img) = &par.image {
                    let ParentImage { executable, name, args, command_line } = ParentImage::of(img);
                    parent.image = Some(img);
                    (parent.executable, parent.name) = (Some(executable), Some(name));
                    (parent.args, parent.command_line) = (Some(args), Some(command_line));
                }
            }
            p.ancestry = Some(lazy::AncestryDoc::List(&ctx.ancestry));
            p.previous = ctx.previous.as_deref().map(Previous::of);
            p.hash = ctx.hash.map(|h| Hash { sha256: lazy::Sha256::Digest(h) });
            for (slot, name) in [(&mut p.user, &ctx.user), (&mut p.group, &ctx.group), (&mut p.real_user, &ctx.real_user)] {
                if let Some(id) = slot.as_mut() {
                    id.name = name.as_deref();
                }
            }
        }
        if let Some(info) = ctx.cgroup.as_ref().and_then(|c| c.container.as_ref()) {
            if let Some(id) = &info.id {
                doc.container = Some(ContainerDoc { id, runtime: info.runtime.map(|r| r.name()) });
            }
            if let Some(pod) = &info.pod_uid {
                doc.orchestrator = Some(Orchestrator {
                    type_: "kubernetes",
                    resource: PodResource { type_: "pod", id: pod, qos: info.qos.map(|q| q.name()) },
                });
            }
        }
        doc.osprey.hash_pending = ctx.hash_pending;
        doc.osprey.process_incomplete = ctx.incomplete;
    }

    /// The event as a JSON value (tests, tools, an alert's trigger), built from the typed
    /// document directly rather than through its text.
    pub fn to_value(&self, ev: &Event) -> serde_json::Value {
        serde_json::to_value(self.doc(ev)).expect("serialising an event cannot fail")
    }
}

/// event.action of a file operation.
pub fn file_action(op: u32) -> &'static str {
    file::classify(op).1
}

/// event.action of a credential change.
pub fn cred_action(op: u32) -> &'static str {
    system::cred_op(op)
}

/// event.action of a system operation.
pub fn system_action(op: u32) -> &'static str {
    system::classify(op).2
}

/// event.action of a network record.
pub fn net_action(op: crate::net::NetOp) -> &'static str {
    net::op_name(op)
}

/// event.action of a DNS record.
pub fn dns_action(d: &crate::net::Dns) -> &'static str {
    net::dns_action(d)
}

/// The image fields of a process from the table.
fn fill_image<'a>(p: &mut Process<'a>, c: &'a ProcCtx) {
    if let Some(img) = &c.image {
        let ProcessImage { name, executable, args, args_count, command_line, working_directory } = ProcessImage::of(img);
        p.image = Some(img);
        (p.name, p.executable, p.args, p.args_count) = (Some(name), Some(executable), Some(args), Some(args_count));
        (p.command_line, p.working_directory) = (Some(command_line), Some(working_directory));
    }
}

fn meta(category: &'static str, type_: &'static str, action: &'static str) -> EventMeta {
    EventMeta {
        printed: false,
        id: None,
        kind: "event",
        category: [category],
        type_: [type_],
        action,
        module: "osprey",
        dataset: "osprey.process",
        severity: None,
        outcome: None,
        duration: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::decode::{decode, raw};

    fn ecs() -> Ecs {
        Ecs::new(Host { hostname: "h".into(), id: "m".into(), boot_id: "b".into() }, 1_700_000_000_000_000_000)
    }

    #[test]
    fn exec_becomes_ecs() {
        let rec = decode(&raw::exec(7, 1_000, "/usr/bin/echo", &["echo", "a", "b c"], "/tmp")).unwrap();
        let ev = Event { wall_ns: 1_700_000_000_000_001_000, body: EventBody::Record(rec), ctx: None };
        let v = ecs().to_value(&ev);
        assert_eq!(v["event"]["action"], "exec");
        assert_eq!(v["event"]["category"][0], "process");
        assert_eq!(v["process"]["pid"], 7);
        assert_eq!(v["process"]["executable"], "/usr/bin/echo");
        assert_eq!(v["process"]["name"], "echo");
        assert_eq!(v["process"]["args"][2], "b c");
        assert_eq!(v["process"]["command_line"], "echo a 'b c'");
        assert_eq!(v["process"]["working_directory"], "/tmp");
        assert_eq!(v["host"]["hostname"], "h");
        assert_eq!(v["@timestamp"], "2023-11-14T22:13:20.000001000Z");
        assert_eq!(v["process"]["entity_id"].as_str().unwrap().len(), 32);
        // The value the detector reads is the document the outputs write.
        let mut text = Vec::new();
        ecs().write(&ev, &mut text).unwrap();
        assert_eq!(v, serde_json::from_slice::<serde_json::Value>(&text).unwrap());
    }

    #[test]
    fn exit_codes_and_signals() {
        let e = ecs();
        for (status, code, sig) in [(3 << 8, 3, None), (9, 137, Some(9))] {
            let rec = decode(&raw::exit(7, status, 5)).unwrap();
            let v = e.to_value(&Event { wall_ns: 0, body: EventBody::Record(rec), ctx: None });
            assert_eq!(v["process"]["exit_code"], code);
            assert_eq!(v["osprey"]["exit"]["signal"].as_i64(), sig);
        }
    }

    #[test]
    fn fork_subject_is_the_child() {
        let rec = decode(&raw::fork(10, 11, 5)).unwrap();
        let v = ecs().to_value(&Event { wall_ns: 0, body: EventBody::Record(rec), ctx: None });
        assert_eq!(v["process"]["pid"], 11);
        assert_eq!(v["process"]["parent"]["pid"], 10);
        assert_eq!(v["event"]["action"], "fork");
    }

    #[test]
    fn times_print_as_humantime_prints_them() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut samples = vec![0, 1, 999_999_999, 1_000_000_000, 951_782_400_000_000_000, 4_107_542_399_999_999_999, u64::MAX];
        // Runs within a second and across seconds (the thread's recent seconds are reused).
        let base = 1_764_000_000_123_456_789;
        samples.extend((0..50).map(|k| base + k * 97_000_000));
        samples.extend([base, base + 5, base - 200_000_000, base + 1]);
        // Seconds that share a slot, alternating.
        samples.extend([base, base + 4_000_000_000, base + 2, base + 8_000_000_001, base + 4_000_000_003]);
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push(x);
        }
        for ns in samples {
            let want = humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns)).to_string();
            assert_eq!(Time(ns).to_string(), want, "{ns}");
            // Quoted: printed, then kept (twice), whichever times shared the slot before.
            for _ in 0..2 {
                assert_eq!(String::from_utf8_lossy(&Time(ns).quoted()), format!("\"{want}\""), "{ns}");
            }
        }
    }

    #[test]
    fn quoting() {
        let args: Vec<String> = ["a", "b c", "it's", ""].iter().map(|s| s.to_string()).collect();
        assert_eq!(command_line(&args), r"a 'b c' 'it'\''s' ''");
        // Quoted exactly when an argument is empty or has whitespace (Unicode's too), a quote,
        // a backslash, `$` or a backquote.
        for c in ['a', 'é', '-', '\t', '\n', '\u{b}', '\u{c}', '\r', ' ', '\u{85}', '\u{a0}', '\u{2003}', '\'', '"', '\\', '$', '`'] {
            let arg = format!("x{c}y");
            let quoted = c.is_whitespace() || "'\"\\$`".contains(c);
            assert_eq!(command_line(std::slice::from_ref(&arg)).starts_with('\''), quoted, "{arg:?}");
        }
    }
}
