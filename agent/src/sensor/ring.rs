//! Asynchronous readers of the per-CPU ring buffers: one tokio task per buffer, woken through
//! the buffer's epoll fd, decoding records in place and handing them on in batches.

use std::sync::Arc;

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};
use tracing::debug;

use crate::{
    decode::{decode, Record},
    metrics::Metrics,
    pipeline::boottime_ns,
    reorder::ReadMarks,
};

/// Records per batch handed to the pipeline.
const BATCH: usize = 256;

/// How often a reader sweeps its ring. The kernel programs wake readers only when a ring is over
/// a quarter full (each wakeup costs the producing CPU a self-IPI); below that, this sweep is how
/// records are collected, so it bounds their delay.
const POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Read-only view of a ring buffer's consumer and producer positions (the first u64 of its
/// first and second pages), for the fill-level metric. aya keeps its own mapping private.
struct Positions {
    consumer: *mut libc::c_void,
    producer: *mut libc::c_void,
    page: usize,
}

// SAFETY: the pointers are only read (volatile) from the thread that owns the reader.
unsafe impl Send for Positions {}

impl Positions {
    fn map(fd: std::os::fd::BorrowedFd<'_>) -> Option<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let map = |off: usize| {
            // SAFETY: mapping one page of a ring buffer map read-only; checked for MAP_FAILED.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), page, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), off as libc::off_t) };
            (p != libc::MAP_FAILED).then_some(p)
        };
        let consumer = map(0)?;
        let Some(producer) = map(page) else {
            // SAFETY: unmapping the page mapped just above.
            unsafe { libc::munmap(consumer, page) };
            return None;
        };
        Some(Self { consumer, producer, page })
    }

    /// Bytes written by the kernel and not yet consumed.
    fn used(&self) -> u64 {
        // SAFETY: both pages stay mapped for our lifetime; the kernel updates them concurrently,
        // hence volatile reads of the aligned u64 at their start.
        let (c, p) = unsafe {
            (std::ptr::read_volatile(self.consumer as *const u64), std::ptr::read_volatile(self.producer as *const u64))
        };
        p.saturating_sub(c)
    }
}

impl Drop for Positions {
    fn drop(&mut self) {
        // SAFETY: unmapping the two pages this value mapped.
        unsafe {
            libc::munmap(self.consumer, self.page);
            libc::munmap(self.producer, self.page);
        }
    }
}

/// One ring's reader: the CPU it belongs to, and its entry in the read marks.
pub struct Reader {
    pub cpu: u32,
    pub slot: usize,
    pub marks: Arc<ReadMarks>,
}

/// Reads `ring` until `stop` turns true, then drains what is left and returns.
/// A full `tx` blocks this reader, so the kernel ring fills and the kernel counts the loss.
pub async fn read_ring(
    me: Reader,
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Vec<Record>>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let cpu = me.cpu;
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, until it is dropped,
    // which happens only when this AsyncFd is dropped.
    let positions = Positions::map(std::os::fd::AsFd::as_fd(&ring));
    let mut fd = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
    // Wakeups come only from a filling ring; the sweep every POLL collects everything else.
    let mut sweep = tokio::time::interval(POLL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                // Clear readiness before draining, not after: a record committed after the last
                // empty read would otherwise lose its wakeup and wait in the ring until this CPU
                // produced another one.
                guard.clear_ready();
                if let Some(p) = &positions {
                    metrics.ringbuf_used(cpu, p.used());
                }
                match drain(guard.get_inner_mut(), &me, &tx, &metrics).await {
                    Some(_) => false,
                    None => return Ok(()),
                }
            }
            _ = sweep.tick() => {
                match drain(fd.get_mut(), &me, &tx, &metrics).await {
                    Some(0) => {}
                    Some(n) => metrics.ringbuf_sweep(cpu, n),
                    None => return Ok(()),
                }
                false
            }
            _ = stop.changed() => true,
        };
        if stopping || *stop.borrow() {
            drain(fd.get_mut(), &me, &tx, &metrics).await;
            debug!(cpu, "ring reader stopped");
            return Ok(());
        }
    }
}

/// Decodes everything currently in the ring, then moves the ring's read mark. Returns how many
/// records it read, or None when the receiver is gone.
async fn drain(ring: &mut RingBuf<MapData>, me: &Reader, tx: &mpsc::Sender<Vec<Record>>, metrics: &Metrics) -> Option<u64> {
    let mut read = 0;
    loop {
        // Everything this CPU committed before `start` is read by the time the ring is empty.
        let start = boottime_ns();
        let mut newest = 0;
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            let Some(item) = ring.next() else { break };
            read += 1;
            match decode(&item) {
                Ok(rec) => {
                    metrics.record_received(rec.kind());
                    newest = newest.max(rec.header().ktime_ns);
                    batch.push(rec);
                }
                Err(e) => metrics.decode_error(&e),
            }
        }
        let full = batch.len() == BATCH;
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return None;
        }
        // Sent first, marked after: the pipeline reads the mark before it takes the queue.
        // A full batch leaves more in the ring: read up to its newest record only.
        me.marks.advance(me.slot, if full { newest } else { start.max(newest) });
        if !full {
            return Some(read);
        }
    }
}
