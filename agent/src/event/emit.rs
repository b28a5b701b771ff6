//! The documents of the hot record kinds (process, file) printed field by field, without serde:
//! serde's printer pays, on every field, for the generic plumbing a document does not need
//! (the printer's modes, its raw-value check, a call and a result per level).
//! The parts of a document that are rare on the hot path (DNS, alerts, responses, …) are
//! printed through serde by the same printer ([`Obj::ser`]).
//!
//! Byte for byte what serde prints of the same document: the fields, their order and the
//! `skip_serializing_if` rules are the derives' (`the_printed_json_is_the_document` compares
//! the two on every kind of record).

use serde::Serialize;
use serde_json::Error;

use super::{
    file::{FileDoc, FileMeta},
    lazy::{AncestryDoc, Args, CommandLine, EntityId, Octal, Sha256},
    print, Doc, ExecMeta, ExitMeta, Id, Osprey, Parent, Previous, Process, Time,
};

/// A JSON object being printed: each field after a comma unless it is the first.
pub(super) struct Obj<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Obj<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// `"k":` (after a comma unless it is the first field); the value goes into what it returns.
    #[inline(always)]
    fn key(&mut self, k: &'static str) -> &mut Vec<u8> {
        print::put_key(self.out, k, !std::mem::take(&mut self.first));
        self.out
    }

    fn str(&mut self, k: &'static str, v: &str) {
        print::write_str(self.key(k), v);
    }

    fn opt_str(&mut self, k: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(k, v);
        }
    }

    fn num<T: itoa::Integer>(&mut self, k: &'static str, v: T) {
        print::put(self.key(k), itoa::Buffer::new().format(v).as_bytes());
    }

    /// A number ECS has as a string.
    fn num_text<T: itoa::Integer>(&mut self, k: &'static str, v: T) {
        print::write_str(self.key(k), itoa::Buffer::new().format(v));
    }

    fn bool(&mut self, k: &'static str, v: bool) {
        print::put(self.key(k), if v { b"true" } else { b"false" });
    }

    fn time(&mut self, k: &'static str, t: Time) {
        print::put(self.key(k), &t.quoted());
    }

    fn entity_id(&mut self, k: &'static str, e: &EntityId<'_>) {
        match e {
            EntityId::Known(s) => self.str(k, s),
            EntityId::Of { ids, pid, start_ns } => self.str(k, ids.text(*pid, *start_ns).as_str()),
        }
    }

    /// `"k":` and JSON printed already.
    fn raw(&mut self, k: &'static str, json: &str) {
        self.key(k).extend_from_slice(json.as_bytes());
    }

    /// A run of fields printed already (`"a":1,"b":2`, or empty), after a comma unless
    /// nothing came before it (an empty run prints nothing).
    fn raw_fields(&mut self, run: &str) {
        if run.is_empty() {
            return;
        }
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.extend_from_slice(run.as_bytes());
    }

    /// A value printed through serde.
    fn ser<T: Serialize + ?Sized>(&mut self, k: &'static str, v: &T) -> Result<(), Error> {
        print::to_vec(self.key(k), v)
    }

    fn opt_ser<T: Serialize>(&mut self, k: &'static str, v: Option<&T>) -> Result<(), Error> {
        v.map_or(Ok(()), |v| self.ser(k, v))
    }

    /// A nested object, printed into what it returns and closed by [`Obj::close`].
    fn obj(&mut self, k: &'static str) -> Obj<'_> {
        Obj::open(self.key(k))
    }

    fn strs<'s>(&mut self, k: &'static str, items: impl Iterator<Item = &'s str>) {
        let out = self.key(k);
        out.push(b'[');
        for (i, s) in items.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            print::write_str(out, s);
        }
        out.push(b']');
    }

    fn args(&mut self, k: &'static str, a: Args<'_>) {
        match a {
            Args::Record(a) => self.strs(k, a.iter().map(String::as_str)),
            Args::Image(img) => self.strs(k, img.args()),
        }
    }

    fn command_line(&mut self, k: &'static str, c: CommandLine<'_>) {
        self.str(k, &c.text());
    }

    fn id(&mut self, k: &'static str, id: &Id<'_>) {
        let mut o = self.obj(k);
        o.num_text("id", id.id.0);
        o.opt_str("name", id.name);
        o.close();
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

impl Doc<'_> {
    /// Appends the document's JSON to `out`, as serde would print it.
    pub(super) fn emit(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let mut o = Obj::open(out);
        o.time("@timestamp", self.timestamp);
        if let Some(run) = self.event_printed {
            o.raw_fields(run);
        }
        if !self.event.printed {
            o.ser("event", &self.event)?;
        }
        match self.host.printed {
            true => o.raw("host", self.host.json.get()),
            false => o.ser("host", &self.host)?,
        }
        if let Some(p) = &self.process {
            p.emit(o.obj("process"))?;
        }
        if let Some(f) = &self.file {
            f.emit(o.obj("file"));
        }
        o.opt_ser("user", self.user.as_ref())?;
        o.opt_ser("source", self.source.as_ref())?;
        o.opt_ser("destination", self.destination.as_ref())?;
        o.opt_ser("network", self.network.as_ref())?;
        o.opt_ser("dns", self.dns.as_ref())?;
        o.opt_ser("rule", self.rule.as_ref())?;
        o.opt_ser("threat", self.threat.as_ref())?;
        o.opt_ser("container", self.container.as_ref())?;
        o.opt_ser("orchestrator", self.orchestrator.as_ref())?;
        self.osprey.emit(o.obj("osprey"))?;
        o.close();
        Ok(())
    }
}

/// A run of fields (no braces) as `f` prints them: what an image keeps printed (at its size:
/// kept with the image for as long as it lives).
fn run(f: impl FnOnce(&mut Obj<'_>)) -> Box<str> {
    let mut out = Vec::with_capacity(256);
    f(&mut Obj { out: &mut out, first: true });
    std::str::from_utf8(&out).expect("the printer copies and escapes UTF-8 text only").into()
}

impl Process<'_> {
    fn emit(&self, mut o: Obj<'_>) -> Result<(), Error> {
        o.num("pid", self.pid);
        o.entity_id("entity_id", &self.entity_id);
        if let Some(run) = self.image_printed {
            o.raw_fields(run);
        }
        self.image_fields(&mut o);
        o.time("start", self.start);
        if let Some(t) = &self.thread {
            let mut t_o = o.obj("thread");
            t_o.num("id", t.id);
            t_o.close();
        }
        if let Some(par) = &self.parent {
            par.emit(o.obj("parent"));
        }
        match self.ancestry {
            Some(AncestryDoc::Printed(a)) => o.raw("ancestry", a.json().get()),
            Some(a @ AncestryDoc::List(_)) => o.ser("ancestry", &a)?,
            None => {}
        }
        if let Some(prev) = &self.previous {
            let mut p_o = o.obj("previous");
            match prev.printed {
                Some(run) => p_o.raw_fields(run),
                None => prev.fields(&mut p_o),
            }
            p_o.close();
        }
        if let Some(h) = &self.hash {
            let mut h_o = o.obj("hash");
            match h.sha256 {
                Sha256::Digest(d) => h_o.str("sha256", std::str::from_utf8(&d.hex()).unwrap_or_default()),
                Sha256::Text(t) => h_o.str("sha256", t),
            }
            h_o.close();
        }
        if let Some(run) = &self.ids_printed {
            o.raw_fields(run);
        }
        for (k, id) in [
            ("user", &self.user),
            ("group", &self.group),
            ("real_user", &self.real_user),
            ("real_group", &self.real_group),
            ("saved_user", &self.saved_user),
            ("saved_group", &self.saved_group),
        ] {
            if let Some(id) = id {
                o.id(k, id);
            }
        }
        if let Some(c) = self.exit_code {
            o.num("exit_code", c);
        }
        o.close();
        Ok(())
    }
}

impl Process<'_> {
    /// The fields that are its image's (as many documents print them as there are events of
    /// the process: see `Doc::printing`).
    fn image_fields(&self, o: &mut Obj<'_>) {
        o.opt_str("name", self.name);
        o.opt_str("executable", self.executable);
        if let Some(a) = self.args {
            o.args("args", a);
        }
        if let Some(n) = self.args_count {
            o.num("args_count", n);
        }
        if let Some(c) = self.command_line {
            o.command_line("command_line", c);
        }
        o.opt_str("working_directory", self.working_directory);
    }

    /// [`Process::image_fields`] as a run of fields.
    pub(super) fn image_run(&self) -> Box<str> {
        run(|o| self.image_fields(o))
    }
}

impl Parent<'_> {
    fn emit(&self, mut o: Obj<'_>) {
        o.num("pid", self.pid);
        o.entity_id("entity_id", &self.entity_id);
        o.time("start", self.start);
        if let Some(run) = self.image_printed {
            o.raw_fields(run);
        }
        self.image_fields(&mut o);
        o.close();
    }

    /// As [`Process::image_fields`], for a parent.
    fn image_fields(&self, o: &mut Obj<'_>) {
        o.opt_str("executable", self.executable);
        o.opt_str("name", self.name);
        if let Some(a) = self.args {
            o.args("args", a);
        }
        if let Some(c) = self.command_line {
            o.command_line("command_line", c);
        }
    }

    pub(super) fn image_run(&self) -> Box<str> {
        run(|o| self.image_fields(o))
    }
}

impl Previous<'_> {
    fn fields(&self, o: &mut Obj<'_>) {
        o.str("executable", self.executable);
        o.args("args", self.args);
    }

    /// Its fields as a run (all of them are the image's).
    pub(super) fn run(&self) -> Box<str> {
        run(|o| self.fields(o))
    }
}

impl Osprey<'_> {
    fn emit(&self, mut o: Obj<'_>) -> Result<(), Error> {
        o.opt_str("record", self.record);
        if let Some(v) = self.cpu {
            o.num("cpu", v);
        }
        if let Some(v) = self.ktime_ns {
            o.num("ktime_ns", v);
        }
        if let Some(v) = self.cgroup_id {
            o.num("cgroup_id", v);
        }
        if let Some(x) = &self.exec {
            x.emit(o.obj("exec"));
        }
        if let Some(f) = &self.fork {
            let mut f_o = o.obj("fork");
            f_o.bool("thread", f.thread);
            f_o.close();
        }
        if let Some(x) = &self.exit {
            x.emit(o.obj("exit"));
        }
        o.opt_ser("lost", self.lost.as_ref())?;
        if self.hash_pending {
            o.bool("hash_pending", true);
        }
        if self.process_incomplete {
            o.bool("process_incomplete", true);
        }
        o.opt_ser("alert", self.alert.as_ref())?;
        if let Some(f) = &self.file {
            f.emit(o.obj("file"));
        }
        o.opt_ser("cred", self.cred.as_ref())?;
        o.opt_ser("system", self.system.as_ref())?;
        o.opt_ser("response", self.response)?;
        o.opt_ser("net", self.net.as_ref())?;
        o.opt_ser("dns", self.dns.as_ref())?;
        o.opt_ser("heartbeat", self.heartbeat)?;
        o.close();
        Ok(())
    }
}

impl ExecMeta<'_> {
    fn emit(&self, mut o: Obj<'_>) {
        o.str("filename", self.filename);
        for (k, v) in [
            ("memfd", self.memfd),
            ("deleted", self.deleted),
            ("setuid", self.setuid),
            ("setgid", self.setgid),
            ("caps_gained", self.caps_gained),
            ("args_truncated", self.args_truncated),
            ("executable_truncated", self.executable_truncated),
            ("cwd_truncated", self.cwd_truncated),
            ("previous_credentials_known", self.previous_credentials_known),
        ] {
            o.bool(k, v);
        }
        o.id("previous_user", &self.previous_user);
        o.id("previous_effective_user", &self.previous_effective_user);
        o.num("inode", self.inode);
        o.num("device", self.device);
        o.str("mode", self.mode.text(&mut [0; 11]));
        o.num("size", self.size);
        o.num("ctime_ns", self.ctime_ns);
        o.num("previous_pid", self.previous_pid);
        if self.blocked {
            o.bool("blocked", true);
        }
        o.close();
    }
}

impl ExitMeta {
    fn emit(&self, mut o: Obj<'_>) {
        if let Some(s) = self.status {
            o.num("status", s);
        }
        if let Some(s) = self.signal {
            o.num("signal", s);
        }
        o.bool("core_dumped", self.core_dumped);
        o.bool("thread", self.thread);
        o.close();
    }
}

impl FileDoc<'_> {
    fn emit(&self, mut o: Obj<'_>) {
        o.str("path", self.path);
        o.str("name", self.name);
        o.str("directory", self.directory);
        o.opt_str("extension", self.extension);
        o.opt_str("type", self.type_);
        if let Some(v) = self.inode {
            o.num_text("inode", v.0);
        }
        if let Some(m) = self.mode {
            o.str("mode", m.text(&mut [0; 11]));
        }
        if let Some(v) = self.uid {
            o.num_text("uid", v.0);
        }
        if let Some(v) = self.gid {
            o.num_text("gid", v.0);
        }
        if let Some(v) = self.size {
            o.num("size", v);
        }
        o.opt_str("target_path", self.target_path);
        if let Some(ext) = &self.ext {
            let mut e_o = o.obj("Ext");
            let mut orig = e_o.obj("original");
            orig.str("path", ext.original.path);
            orig.str("name", ext.original.name);
            orig.close();
            e_o.close();
        }
        o.close();
    }
}

impl FileMeta {
    fn emit(&self, mut o: Obj<'_>) {
        o.str("op", self.op);
        o.num("flags", self.flags);
        o.bool("watched", self.watched);
        o.bool("path_truncated", self.path_truncated);
        o.num("device", self.device);
        if self.folded != 0 {
            o.num("folded", self.folded);
        }
        o.close();
    }
}

impl Octal {
    /// The octal digits, written into `buf`.
    pub(super) fn text(self, buf: &mut [u8; 11]) -> &str {
        let (mut at, mut v) = (buf.len(), self.0);
        loop {
            at -= 1;
            buf[at] = b'0' + (v & 7) as u8;
            v >>= 3;
            if v == 0 {
                break;
            }
        }
        std::str::from_utf8(&buf[at..]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_printed_fields_get_the_commas_they_need() {
        for before in [None, Some(1)] {
            for run in ["", r#""r":"x","s":[1]"#] {
                for after in [None, Some(2)] {
                    let mut out = Vec::new();
                    let mut o = Obj::open(&mut out);
                    if let Some(b) = before {
                        o.num("before", b);
                    }
                    o.raw_fields(run);
                    if let Some(a) = after {
                        o.num("after", a);
                    }
                    o.close();
                    let text = String::from_utf8(out).unwrap();
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                    let mut want = serde_json::Map::new();
                    if let Some(b) = before {
                        want.insert("before".into(), b.into());
                    }
                    if !run.is_empty() {
                        want.insert("r".into(), "x".into());
                        want.insert("s".into(), serde_json::json!([1]));
                    }
                    if let Some(a) = after {
                        want.insert("after".into(), a.into());
                    }
                    assert_eq!(v, serde_json::Value::Object(want), "{text}");
                }
            }
        }
    }
}
