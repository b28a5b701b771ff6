//! Synthetic events for the recorder and fleet benchmarks: real ECS documents captured on this
//! kernel (`rules/tests/*.jsonl`), varied per event — 8 events per process, one in 40 a
//! connection to one of 50,000 addresses.

use std::{path::PathBuf, time::Duration};

use serde_json::Value;

pub fn templates() -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules/tests");
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        for line in std::fs::read_to_string(f.path()).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            out.push(v["event"].clone());
        }
    }
    out
}

/// Event `i`, built from a template.
pub fn doc(t: &[Value], i: u64, base_ns: u64) -> Value {
    let mut d = t[(i as usize) % t.len()].clone();
    let proc_no = i / 8;
    d["@timestamp"] = Value::String(agent::event::rfc3339(base_ns + i * 20_000));
    d["event"]["kind"] = Value::String("event".into());
    if let Some(p) = d.get_mut("process").and_then(Value::as_object_mut) {
        p.insert("entity_id".into(), Value::String(format!("{proc_no:032x}")));
        p.insert("pid".into(), Value::from(proc_no % 4_000_000));
        if let Some(par) = p.get_mut("parent").and_then(Value::as_object_mut) {
            par.insert("entity_id".into(), Value::String(format!("{:032x}", proc_no / 4)));
        }
        if i.is_multiple_of(8) {
            p.insert("command_line".into(), Value::String(format!("/usr/bin/worker --job {proc_no} --queue q{}", proc_no % 97)));
            p.insert("hash".into(), serde_json::json!({"sha256": format!("{:064x}", proc_no % 10_000)}));
        }
    }
    if i % 40 == 7 {
        let a = (i / 40) % 50_000;
        d["destination"] = serde_json::json!({"ip": format!("10.{}.{}.{}", a >> 16, (a >> 8) & 255, a & 255), "port": 443, "domain": format!("h{a}.example.com")});
        d["event"]["action"] = Value::String("connection_attempted".into());
    }
    if let Some(f) = d.get_mut("file").and_then(Value::as_object_mut) {
        f.insert("path".into(), Value::String(format!("/srv/data/{}/{}.dat", proc_no % 1000, i)));
    }
    d
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

