//! osprey.h is compiled twice: by clang for the BPF target (the kernel programs) and by
//! bindgen's clang for the host (the Rust types, pinned by bindgen's compile-time layout
//! assertions). This test reads the struct layouts clang recorded in the BPF object's BTF and
//! fails if any size or field offset differs from the Rust side, or if a struct exists on one
//! side only.

use std::collections::BTreeMap;

use object::{Object, ObjectSection};

/// struct name → (size, field name → byte offset)
type Layouts = BTreeMap<String, (usize, BTreeMap<String, usize>)>;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn cstr_at(strings: &[u8], off: usize) -> String {
    let s = &strings[off.min(strings.len())..];
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

/// Extracts every `osprey_*` struct from raw BTF (the `.BTF` section).
fn btf_structs(btf: &[u8]) -> Layouts {
    assert_eq!(u16::from_le_bytes([btf[0], btf[1]]), 0xeb9f, "BTF magic");
    let hdr_len = u32_at(btf, 4).unwrap() as usize;
    let (type_off, type_len) = (u32_at(btf, 8).unwrap() as usize, u32_at(btf, 12).unwrap() as usize);
    let (str_off, str_len) = (u32_at(btf, 16).unwrap() as usize, u32_at(btf, 20).unwrap() as usize);
    let types = &btf[hdr_len + type_off..hdr_len + type_off + type_len];
    let strings = &btf[hdr_len + str_off..hdr_len + str_off + str_len];
    let mut out = Layouts::new();
    let mut at = 0;
    while at + 12 <= types.len() {
        let name_off = u32_at(types, at).unwrap() as usize;
        let info = u32_at(types, at + 4).unwrap();
        let size = u32_at(types, at + 8).unwrap() as usize;
        let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31 == 1);
        at += 12;
        let extra = match kind {
            1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
            3 => 12,                   // ARRAY
            4 | 5 | 15 | 19 => vlen * 12, // STRUCT, UNION, DATASEC, ENUM64
            6 | 13 => vlen * 8,        // ENUM, FUNC_PROTO
            _ => 0,
        };
        let name = cstr_at(strings, name_off);
        if kind == 4 && name.starts_with("osprey_") {
            let mut fields = BTreeMap::new();
            for m in 0..vlen {
                let base = at + m * 12;
                let fname = cstr_at(strings, u32_at(types, base).unwrap() as usize);
                let raw = u32_at(types, base + 8).unwrap();
                let bits = if kind_flag { raw & 0xff_ffff } else { raw };
                fields.insert(fname, bits as usize / 8);
            }
            out.insert(name, (size, fields));
        }
        at += extra;
    }
    out
}

/// The Rust layout from bindgen, with fields bindgen renamed (`type` → `type_`, `str` → `str_`)
/// mapped back to their C names.
/// C field names that are Rust keywords or primitive types, which bindgen suffixes with `_`.
const RENAMED: &[&str] = &["type", "str", "ref", "fn", "match", "move", "loop", "mod", "u8", "u32"];

fn rust_structs() -> Layouts {
    let mut out = Layouts::new();
    for (s, f, n) in agent_common::layout::entries() {
        let entry = out.entry(s.to_string()).or_insert((0, BTreeMap::new()));
        if f.is_empty() {
            entry.0 = n;
        } else {
            let c_name = match f.strip_suffix('_') {
                Some(base) if RENAMED.contains(&base) => base,
                _ => f,
            };
            entry.1.insert(c_name.to_string(), n);
        }
    }
    out
}

/// Every difference between the two layouts, as readable lines.
fn differences(bpf: &Layouts, rust: &Layouts) -> Vec<String> {
    let mut diffs = Vec::new();
    for (name, (size, fields)) in rust {
        let Some((bsize, bfields)) = bpf.get(name) else {
            diffs.push(format!("{name}: in Rust but not in the BPF object's BTF"));
            continue;
        };
        if size != bsize {
            diffs.push(format!("{name}: size {size} in Rust, {bsize} in BPF"));
        }
        for (f, off) in fields {
            match bfields.get(f) {
                Some(b) if b == off => {}
                Some(b) => diffs.push(format!("{name}.{f}: offset {off} in Rust, {b} in BPF")),
                None => diffs.push(format!("{name}.{f}: missing in BPF")),
            }
        }
        for f in bfields.keys().filter(|f| !fields.contains_key(*f)) {
            diffs.push(format!("{name}.{f}: missing in Rust"));
        }
    }
    for name in bpf.keys().filter(|n| !rust.contains_key(*n)) {
        diffs.push(format!("{name}: in the BPF object but not in Rust"));
    }
    diffs
}

fn bpf_structs() -> Layouts {
    let file = object::File::parse(agent_ebpf::OBJECT).expect("BPF object is ELF");
    let btf = file.section_by_name(".BTF").expect(".BTF section").data().expect("BTF bytes");
    btf_structs(btf)
}

#[test]
fn c_and_rust_records_have_the_same_layout() {
    let (bpf, rust) = (bpf_structs(), rust_structs());
    for s in ["osprey_hdr", "osprey_exec", "osprey_fork", "osprey_exit", "osprey_str", "osprey_config"] {
        assert!(rust.contains_key(s) && bpf.contains_key(s), "{s} on both sides");
    }
    let diffs = differences(&bpf, &rust);
    assert!(diffs.is_empty(), "osprey.h and the Rust types disagree:\n{}", diffs.join("\n"));
}

#[test]
fn the_comparison_catches_drift() {
    let rust = rust_structs();
    let mut bpf = bpf_structs();
    let (size, fields) = bpf.get_mut("osprey_exit").unwrap();
    *fields.get_mut("exit_code").unwrap() += 4;
    *size += 8;
    fields.insert("extra".into(), 96);
    bpf.insert("osprey_new".into(), (8, BTreeMap::new()));
    let diffs = differences(&bpf, &rust);
    assert_eq!(diffs.len(), 4, "{diffs:#?}");
    assert!(diffs.iter().any(|d| d.contains("osprey_exit.exit_code: offset")));
    assert!(diffs.iter().any(|d| d.contains("osprey_exit: size")));
    assert!(diffs.iter().any(|d| d.contains("osprey_exit.extra: missing in Rust")));
    assert!(diffs.iter().any(|d| d.contains("osprey_new: in the BPF object")));
}
