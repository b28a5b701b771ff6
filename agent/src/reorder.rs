//! Orders records from different CPUs by kernel timestamp. Each per-CPU buffer is in order on
//! its own, but a fork on CPU 0 and the child's exec on CPU 1 can arrive either way round.
//!
//! A record is released once it is older than the window *and* every ring's reader has read
//! past its timestamp (its [`ReadMarks`] entry): a reader that falls behind, because its thread
//! was descheduled or its virtual CPU stalled, holds the others back instead of letting their
//! younger records overtake its older ones. A reader silent for [`STALL`] (in the pipeline's own
//! time) stops holding the rest back; what it delivers later is counted late.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::atomic::{AtomicU64, Ordering},
};

use tracing::warn;

use crate::decode::Record;

/// How long the pipeline waits for a reader whose mark does not move.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(1);

/// How far each ring has been read, in boot-time nanoseconds: every record its CPU stamped
/// before the mark has been handed to the pipeline. Written by the ring readers after the
/// records are sent, read by the pipeline before it takes what is queued.
pub struct ReadMarks(Box<[AtomicU64]>);

impl ReadMarks {
    pub fn new(rings: usize) -> Self {
        Self((0..rings).map(|_| AtomicU64::new(0)).collect())
    }

    /// Ring `slot` has delivered everything stamped before `ts`. Marks only move forward.
    pub fn advance(&self, slot: usize, ts: u64) {
        self.0[slot].fetch_max(ts, Ordering::Release);
    }

    pub fn get(&self, slot: usize) -> u64 {
        self.0[slot].load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the pipeline last saw of one ring's mark.
#[derive(Clone, Copy)]
struct Seen {
    mark: u64,
    /// When (pipeline time) the mark last moved.
    moved: u64,
    stalled: bool,
}

/// A queued record's place in the order: the heap moves these, not the records.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    ts: u64,
    seq: u64,
    /// Where the record waits in [`Reorder::slots`].
    slot: u32,
}

pub struct Reorder {
    heap: BinaryHeap<Reverse<Item>>,
    /// The queued records, and the free slots among them.
    slots: Vec<Option<Record>>,
    free: Vec<u32>,
    seq: u64,
    window_ns: u64,
    last_ts: u64,
    late: u64,
    marks: Option<std::sync::Arc<ReadMarks>>,
    seen: Vec<Seen>,
    /// The pipeline's previous call to [`Reorder::horizon`].
    checked: u64,
    stalls: u64,
}

impl Reorder {
    /// Holds records for the window only (a replay, with no ring readers).
    pub fn new(window_ns: u64) -> Self {
        Self {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            window_ns,
            last_ts: 0,
            late: 0,
            marks: None,
            seen: Vec::new(),
            checked: 0,
            stalls: 0,
        }
    }

    /// Holds records for the window and until every ring of `marks` has been read past them.
    pub fn with_marks(window_ns: u64, marks: std::sync::Arc<ReadMarks>, now_ns: u64) -> Self {
        let seen = vec![Seen { mark: 0, moved: now_ns, stalled: false }; marks.len()];
        Self { marks: Some(marks), seen, checked: now_ns, ..Self::new(window_ns) }
    }

    pub fn push(&mut self, rec: Record) {
        let ts = rec.header().ktime_ns;
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(rec);
                slot
            }
            None => {
                self.slots.push(Some(rec));
                (self.slots.len() - 1) as u32
            }
        };
        self.heap.push(Reverse(Item { ts, seq: self.seq, slot }));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Records that arrived after a younger one had already been released (window too short).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Times a reader stopped holding the others back because its mark stood still for
    /// [`STALL`].
    pub fn stalls(&self) -> u64 {
        self.stalls
    }

    /// The newest timestamp that may be released at `now_ns`: older than the window and, for
    /// every ring whose reader is not stalled, older than its mark. Read the marks with this
    /// *before* taking the records the readers have queued, so that what a mark covers is in.
    pub fn horizon(&mut self, now_ns: u64) -> u64 {
        let mut horizon = now_ns.saturating_sub(self.window_ns);
        let Some(marks) = &self.marks else { return horizon };
        let stall = STALL.as_nanos() as u64;
        // A gap in the pipeline's own calls means the whole process (or machine) stood still:
        // every reader gets a fresh allowance to catch up.
        let whole = now_ns.saturating_sub(self.checked) > stall / 2;
        self.checked = now_ns;
        for (slot, seen) in self.seen.iter_mut().enumerate() {
            let mark = marks.get(slot);
            if mark != seen.mark || whole {
                seen.mark = mark;
                seen.moved = now_ns;
            }
            let stalled = now_ns.saturating_sub(seen.moved) > stall;
            if stalled && !seen.stalled {
                self.stalls += 1;
                warn!(ring = slot, "ring reader silent for {STALL:?}: records from other CPUs are released without it");
            }
            seen.stalled = stalled;
            if !stalled {
                horizon = horizon.min(mark);
            }
        }
        horizon
    }

    /// Releases the oldest record if it is no younger than `horizon` (see [`Reorder::horizon`]).
    pub fn pop_ready(&mut self, horizon: u64) -> Option<Record> {
        if self.heap.peek().is_some_and(|Reverse(i)| i.ts <= horizon) {
            return self.pop();
        }
        None
    }

    /// Releases the oldest record regardless of the window (shutdown).
    pub fn pop(&mut self) -> Option<Record> {
        let Reverse(item) = self.heap.pop()?;
        if item.ts < self.last_ts {
            self.late += 1;
        }
        self.last_ts = self.last_ts.max(item.ts);
        self.free.push(item.slot);
        self.slots[item.slot as usize].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, raw};

    fn rec(ts: u64) -> Record {
        decode(&raw::fork(1, 2, ts)).unwrap()
    }

    #[test]
    fn releases_in_timestamp_order_after_the_window() {
        let mut r = Reorder::new(100);
        for ts in [50, 10, 30, 20] {
            r.push(rec(ts));
        }
        let h = r.horizon(100);
        assert!(r.pop_ready(h).is_none(), "nothing is older than the window yet");
        let h = r.horizon(140);
        let out: Vec<u64> = std::iter::from_fn(|| r.pop_ready(h)).map(|r| r.header().ktime_ns).collect();
        assert_eq!(out, [10, 20, 30], "50 is still inside the window");
        assert_eq!(r.pop().unwrap().header().ktime_ns, 50);
        assert_eq!(r.late(), 0);
        r.push(rec(5));
        r.pop();
        assert_eq!(r.late(), 1, "a record older than one already released is late");
    }

    const MS: u64 = 1_000_000;

    fn released(r: &mut Reorder, now: u64) -> Vec<u64> {
        let h = r.horizon(now);
        std::iter::from_fn(|| r.pop_ready(h)).map(|r| r.header().ktime_ns).collect()
    }

    #[test]
    fn a_record_waits_for_every_ring_to_be_read_past_it() {
        let marks = std::sync::Arc::new(ReadMarks::new(2));
        let mut r = Reorder::with_marks(50 * MS, marks.clone(), 0);
        r.push(rec(100 * MS)); // read from ring 0
        marks.advance(0, 120 * MS);
        marks.advance(1, 90 * MS); // ring 1's reader is behind (a descheduled thread)
        assert!(released(&mut r, 200 * MS).is_empty(), "ring 1 may still hold an older record");
        r.push(rec(95 * MS)); // ...and it did
        marks.advance(1, 130 * MS);
        assert_eq!(released(&mut r, 210 * MS), [95 * MS, 100 * MS], "in order once both are past");
        assert_eq!(r.late(), 0);
        marks.advance(0, 300 * MS);
        marks.advance(1, 300 * MS);
        r.push(rec(280 * MS));
        assert!(released(&mut r, 320 * MS).is_empty(), "the window still applies");
        assert_eq!(released(&mut r, 330 * MS), [280 * MS]);
    }

    #[test]
    fn a_silent_reader_holds_the_others_back_for_the_stall_time_only() {
        let marks = std::sync::Arc::new(ReadMarks::new(2));
        let mut r = Reorder::with_marks(50 * MS, marks.clone(), 0);
        r.push(rec(10 * MS));
        let mut now = 0;
        // The pipeline ticks every 100 ms; ring 0 keeps moving, ring 1 never does.
        while now + 100 * MS <= STALL.as_nanos() as u64 {
            now += 100 * MS;
            marks.advance(0, now);
            assert!(released(&mut r, now).is_empty(), "held at {now}");
        }
        assert_eq!(r.stalls(), 0);
        now += 100 * MS;
        marks.advance(0, now);
        assert_eq!(released(&mut r, now), [10 * MS], "released without the silent ring");
        assert_eq!(r.stalls(), 1, "counted once per silence");
        assert!(released(&mut r, now + 100 * MS).is_empty());
        assert_eq!(r.stalls(), 1);
        // It wakes up with an older record: late, and it holds the others back again.
        r.push(rec(5 * MS));
        marks.advance(1, now + 150 * MS);
        r.push(rec(now + 120 * MS));
        assert_eq!(released(&mut r, now + 200 * MS), [5 * MS]);
        assert_eq!(r.late(), 1);
    }

    #[test]
    fn a_pause_of_the_whole_process_is_no_reader_stall() {
        let marks = std::sync::Arc::new(ReadMarks::new(2));
        let mut r = Reorder::with_marks(50 * MS, marks.clone(), 0);
        marks.advance(0, 20 * MS);
        r.push(rec(10 * MS));
        assert!(released(&mut r, 30 * MS).is_empty());
        // The pipeline itself did not run for 20 s (a stopped VM): nobody is judged silent yet.
        let later = 20_030 * MS;
        assert!(released(&mut r, later).is_empty(), "ring 1 gets its chance to deliver first");
        assert_eq!(r.stalls(), 0);
        marks.advance(1, later);
        assert_eq!(released(&mut r, later + 10 * MS), [10 * MS]);
    }
}
