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
};

/// Records per batch handed to the pipeline.
const BATCH: usize = 256;

/// Reads `ring` until `stop` turns true, then drains what is left and returns.
/// A full `tx` blocks this reader, so the kernel ring fills and the kernel counts the loss.
pub async fn read_ring(
    cpu: u32,
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Vec<Record>>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, until it is dropped,
    // which happens only when this AsyncFd is dropped.
    let mut fd = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
    loop {
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                if !drain(guard.get_inner_mut(), &tx, &metrics).await {
                    return Ok(());
                }
                guard.clear_ready();
                false
            }
            _ = stop.changed() => true,
        };
        if stopping || *stop.borrow() {
            drain(fd.get_mut(), &tx, &metrics).await;
            debug!(cpu, "ring reader stopped");
            return Ok(());
        }
    }
}

/// Decodes everything currently in the ring. Returns false when the receiver is gone.
async fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Vec<Record>>, metrics: &Metrics) -> bool {
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            let Some(item) = ring.next() else { break };
            match decode(&item) {
                Ok(rec) => {
                    metrics.record_received(rec.kind());
                    batch.push(rec);
                }
                Err(e) => metrics.decode_error(&e),
            }
        }
        let full = batch.len() == BATCH;
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return false;
        }
        if !full {
            return true;
        }
    }
}
