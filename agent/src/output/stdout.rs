//! The queued form of the stdout sink: ECS JSON lines, written whenever the queue runs empty.

use std::{io, os::fd::AsFd};

use super::{
    queue::{Doc, Lines, Writer},
    OutputError,
};
use crate::metrics::OutputMetrics;

/// Settings of a `stdout` entry in `output.sinks` (none yet; write `stdout: {}`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

pub(crate) struct StdoutWriter<W: io::Write + Send + 'static = io::Stdout> {
    out: W,
    lines: Lines,
    m: OutputMetrics,
}

impl StdoutWriter {
    /// Writes straight to file descriptor 1 (a copy of it): `io::Stdout` is line-buffered, and
    /// would look for the end of every line of every batch before writing it.
    pub fn boxed(m: OutputMetrics) -> Box<dyn Writer> {
        match io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Box::new(StdoutWriter::with(Fd1(std::fs::File::from(fd)), m)),
            Err(_) => Box::new(Self::with(io::stdout(), m)),
        }
    }
}

/// Standard output's descriptor, written while holding `io::Stdout`'s lock: a batch goes out
/// whole before a line written around the queue (`Direct::Stdout`, which takes the same lock),
/// even when the pipe takes it in several writes.
struct Fd1(std::fs::File);

impl io::Write for Fd1 {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _whole = io::stdout().lock();
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let _whole = io::stdout().lock();
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: io::Write + Send + 'static> StdoutWriter<W> {
    pub fn with(out: W, m: OutputMetrics) -> Self {
        Self { out, lines: Lines::default(), m }
    }
}

impl<W: io::Write + Send + 'static> Writer for StdoutWriter<W> {
    fn write(&mut self, doc: &Doc<'_>) -> Result<(), OutputError> {
        self.lines.push(doc.json);
        if self.lines.buf.len() >= 1 << 16 {
            return self.idle();
        }
        Ok(())
    }

    fn idle(&mut self) -> Result<(), OutputError> {
        self.lines.drain_into(&mut self.out, &self.m).map_err(|e| OutputError::Io { what: "writing to stdout".into(), source: e })
    }

    fn close(&mut self) -> Result<(), OutputError> {
        self.idle()
    }
}
