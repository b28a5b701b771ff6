//! Where events go. Every sink gets every event; the pipeline flushes them on its tick.

use std::io::{self, Write};

use tokio::sync::mpsc;

use crate::event::{Ecs, Event};

pub trait Sink: Send {
    fn name(&self) -> &'static str;
    fn write(&mut self, ev: &Event, ecs: &Ecs) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

/// ECS JSON lines on standard output.
pub struct Stdout {
    out: io::BufWriter<io::Stdout>,
    line: Vec<u8>,
}

impl Default for Stdout {
    fn default() -> Self {
        Self { out: io::BufWriter::with_capacity(1 << 16, io::stdout()), line: Vec::with_capacity(2048) }
    }
}

impl Sink for Stdout {
    fn name(&self) -> &'static str {
        "stdout"
    }
    fn write(&mut self, ev: &Event, ecs: &Ecs) -> io::Result<()> {
        self.line.clear();
        ecs.write(ev, &mut self.line)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Hands events to an in-process consumer (tests, embedding).
pub struct Channel(pub mpsc::UnboundedSender<Event>);

impl Sink for Channel {
    fn name(&self) -> &'static str {
        "channel"
    }
    fn write(&mut self, ev: &Event, _: &Ecs) -> io::Result<()> {
        self.0.send(ev.clone()).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "receiver gone"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
