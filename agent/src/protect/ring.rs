//! The tamper ring (`prot_ring`): tamper records travel apart from the per-CPU event rings, so
//! a backlog of ordinary events (a flood, the agent's own start-up) never delays them. The
//! pipeline handles them as soon as they arrive, outside the reorder window.

use std::sync::Arc;

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

use crate::{decode::decode, decode::Record, metrics::Metrics};

/// Reads the tamper ring until `stop`; every record is sent on its own.
pub async fn read(ring: RingBuf<MapData>, tx: mpsc::UnboundedSender<Record>, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open until this AsyncFd drops it.
    let mut fd = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
    // Tamper records always wake the reader; the sweep is a safety net.
    let mut sweep = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                guard.clear_ready();
                drain(guard.get_inner_mut(), &tx, &metrics)
            }
            _ = sweep.tick() => drain(fd.get_mut(), &tx, &metrics),
            _ = stop.changed() => true,
        };
        if stopping || *stop.borrow() {
            drain(fd.get_mut(), &tx, &metrics);
            return Ok(());
        }
    }
}

/// Sends everything in the ring; true when the receiver is gone.
fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::UnboundedSender<Record>, metrics: &Metrics) -> bool {
    while let Some(item) = ring.next() {
        match decode(&item) {
            Ok(rec) => {
                metrics.record_received(rec.kind());
                if tx.send(rec).is_err() {
                    return true;
                }
            }
            Err(e) => metrics.decode_error(&e),
        }
    }
    false
}
