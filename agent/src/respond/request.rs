//! Operator commands (`osprey kill|suspend|resume|isolate|release|block|unblock|quarantine|
//! restore`), as one line on the control socket, and how the responder carries them out.
//! An operator's command is carried out in monitor mode too; the safety rails still apply.

use std::{path::PathBuf, time::Instant};

use serde_json::json;

use super::{log, signal, Outcome, Responder, Verdict};

/// A process named by an operator: a pid (resolved to its identity when the request arrives)
/// or an `entity:ID` from an event (refused if that process is gone, even if its pid is reused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessRef {
    Pid(u32),
    Entity(String),
}

impl ProcessRef {
    fn parse(s: &str) -> Result<Self, String> {
        match s.strip_prefix("entity:") {
            Some(e) if !e.is_empty() => Ok(Self::Entity(e.to_owned())),
            Some(_) => Err("entity: needs an id".into()),
            None => s.parse().map(Self::Pid).map_err(|_| format!("not a pid or entity:ID: {s}")),
        }
    }

    fn line(&self) -> String {
        match self {
            Self::Pid(p) => p.to_string(),
            Self::Entity(e) => format!("entity:{e}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Kill { target: ProcessRef, tree: bool },
    Suspend(ProcessRef),
    Resume(ProcessRef),
    /// A cgroup path below the cgroup v2 mount, or `host` (the root cgroup).
    Isolate(String),
    Release(String),
    BlockPath(PathBuf),
    BlockHash(String),
    UnblockPath(PathBuf),
    UnblockHash(String),
    Quarantine(PathBuf),
    Restore(String),
    /// What is isolated, blocked and quarantined.
    List,
}

pub const USAGE: &str = "kill [--tree] PID|entity:ID | suspend T | resume T | isolate CGROUP|host | release CGROUP|host | \
block path PATH | block sha256 HEX | unblock path PATH | unblock sha256 HEX | quarantine PATH | restore ID | responses";

impl Request {
    /// Parses a request line; None when the verb is not a response verb.
    pub fn parse(line: &str) -> Option<Result<Self, String>> {
        let (verb, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
        let rest = rest.trim();
        let need = |what: &str| if rest.is_empty() { Err(format!("{verb}: {what} missing")) } else { Ok(()) };
        let r = match verb {
            "kill" => {
                let (tree, t) = match rest.strip_prefix("--tree") {
                    Some(t) => (true, t.trim()),
                    None => (false, rest),
                };
                ProcessRef::parse(t).map(|target| Self::Kill { target, tree })
            }
            "suspend" => ProcessRef::parse(rest).map(Self::Suspend),
            "resume" => ProcessRef::parse(rest).map(Self::Resume),
            "isolate" => need("cgroup or host").map(|_| Self::Isolate(rest.to_owned())),
            "release" => need("cgroup or host").map(|_| Self::Release(rest.to_owned())),
            "block" | "unblock" => {
                let (kind, arg) = rest.split_once(' ').map(|(k, a)| (k, a.trim())).unwrap_or((rest, ""));
                match (verb, kind, arg.is_empty()) {
                    (_, _, true) => Err(format!("{verb}: expected `path PATH` or `sha256 HEX`")),
                    ("block", "path", _) => Ok(Self::BlockPath(arg.into())),
                    ("block", "sha256", _) => Ok(Self::BlockHash(arg.into())),
                    ("unblock", "path", _) => Ok(Self::UnblockPath(arg.into())),
                    ("unblock", "sha256", _) => Ok(Self::UnblockHash(arg.into())),
                    _ => Err(format!("{verb}: expected `path PATH` or `sha256 HEX`, not {kind:?}")),
                }
            }
            "quarantine" => need("path").map(|_| Self::Quarantine(rest.into())),
            "restore" => need("quarantine id").map(|_| Self::Restore(rest.to_owned())),
            "responses" if rest.is_empty() => Ok(Self::List),
            _ => return None,
        };
        Some(r)
    }

    pub fn line(&self) -> String {
        match self {
            Self::Kill { target, tree } => format!("kill {}{}", if *tree { "--tree " } else { "" }, target.line()),
            Self::Suspend(t) => format!("suspend {}", t.line()),
            Self::Resume(t) => format!("resume {}", t.line()),
            Self::Isolate(c) => format!("isolate {c}"),
            Self::Release(c) => format!("release {c}"),
            Self::BlockPath(p) => format!("block path {}", p.display()),
            Self::BlockHash(h) => format!("block sha256 {h}"),
            Self::UnblockPath(p) => format!("unblock path {}", p.display()),
            Self::UnblockHash(h) => format!("unblock sha256 {h}"),
            Self::Quarantine(p) => format!("quarantine {}", p.display()),
            Self::Restore(id) => format!("restore {id}"),
            Self::List => "responses".into(),
        }
    }
}

/// What the pipeline knows that a request may need.
pub trait Lookup {
    /// The live process with this `process.entity_id`.
    fn entity(&self, entity_id: &str) -> Option<signal::Identity>;
    /// Files the hash cache knows to have this sha256.
    fn files_with_hash(&self, sha256: &str) -> Vec<crate::process::hash::FileKey>;
}

fn cgroup_of(spec: &str) -> &str {
    if spec == "host" {
        "/"
    } else {
        spec
    }
}

/// The cgroup an isolate request means: `host` is the root cgroup; the root cgroup written as
/// a path is refused, so the whole host is only ever isolated by saying so.
fn isolation_target(spec: &str) -> Result<&str, String> {
    if spec != "host" && spec.trim_matches('/').is_empty() {
        return Err("the root cgroup is the whole host: ask for `host` to isolate it".into());
    }
    Ok(cgroup_of(spec))
}

impl Responder {
    /// Carries out an operator's request. `lookup` finds a process by entity id in the process
    /// table and files by sha256 in the hash cache. Returns the outcome (to be reported as an
    /// event) and the answer for the operator.
    pub fn operator(&mut self, req: &Request, lookup: &dyn Lookup) -> (Option<Outcome>, serde_json::Value) {
        if *req == Request::List {
            return (None, self.listing());
        }
        let t0 = Instant::now();
        let (action, category, target) = match req {
            Request::Kill { target, tree } => (if *tree { "kill_tree" } else { "kill" }, "process", target.line()),
            Request::Suspend(t) => ("suspend", "process", t.line()),
            Request::Resume(t) => ("resume", "process", t.line()),
            Request::Isolate(c) => ("isolate", "network", c.clone()),
            Request::Release(c) => ("release", "network", c.clone()),
            Request::BlockPath(p) | Request::UnblockPath(p) => (if matches!(req, Request::BlockPath(_)) { "block_exec" } else { "unblock_exec" }, "process", format!("path {}", p.display())),
            Request::BlockHash(h) | Request::UnblockHash(h) => (if matches!(req, Request::BlockHash(_)) { "block_exec" } else { "unblock_exec" }, "process", format!("sha256 {h}")),
            Request::Quarantine(p) => ("quarantine", "file", format!("file {}", p.display())),
            Request::Restore(id) => ("restore", "file", format!("quarantine id {id}")),
            Request::List => unreachable!("answered above"),
        };
        let mut o = self.outcome(action, target, "operator", category);
        o.mode = super::Mode::Enforce;
        let res = self.operate(req, lookup, &mut o);
        match res {
            Ok(()) => {}
            Err((verdict, why)) => {
                o.result = verdict;
                o.reason = Some(why);
            }
        }
        o.took_us = t0.elapsed().as_micros() as u64;
        log(&o);
        let answer = serde_json::to_value(&o).unwrap_or_else(|e| json!({"error": e.to_string()}));
        (Some(o), answer)
    }

    fn process(&self, t: &ProcessRef, lookup: &dyn Lookup) -> Result<signal::Identity, (Verdict, String)> {
        let id = match t {
            ProcessRef::Pid(p) => signal::identify(*p).map_err(|e| (Verdict::Failed, e.to_string()))?,
            ProcessRef::Entity(e) => lookup.entity(e).ok_or_else(|| (Verdict::Failed, format!("no process with entity id {e} in the process table")))?,
        };
        let (exe, name) = super::running_image(id.pid);
        self.check_process(id.pid, exe.as_deref(), &name).map_err(|e| (Verdict::Refused, e))?;
        Ok(id)
    }

    fn operate(&mut self, req: &Request, lookup: &dyn Lookup, o: &mut Outcome) -> Result<(), (Verdict, String)> {
        let failed = |e: String| (Verdict::Failed, e);
        match req {
            Request::Kill { target, tree } => {
                let id = self.process(target, lookup)?;
                // Reuse is caught by the pidfd check inside kill: refused, not failed.
                self.kill(id, *tree, o).map_err(|e| (if e.contains("another process") { Verdict::Refused } else { Verdict::Failed }, e))
            }
            Request::Suspend(t) => {
                let id = self.process(t, lookup)?;
                self.suspend(id, o).map_err(failed)
            }
            Request::Resume(t) => {
                let id = self.process(t, lookup)?;
                self.resume(id, o).map_err(failed)
            }
            Request::Isolate(spec) => {
                let cg = isolation_target(spec).map_err(|e| (Verdict::Refused, e))?;
                if cg == "/" {
                    if self.cfg.isolation_allow.is_empty() {
                        return Err((Verdict::Refused, "host isolation with an empty response.isolation_allow would cut off the agent's outputs and your own access: list them first".into()));
                    }
                } else {
                    self.check_cgroup(cg).map_err(|e| (Verdict::Refused, e))?;
                }
                self.isolate_cgroup(cg).map(|_| ()).map_err(failed)
            }
            Request::Release(spec) => self.release_cgroup(cgroup_of(spec)).map(|_| ()).map_err(failed),
            Request::BlockPath(p) => self.block_path(p).map(|p| o.target = format!("path {}", p.display())).map_err(failed),
            Request::BlockHash(h) => {
                let files = lookup.files_with_hash(h);
                self.block_hash(h, &files).map(|n| o.reason = Some(format!("{n} known file(s) blocked at once"))).map_err(failed)
            }
            Request::UnblockPath(p) => self.blocker().and_then(|b| b.unblock_path(p).map(|_| ()).map_err(|e| e.to_string())).map_err(failed),
            Request::UnblockHash(h) => self.blocker().and_then(|b| b.unblock_hash(h).map(|_| ()).map_err(|e| e.to_string())).map_err(failed),
            Request::Quarantine(p) => self.quarantine_file(p).map(|e| o.quarantine_id = Some(e.id)).map_err(failed),
            Request::Restore(id) => self.quarantine().and_then(|q| q.restore(id).map_err(|e| e.to_string())).map(|_| ()).map_err(failed),
            Request::List => Ok(()),
        }
    }

    fn listing(&mut self) -> serde_json::Value {
        let blocked = self.blocker.as_ref().map(|b| b.list());
        let isolated = match (&mut self.isolator, &self.cgroup_root) {
            (Some(i), Some(root)) => i.reconcile(root).unwrap_or_default(),
            _ => Vec::new(),
        };
        let quarantined = self.quarantine().ok().and_then(|q| q.list().ok()).unwrap_or_default();
        json!({ "mode": self.cfg.mode, "blocked": blocked, "isolated": isolated, "quarantined": quarantined })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for line in [
            "kill 42",
            "kill --tree entity:abc",
            "suspend 7",
            "resume entity:x",
            "isolate /osprey-test/a b",
            "release host",
            "block path /tmp/evil bin",
            "block sha256 00ff",
            "unblock path /x",
            "unblock sha256 ab",
            "quarantine /tmp/a file",
            "restore 0011-22",
            "responses",
        ] {
            let r = Request::parse(line).unwrap().unwrap();
            assert_eq!(r.line(), line);
        }
        assert!(Request::parse("ps").is_none(), "not a response verb");
        assert!(Request::parse("kill x").unwrap().is_err());
        assert!(Request::parse("block hash 1").unwrap().unwrap_err().contains("path PATH"));
        assert!(Request::parse("quarantine").unwrap().is_err());
    }

    #[test]
    fn the_host_is_isolated_only_by_name() {
        assert_eq!(isolation_target("host"), Ok("/"));
        assert!(isolation_target("/").is_err());
        assert!(isolation_target("//").is_err());
        assert_eq!(isolation_target("/kubepods/pod1"), Ok("/kubepods/pod1"));
    }
}
