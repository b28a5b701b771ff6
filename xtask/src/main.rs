//! `cargo xtask`: the project's own commands.
//!
//!   cargo xtask deps    install (as root) or name the build packages
//!   cargo xtask run     build everything and run the agent as root with the default config
//!   cargo xtask test    clippy, unit tests, the root integration tests on the real kernel, then
//!                       the VM run below
//!   cargo xtask test --vm   only the prevention and process tests on Debian's 6.1 kernel under qemu
//!   cargo xtask bench   what Osprey costs workloads: no agent vs bare hooks vs Osprey (root)
//!
//! Kept dependency-free on purpose: it must build before anything else is installed.

mod bench;
mod vm;

use std::{
    env,
    path::{Path, PathBuf},
    process::{exit, Command},
};

/// Debian/Ubuntu packages the build needs: clang-19 compiles the BPF programs (and its libclang
/// serves bindgen), libbpf-dev provides bpf_helpers.h, llvm-19 the BPF object tools.
const PACKAGES: &[&str] = &["clang-19", "llvm-19", "libbpf-dev"];
/// Extra packages the integration tests and benchmarks use.
const TEST_PACKAGES: &[&str] = &["bpftool", "rsyslog", "chromium", "clickhouse-server", "clickhouse-client"];
/// Workload generators of `cargo xtask bench` (its smoke run is part of `cargo xtask test`).
const BENCH_PACKAGES: &[&str] = &["stress-ng", "redis-server", "redis-tools", "bpftool"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions (declared here to keep xtask dependency-free).
    extern "C" {
        fn geteuid() -> u32;
    }
    unsafe { geteuid() == 0 }
}

fn have(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")]).status().is_ok_and(|s| s.success())
}

fn package_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn missing(pkgs: &[&str]) -> Vec<String> {
    pkgs.iter().filter(|p| !package_installed(p)).map(|p| p.to_string()).collect()
}

fn run(cmd: &mut Command) {
    eprintln!("xtask: {cmd:?}");
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("xtask: command failed ({s})");
            exit(s.code().unwrap_or(1));
        }
        Err(e) => {
            eprintln!("xtask: could not start {cmd:?}: {e}");
            exit(1);
        }
    }
}

/// Installs the missing packages with apt as root; otherwise prints the command and fails.
fn deps(with_test_packages: bool) {
    let mut want: Vec<&str> = PACKAGES.to_vec();
    if with_test_packages {
        want.extend_from_slice(TEST_PACKAGES);
        want.extend_from_slice(BENCH_PACKAGES);
        want.sort_unstable();
        want.dedup();
    }
    let todo = missing(&want);
    if todo.is_empty() {
        return;
    }
    if !is_root() || !have("apt-get") {
        eprintln!(
            "xtask: missing build packages: {}\n       install them with:  sudo apt-get install -y {}",
            todo.join(" "),
            todo.join(" ")
        );
        exit(1);
    }
    install(&todo);
}

/// apt-get install (as root) of `todo`, if any.
fn install(todo: &[String]) {
    if todo.is_empty() {
        return;
    }
    eprintln!("xtask: installing {}", todo.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"));
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(todo)
        .env("DEBIAN_FRONTEND", "noninteractive"));
}

/// Runs a `cargo test` command, echoing its output, and returns the (passed, failed) totals
/// from its `test result:` lines. Exits when the command fails.
fn run_counted(cmd: &mut Command) -> (u64, u64) {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: {cmd:?}");
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap_or_else(|e| {
        eprintln!("xtask: could not start {cmd:?}: {e}");
        exit(1)
    });
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines().map_while(Result::ok) {
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count_before(rest, " passed");
            failed += count_before(rest, " failed");
        }
    }
    let status = child.wait().expect("wait for cargo");
    if !status.success() {
        println!("osprey: {passed} passed, {} failed", failed.max(1));
        exit(status.code().unwrap_or(1));
    }
    (passed, failed)
}

/// The number just before `label` in "ok. 20 passed; 0 failed; ...".
fn count_before(s: &str, label: &str) -> u64 {
    s.split(';')
        .find_map(|part| part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(label.trim_start()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn usage() -> ! {
    eprintln!("usage: cargo xtask <deps|run [-- osprey run flags]|test [--unit|--vm]|bench [--smoke] [--help]>");
    exit(2);
}

/// `cargo xtask test --vm` (also the last step of `cargo xtask test`): installs qemu, cpio and
/// busybox-static, boots the guest, and returns how many test binaries passed in it.
fn run_vm() -> Result<u64, String> {
    if !is_root() {
        return Err("the VM run installs qemu with apt-get and fetches the kernel package: run it as root".into());
    }
    install(&missing(vm::PACKAGES));
    let o = vm::run(&root(), cargo)?;
    println!(
        "xtask vm: guest finished in {:.1}s (boot to result line), whole run {:.1}s",
        o.boot_to_result.as_secs_f64(),
        o.total.as_secs_f64()
    );
    if o.failed > 0 || o.passed == 0 {
        return Err(format!("{} test binaries failed in the guest, {} passed", o.failed, o.passed));
    }
    Ok(o.passed)
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage() };
    let rest: Vec<&str> = args[1..].iter().map(String::as_str).filter(|a| *a != "--").collect();
    match cmd.as_str() {
        "deps" => deps(true),
        "run" => {
            deps(false);
            run(cargo().args(["build", "--release", "-p", "agent", "--bin", "osprey"]));
            if !is_root() {
                eprintln!("xtask: the agent loads BPF programs and needs root: sudo -E cargo xtask run");
                exit(1);
            }
            let bin = root().join("target/release/osprey");
            let mut c = Command::new(bin);
            c.arg("run");
            let config = root().join("deploy/osprey.yaml");
            if config.exists() {
                c.arg("--config").arg(config);
            }
            // The default rule pack.
            c.arg("--rules").arg(root().join("rules"));
            run(c.args(rest));
        }
        "test" if rest.contains(&"--vm") => {
            deps(true);
            match run_vm() {
                Ok(n) => println!("osprey vm: {n} test binaries passed, 0 failed"),
                Err(e) => {
                    eprintln!("xtask vm: {e}");
                    println!("osprey vm: 0 passed, 1 failed");
                    exit(1);
                }
            }
        }
        "test" => {
            deps(true);
            let unit_only = rest.contains(&"--unit");
            run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]));
            // Unit tests: no root, no kernel.
            let (mut passed, mut failed) = run_counted(cargo().args(["test", "--workspace", "--exclude", "osprey-tests"]));
            if unit_only {
                println!("osprey: {passed} passed, {failed} failed");
                return;
            }
            if !is_root() {
                eprintln!("xtask: the integration tests load BPF programs: run `sudo -E cargo xtask test` (or --unit)");
                exit(1);
            }
            // Integration tests on the real kernel, one at a time: they share global hooks. Some
            // run the `osprey` binary itself.
            run(cargo().args(["build", "-p", "agent", "--bin", "osprey"]));
            let (p, f) = run_counted(cargo().args(["test", "-p", "osprey-tests", "--", "--test-threads=1"]));
            passed += p;
            failed += f;
            // The benchmark's smoke run (about a minute; speed is not judged): keeps it working.
            match bench::smoke() {
                Ok(()) => passed += 1,
                Err(e) => {
                    eprintln!("xtask bench --smoke: {e}");
                    println!("osprey: {passed} passed, {} failed", failed + 1);
                    exit(1);
                }
            }
            // The prevention and process tests on Debian's 6.1 kernel under qemu (about 7 minutes
            // under software emulation): BPF-LSM, kprobe and fentry paths run somewhere real.
            match run_vm() {
                Ok(n) => passed += n,
                Err(e) => {
                    eprintln!("xtask vm: {e}");
                    println!("osprey: {passed} passed, {} failed", failed + 1);
                    exit(1);
                }
            }
            println!("osprey: {passed} passed, {failed} failed");
        }
        "bench" => bench::main(&rest),
        _ => usage(),
    }
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn reads_cargo_test_totals() {
        let line = "ok. 20 passed; 3 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.07s";
        assert_eq!((count_before(line, " passed"), count_before(line, " failed")), (20, 3));
        assert_eq!(count_before("FAILED. 0 passed; 2 failed; 0 ignored", " failed"), 2);
    }
}
