//! Generates the Rust record types from `include/osprey.h` so C and Rust cannot drift.
use std::{env, path::PathBuf};

fn main() {
    let header = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("include/osprey.h");
    println!("cargo:rerun-if-changed={}", header.display());

    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .use_core()
        .allowlist_type("osprey_.*")
        .allowlist_var("OSPREY_.*")
        // Tags stay plain integers here; lib.rs converts them with TryFrom (never transmute).
        .constified_enum_module("osprey_.*")
        .layout_tests(true)
        .derive_default(true)
        .derive_debug(true)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "bindgen could not read {}: {e}\n\
                 bindgen needs libclang: install it with `apt-get install clang-19` \
                 (or run `cargo xtask deps`).",
                header.display()
            )
        });
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("osprey_h.rs");
    bindings.write_to_file(&out).expect("write bindings");
}
