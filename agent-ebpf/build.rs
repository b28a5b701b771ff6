//! Compiles the C BPF programs with clang (`-target bpf`, CO-RE) into OUT_DIR.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const PACKAGES: &str = "clang-19 llvm-19 libbpf-dev";

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let common = dir.join("../agent-common/include");
    for watched in [dir.join("src"), dir.join("include"), common.clone()] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    println!("cargo:rerun-if-env-changed=OSPREY_CLANG");

    let clang = env::var("OSPREY_CLANG").unwrap_or_else(|_| "clang-19".into());
    if Command::new(&clang).arg("--version").output().is_err() {
        panic!(
            "\n\n`{clang}` was not found: it compiles Osprey's eBPF programs.\n\
             Install the build packages:  sudo apt-get install -y {PACKAGES}\n\
             (or run `cargo xtask deps` as root; set OSPREY_CLANG to use another clang)\n\n"
        );
    }
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        panic!(
            "\n\n/usr/include/bpf/bpf_helpers.h is missing: install libbpf-dev.\n\
             sudo apt-get install -y {PACKAGES}\n\n"
        );
    }

    let arch = match env::var("CARGO_CFG_TARGET_ARCH").unwrap().as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => other,
    }
    .to_string();
    let src = dir.join("src/osprey.bpf.c");
    let obj = out.join("osprey.bpf.o");
    let output = Command::new(&clang)
        .args(["-g", "-O2", "-target", "bpf", "-mcpu=v3", "-D__BPF__"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .args(["-Wall", "-Werror", "-Wno-unused-function"])
        .arg("-I")
        .arg(dir.join("include"))
        .arg("-I")
        .arg(&common)
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("run clang");
    if !output.status.success() {
        panic!(
            "clang failed to compile {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    write_program_table(&obj, &out.join("programs.rs"));
}

/// Lists every program in the object with the hook its ELF section names, so the loader's
/// table can never disagree with the C sources.
fn write_program_table(obj: &Path, out: &Path) {
    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
    let data = std::fs::read(obj).expect("read BPF object");
    let file = object::File::parse(&*data).expect("parse BPF object");
    let mut rows = Vec::new();
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || !sym.is_global() {
            continue;
        }
        let Some(idx) = sym.section_index() else { continue };
        let section = file.section_by_index(idx).expect("section").name().expect("section name").to_string();
        let name = sym.name().expect("symbol name").to_string();
        let hook = if let Some(tp) = section.strip_prefix("tp_btf/") {
            format!("Hook::TpBtf({tp:?})")
        } else if let Some(rest) = section.strip_prefix("tracepoint/") {
            let (cat, tp) = rest.split_once('/').expect("tracepoint/CATEGORY/NAME");
            format!("Hook::TracePoint({cat:?}, {tp:?})")
        } else {
            continue;
        };
        rows.push(format!("    Program {{ name: {name:?}, hook: {hook} }},\n"));
    }
    // ATTACH_ALSO markers (common.h): "program category/name" strings.
    if let Some(section) = file.section_by_name(".osprey.attach") {
        let bytes = section.data().expect("attach markers");
        for marker in bytes.split(|&b| b == 0).filter(|m| !m.is_empty()) {
            let marker = std::str::from_utf8(marker).expect("marker is text");
            let (name, hook) = marker.split_once(' ').expect("ATTACH_ALSO marker: program category/name");
            let (cat, tp) = hook.split_once('/').expect("category/name");
            rows.push(format!("    Program {{ name: {name:?}, hook: Hook::TracePoint({cat:?}, {tp:?}) }},\n"));
        }
    }
    rows.sort();
    std::fs::write(out, format!("&[\n{}]\n", rows.concat())).expect("write program table");
}
