//! `cargo xtask test --vm`: the integration tests on a second, real kernel — Debian's cloud
//! kernel (bookworm: Linux 6.1, BPF-LSM, kprobes, fentry) booted under qemu with software
//! emulation (`-enable-kvm` crashes the guest on the development machine) and an initramfs that
//! holds busybox, the `osprey` binary, the test executables and every library they link.
//!
//! Steps: install qemu-system-x86, cpio and busybox-static (root, apt-get); fetch the kernel
//! package with `apt-get download` into target/vm/kernel; build the binaries; write the
//! initramfs (target/vm/initramfs.cpio.gz); boot it; read the serial console for the result
//! line the guest's /init prints; fail unless every test binary passed.

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::fs::{symlink, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Packages the harness needs on the host.
pub const PACKAGES: &[&str] = &["qemu-system-x86", "cpio", "busybox-static"];
/// Debian's metapackage; it depends on the versioned kernel image package.
const KERNEL_META: &str = "linux-image-cloud-amd64";
/// The test binaries run in the guest (tests/tests/NAME.rs), with libtest arguments. The exec
/// storm (20,000 execs) is left to the host: under software emulation it alone takes minutes;
/// the full-ring test still proves loss accounting on the guest's kernel.
const TESTS: &[(&str, &[&str])] =
    &[("prevention", &["--nocapture"]), ("process", &["--skip", "exec_storm_every_exec_is_delivered_or_counted_lost"])];
/// Host programs the tests execute in the guest (copied with their libraries): real dash and
/// coreutils, not busybox applets, so an exec is an exec.
const HOST_TOOLS: &[&str] = &["/bin/sh", "/usr/bin/dash", "/bin/echo", "/bin/true", "/bin/sleep", "/bin/cat", "/usr/bin/sha256sum"];
/// The line /init prints when the tests are done: `OSPREY-VM-RESULT: passed=N failed=M`.
const RESULT: &str = "OSPREY-VM-RESULT:";
/// Guest boot plus tests, under TCG.
const TIMEOUT: Duration = Duration::from_secs(900);

type Res<T> = Result<T, String>;

fn sh(cmd: &mut Command) -> Res<String> {
    eprintln!("xtask vm: {cmd:?}");
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a VM run found.
pub struct Outcome {
    pub passed: u64,
    pub failed: u64,
    pub boot_to_result: Duration,
    pub total: Duration,
}

/// The whole run: returns the guest's totals, or why there are none.
pub fn run(root: &Path, cargo: impl Fn() -> Command) -> Res<Outcome> {
    let started = Instant::now();
    let work = root.join("target/vm");
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let kernel = kernel(&work.join("kernel"))?;
    let bins = build(&cargo)?;
    let initrd = initramfs(root, &bins, &work)?;
    let (passed, failed, booted) = boot(&kernel, &initrd)?;
    Ok(Outcome { passed, failed, boot_to_result: booted, total: started.elapsed() })
}

/// The versioned kernel image package the metapackage depends on, e.g. linux-image-6.1.0-56-cloud-amd64.
fn kernel_package() -> Res<String> {
    let out = sh(Command::new("apt-cache").args(["depends", KERNEL_META]))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .ok_or_else(|| format!("apt-cache depends {KERNEL_META}: no linux-image dependency in {out:?} (apt-get update?)"))
}

/// vmlinuz of the cloud kernel, downloaded and unpacked into `cache` once.
fn kernel(cache: &Path) -> Res<PathBuf> {
    let pkg = kernel_package()?;
    let dir = cache.join(&pkg);
    let find = |dir: &Path| -> Option<PathBuf> {
        fs::read_dir(dir.join("boot")).ok()?.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-"))
        })
    };
    if let Some(v) = find(&dir) {
        return Ok(v);
    }
    fs::create_dir_all(cache).map_err(|e| e.to_string())?;
    // apt-get download writes into the current directory (as root; apt warns it cannot sandbox).
    sh(Command::new("apt-get").args(["download", "-q", &pkg]).current_dir(cache))?;
    let deb = fs::read_dir(cache)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb")))
        .ok_or_else(|| format!("apt-get download {pkg}: no .deb in {}", cache.display()))?;
    sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    find(&dir).ok_or_else(|| format!("{}: no boot/vmlinuz-*", deb.display()))
}

/// Paths of the binaries the guest runs.
struct Bins {
    osprey: PathBuf,
    workload: PathBuf,
    tests: Vec<(String, PathBuf)>,
}

fn build(cargo: &impl Fn() -> Command) -> Res<Bins> {
    sh(cargo().args(["build", "-p", "agent", "--bin", "osprey", "-p", "osprey-tests", "--bin", "osprey-workload"]))?;
    let mut cmd = cargo();
    cmd.args(["test", "-p", "osprey-tests", "--no-run", "--message-format=json"]);
    for (t, _) in TESTS {
        cmd.args(["--test", t]);
    }
    let json = sh(&mut cmd)?;
    let mut tests = Vec::new();
    for line in json.lines().filter(|l| l.contains("\"reason\":\"compiler-artifact\"")) {
        let (Some(name), Some(exe)) = (json_str(line, "\"target\":{", "name"), json_str(line, "", "executable")) else { continue };
        if TESTS.iter().any(|(t, _)| *t == name) && line.contains("\"kind\":[\"test\"]") {
            tests.push((name, PathBuf::from(exe)));
        }
    }
    if tests.len() != TESTS.len() {
        return Err(format!("cargo test --no-run named {tests:?}, expected {TESTS:?}"));
    }
    let target = json_target_dir(&json).unwrap_or_else(|| PathBuf::from("target"));
    Ok(Bins { osprey: target.join("debug/osprey"), workload: target.join("debug/osprey-workload"), tests })
}

/// The string value of `"key":"..."` in `line`, searched after `after` (no escapes in paths).
fn json_str(line: &str, after: &str, key: &str) -> Option<String> {
    let from = if after.is_empty() { 0 } else { line.find(after)? + after.len() };
    let pat = format!("\"{key}\":\"");
    let start = line[from..].find(&pat)? + from + pat.len();
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_string())
}

/// target/ of the workspace, from an artifact's `executable` path (…/target/debug/deps/x).
fn json_target_dir(json: &str) -> Option<PathBuf> {
    let exe = json.lines().find_map(|l| json_str(l, "", "executable"))?;
    Path::new(&exe).ancestors().find(|p| p.file_name().is_some_and(|n| n == "target")).map(Path::to_path_buf)
}

/// Copies `src` to `dest` (a path inside the staging tree), creating its directory.
fn copy(src: &Path, dest: &Path) -> Res<()> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    fs::copy(src, dest).map(drop).map_err(|e| format!("copy {} → {}: {e}", src.display(), dest.display()))
}

/// `stage` + an absolute path.
fn inside(stage: &Path, abs: &Path) -> PathBuf {
    stage.join(abs.strip_prefix("/").unwrap_or(abs))
}

/// Copies an ELF binary's shared libraries and its loader (from `ldd`) to their paths in `stage`.
fn copy_libs(bin: &Path, stage: &Path) -> Res<()> {
    let out = Command::new("ldd").arg(bin).output().map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(());
    }
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line.split("=>").last().unwrap_or("").split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            let dest = inside(stage, Path::new(path));
            if !dest.exists() {
                copy(Path::new(path), &dest)?;
            }
        }
    }
    Ok(())
}

/// A copy of a (large, debug) binary without its debug sections.
fn copy_stripped(src: &Path, dest: &Path) -> Res<()> {
    copy(src, dest)?;
    sh(Command::new("strip").arg("--strip-debug").arg(dest))?;
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Res<()> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

/// Writes target/vm/initramfs.cpio.gz.
fn initramfs(root: &Path, bins: &Bins, work: &Path) -> Res<PathBuf> {
    let stage = work.join("initramfs");
    if stage.exists() {
        fs::remove_dir_all(&stage).map_err(|e| format!("{}: {e}", stage.display()))?;
    }
    // Debian's merged /usr layout, as on the host (ldd names /lib/…, /lib64/…).
    for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "proc", "sys", "dev", "run", "root", "tmp", "osprey/bin"] {
        fs::create_dir_all(stage.join(d)).map_err(|e| e.to_string())?;
    }
    for (link, to) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        symlink(to, stage.join(link)).map_err(|e| e.to_string())?;
    }
    fs::set_permissions(stage.join("tmp"), fs::Permissions::from_mode(0o1777)).map_err(|e| e.to_string())?;
    copy(Path::new("/bin/busybox"), &stage.join("usr/lib/osprey-vm/busybox"))?;
    for tool in HOST_TOOLS {
        let p = Path::new(tool);
        let meta = fs::symlink_metadata(p).map_err(|e| format!("{tool}: {e}"))?;
        if meta.file_type().is_symlink() {
            let to = fs::read_link(p).map_err(|e| e.to_string())?;
            let dest = inside(&stage, p);
            if !dest.exists() {
                symlink(to, dest).map_err(|e| e.to_string())?;
            }
        } else {
            copy(p, &inside(&stage, p))?;
            copy_libs(p, &stage)?;
        }
    }
    let guest = |name: &str| stage.join("osprey/bin").join(name);
    copy_stripped(&bins.osprey, &guest("osprey"))?;
    copy_libs(&bins.osprey, &stage)?;
    copy_stripped(&bins.workload, &guest("osprey-workload"))?;
    copy_libs(&bins.workload, &stage)?;
    let mut runs = String::new();
    for (name, exe) in &bins.tests {
        copy_stripped(exe, &guest(name))?;
        copy_libs(exe, &stage)?;
        let args = TESTS.iter().find(|(t, _)| t == name).map(|(_, a)| a.join(" ")).unwrap_or_default();
        runs.push_str(&format!("run_test {name} {args}\n"));
    }
    // Rules and the sample config, for tests that want them.
    sh(Command::new("cp").arg("-r").arg(root.join("rules")).arg(stage.join("osprey/rules")))?;
    copy(&root.join("deploy/osprey.yaml"), &stage.join("osprey/osprey.yaml"))?;
    write(&stage.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", 0o644)?;
    write(&stage.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n", 0o644)?;
    write(&stage.join("etc/hostname"), "osprey-vm\n", 0o644)?;
    write(&stage.join("init"), &INIT.replace("@RUNS@", &runs), 0o755)?;

    let out = work.join("initramfs.cpio.gz");
    let script = format!("cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'", stage.display(), out.display());
    sh(Command::new("sh").args(["-c", &script]))?;
    let size = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    eprintln!("xtask vm: initramfs {} ({} MiB)", out.display(), size >> 20);
    Ok(out)
}

/// The guest's /init (busybox sh): mounts, loopback, the tests, the result line, power off.
const INIT: &str = r#"#!/usr/lib/osprey-vm/busybox sh
BB=/usr/lib/osprey-vm/busybox
mkdir -p /usr/lib/osprey-vm/bin && $BB --install -s /usr/lib/osprey-vm/bin
export PATH=/osprey/bin:/usr/bin:/usr/sbin:/usr/lib/osprey-vm/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /sys/fs/cgroup /sys/fs/bpf /dev/pts /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t securityfs securityfs /sys/kernel/security
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ip link set lo up
hostname osprey-vm
echo "OSPREY-VM-KERNEL: $(uname -r) lsm=$(cat /sys/kernel/security/lsm) cpus=$(nproc)"
export OSPREY_BIN=/osprey/bin/osprey OSPREY_WORKLOAD=/osprey/bin/osprey-workload OSPREY_VM=1 OSPREY_EXPECT_LSM=1 RUST_BACKTRACE=1
cd /root
passed=0; failed=0
run_test() {
    name=$1; shift
    start=$(date +%s)
    if /osprey/bin/$name --test-threads=1 "$@"; then
        passed=$((passed+1)); r=ok
    else
        failed=$((failed+1)); r=FAILED
    fi
    echo "OSPREY-VM-TEST: $name $r $(( $(date +%s) - start ))s"
}
@RUNS@
echo "OSPREY-VM-RESULT: passed=$passed failed=$failed"
sync
poweroff -f
"#;

/// Boots the guest; returns (binaries passed, binaries failed, time to the result line).
fn boot(kernel: &Path, initrd: &Path) -> Res<(u64, u64, Duration)> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-cpu", "max", "-m", "2G", "-smp", "2", "-nographic", "-no-reboot", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 lsm=lockdown,capability,bpf panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("xtask vm: {cmd:?}");
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = started + TIMEOUT;
    let mut result = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                println!("vm| {line}");
                if let Some(rest) = line.trim().strip_prefix(RESULT) {
                    result = Some((count(rest, "passed="), count(rest, "failed="), started.elapsed()));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill(); // our own qemu
                let _ = child.wait();
                return Err(format!("the guest did not finish within {TIMEOUT:?}"));
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    match result {
        Some(r) => Ok(r),
        None => Err(format!("the guest stopped ({status}) without printing {RESULT}")),
    }
}

fn count(s: &str, key: &str) -> u64 {
    s.split_whitespace().find_map(|w| w.strip_prefix(key)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_artifacts() {
        let line = r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["test"],"crate_types":["bin"],"name":"prevention","src_path":"/w/tests/tests/prevention.rs"},"profile":{},"features":[],"filenames":["/w/target/debug/deps/prevention-abc"],"executable":"/w/target/debug/deps/prevention-abc","fresh":true}"#;
        assert_eq!(json_str(line, "\"target\":{", "name").as_deref(), Some("prevention"));
        assert_eq!(json_str(line, "", "executable").as_deref(), Some("/w/target/debug/deps/prevention-abc"));
        assert_eq!(json_target_dir(line), Some(PathBuf::from("/w/target")));
        assert_eq!(count(" passed=2 failed=0", "passed="), 2);
        assert_eq!(count(" passed=2 failed=1", "failed="), 1);
    }
}
