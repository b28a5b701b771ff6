//! ECS JSON lines to a file with size-based rotation: when the next write would take the file past
//! `max_size`, it becomes `PATH.1` (compressed to `PATH.1.gz` on a helper thread), older ones move
//! up one number, and only `keep` rotated files are kept.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    thread::{self, JoinHandle},
};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{
    queue::{Doc, Lines, Writer},
    OutputError,
};
use crate::{config::ByteSize, metrics::OutputMetrics};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The live file; rotated files sit next to it as `PATH.1.gz`, `PATH.2.gz`, …
    pub path: PathBuf,
    /// Rotate before the file would grow past this.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// Rotated files to keep (0: the live file is simply started over).
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// gzip rotated files.
    #[serde(default = "yes")]
    pub compress: bool,
}

fn default_max_size() -> ByteSize {
    ByteSize(100 << 20)
}
fn default_keep() -> u32 {
    5
}
fn yes() -> bool {
    true
}

impl FileConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), max_size: default_max_size(), keep: default_keep(), compress: true }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() || self.path.file_name().is_none() {
            return Err(format!("file.path: `{}` is not a file path", self.path.display()));
        }
        if self.max_size.0 < 4096 {
            return Err("file.max_size: at least 4KiB".into());
        }
        if self.keep > 1000 {
            return Err("file.keep: at most 1000".into());
        }
        Ok(())
    }
}

/// `PATH.n`, or `PATH.n.gz`.
fn numbered(path: &Path, n: u32, gz: bool) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}{}", if gz { ".gz" } else { "" }));
    PathBuf::from(s)
}

fn open(path: &Path) -> io::Result<File> {
    // Events name users, commands and paths: not for every local user to read.
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

pub(crate) struct FileWriter {
    cfg: FileConfig,
    file: File,
    /// Bytes in the live file.
    size: u64,
    lines: Lines,
    m: OutputMetrics,
    compressor: Option<JoinHandle<()>>,
}

/// Pending data is written once it reaches this, or when the queue runs empty.
const WRITE_CHUNK: usize = 1 << 16;

impl FileWriter {
    pub fn open(cfg: FileConfig, m: OutputMetrics) -> Result<Self, OutputError> {
        let io_err = |what: &str, e| OutputError::Io { what: format!("{what} {}", cfg.path.display()), source: e };
        let file = open(&cfg.path).map_err(|e| io_err("opening", e))?;
        let size = file.metadata().map_err(|e| io_err("reading the size of", e))?.len();
        Ok(Self { cfg, file, size, lines: Lines::default(), m, compressor: None })
    }

    fn err(&self, what: &str, source: io::Error) -> OutputError {
        OutputError::Io { what: format!("{what} {}", self.cfg.path.display()), source }
    }

    fn write_pending(&mut self) -> Result<(), OutputError> {
        let n = self.lines.buf.len() as u64;
        match self.lines.drain_into(&mut self.file, &self.m) {
            Ok(()) => {
                self.size += n;
                Ok(())
            }
            Err(e) => Err(self.err("writing", e)),
        }
    }

    /// Moves the live file to `PATH.1` (older ones up one), starts a new one, compresses `PATH.1`.
    fn rotate(&mut self) -> Result<(), OutputError> {
        if let Some(c) = self.compressor.take() {
            let _ = c.join();
        }
        let path = self.cfg.path.clone();
        let keep = self.cfg.keep;
        if keep == 0 {
            self.file.set_len(0).map_err(|e| self.err("truncating", e))?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..=keep).rev() {
            for gz in [false, true] {
                let from = numbered(&path, n, gz);
                if !from.exists() {
                    continue;
                }
                let r = if n == keep { fs::remove_file(&from) } else { fs::rename(&from, numbered(&path, n + 1, gz)) };
                if let Err(e) = r {
                    self.m.errors.inc();
                    warn!(file = %from.display(), error = %e, "rotating an old output file failed");
                }
            }
        }
        let first = numbered(&path, 1, false);
        fs::rename(&path, &first).map_err(|e| self.err("rotating", e))?;
        self.file = open(&path).map_err(|e| self.err("reopening", e))?;
        self.size = 0;
        info!(file = %path.display(), "output file rotated");
        if self.cfg.compress {
            let m = self.m.clone();
            self.compressor = Some(
                thread::Builder::new()
                    .name("osprey-gzip".into())
                    .spawn(move || {
                        if let Err(e) = gzip(&first) {
                            m.errors.inc();
                            warn!(file = %first.display(), error = %e, "compressing a rotated output file failed");
                        }
                    })
                    .map_err(|e| self.err("compressing", e))?,
            );
        }
        Ok(())
    }

    /// Waits for a compression in flight (tests, shutdown).
    fn settle(&mut self) {
        if let Some(c) = self.compressor.take() {
            let _ = c.join();
        }
    }
}

/// `PATH` → `PATH.gz` through a temporary file, then removes `PATH`.
fn gzip(path: &Path) -> io::Result<()> {
    let mut gz_path = path.as_os_str().to_owned();
    gz_path.push(".gz");
    let gz_path = PathBuf::from(gz_path);
    let mut tmp = gz_path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut input = File::open(path)?;
    let out = OpenOptions::new().create(true).write(true).truncate(true).mode(0o640).open(&tmp)?;
    let mut enc = flate2::write::GzEncoder::new(io::BufWriter::new(out), flate2::Compression::default());
    io::copy(&mut input, &mut enc)?;
    let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    fs::rename(&tmp, &gz_path)?;
    fs::remove_file(path)
}

impl Writer for FileWriter {
    fn write(&mut self, doc: &Doc<'_>) -> Result<(), OutputError> {
        let line = doc.json.len() as u64 + 1;
        let pending = self.lines.buf.len() as u64;
        if self.size + pending + line > self.cfg.max_size.0 && self.size + pending > 0 {
            self.write_pending()?;
            if let Err(e) = self.rotate() {
                // Keep writing to the file we have rather than lose events.
                self.m.errors.inc();
                return Err(e);
            }
        }
        self.lines.push(doc.json);
        if self.lines.buf.len() >= WRITE_CHUNK {
            self.write_pending()?;
        }
        Ok(())
    }

    fn idle(&mut self) -> Result<(), OutputError> {
        self.write_pending()
    }

    fn close(&mut self) -> Result<(), OutputError> {
        let r = self.write_pending();
        self.settle();
        r
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::{
        metrics::Metrics,
        output::{filter::Facts, queue::tests::*},
    };

    fn write_n(w: &mut FileWriter, from: u32, n: u32) {
        let ecs = ecs();
        for pid in from..from + n {
            let ev = exec(pid);
            let json = serde_json::to_vec(&ecs.to_value(&ev)).unwrap();
            let facts = Facts::known(&ev).unwrap();
            w.write(&Doc { event: &ev, json: &json, facts: &facts, ecs: &ecs, shared: None }).unwrap();
            w.idle().unwrap();
        }
    }

    fn pids(text: &str) -> Vec<u32> {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["process"]["pid"].as_u64().unwrap() as u32)
            .collect()
    }

    fn gunzip(p: &Path) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(File::open(p).unwrap()).read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn rotates_compresses_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        let metrics = Metrics::new();
        let m = metrics.output("file");
        let cfg = FileConfig { path: path.clone(), max_size: ByteSize(8192), keep: 2, compress: true };
        let mut w = FileWriter::open(cfg, m.clone()).unwrap();
        let line = {
            let ecs = ecs();
            serde_json::to_vec(&ecs.to_value(&exec(1000))).unwrap().len() as u64 + 1
        };
        let per_file = (8192 / line) as u32;
        // Four files' worth: the live one, two kept, one deleted.
        write_n(&mut w, 1000, per_file * 4);
        w.close().unwrap();

        let live = fs::read_to_string(&path).unwrap();
        assert!(live.len() as u64 <= 8192);
        let live_pids = pids(&live);
        let one = pids(&gunzip(&numbered(&path, 1, true)));
        let two = pids(&gunzip(&numbered(&path, 2, true)));
        assert!(!numbered(&path, 3, true).exists(), "keep: 2");
        assert!(!numbered(&path, 1, false).exists(), "uncompressed copy removed");
        assert_eq!(one.len() as u32, per_file);
        // Newest last: .2 then .1 then the live file, with no gaps.
        let all: Vec<u32> = two.iter().chain(&one).chain(&live_pids).copied().collect();
        assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
        assert_eq!(*all.last().unwrap(), 1000 + per_file * 4 - 1);
        assert_eq!(m.written.get(), u64::from(per_file * 4));
        assert_eq!(m.errors.get(), 0);
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o640);
    }

    #[test]
    fn uncompressed_and_keep_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        let m = Metrics::new().output("file");
        let cfg = FileConfig { path: path.clone(), max_size: ByteSize(4096), keep: 1, compress: false };
        let mut w = FileWriter::open(cfg, m.clone()).unwrap();
        write_n(&mut w, 1, 20);
        w.close().unwrap();
        assert!(numbered(&path, 1, false).exists());
        assert!(!numbered(&path, 2, false).exists());

        let path = dir.path().join("z.json");
        let cfg = FileConfig { path: path.clone(), max_size: ByteSize(4096), keep: 0, compress: true };
        let mut w = FileWriter::open(cfg, m).unwrap();
        write_n(&mut w, 1, 20);
        w.close().unwrap();
        assert!(fs::metadata(&path).unwrap().len() <= 4096);
        assert!(!numbered(&path, 1, false).exists() && !numbered(&path, 1, true).exists());
    }

    #[test]
    fn appends_to_an_existing_file_and_reports_open_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        fs::write(&path, "{\"old\":1}\n").unwrap();
        let m = Metrics::new().output("file");
        let mut w = FileWriter::open(FileConfig::new(&path), m.clone()).unwrap();
        write_n(&mut w, 5, 1);
        w.close().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"old\":1}\n{"), "{text}");
        let err = FileWriter::open(FileConfig::new(dir.path().join("no/such/dir/e.json")), m).err().unwrap();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
