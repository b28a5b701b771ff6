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
}
