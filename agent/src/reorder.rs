//! Orders records from different CPUs by kernel timestamp. Each per-CPU buffer is in order on
//! its own, but a fork on CPU 0 and the child's exec on CPU 1 can arrive either way round; a
//! record is held until it is older than the window, then released in timestamp order.

use std::{cmp::Reverse, collections::BinaryHeap};

use crate::decode::Record;

struct Item {
    ts: u64,
    seq: u64,
    rec: Record,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(o.ts, o.seq))
    }
}

pub struct Reorder {
    heap: BinaryHeap<Reverse<Item>>,
    seq: u64,
    window_ns: u64,
    last_ts: u64,
    late: u64,
}

impl Reorder {
    pub fn new(window_ns: u64) -> Self {
        Self { heap: BinaryHeap::new(), seq: 0, window_ns, last_ts: 0, late: 0 }
    }

    pub fn push(&mut self, rec: Record) {
        let ts = rec.header().ktime_ns;
        self.seq += 1;
        self.heap.push(Reverse(Item { ts, seq: self.seq, rec }));
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

    /// Releases, oldest first, every record older than `now_ns - window`.
    pub fn pop_ready(&mut self, now_ns: u64) -> Option<Record> {
        let horizon = now_ns.saturating_sub(self.window_ns);
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
        Some(item.rec)
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
        assert!(r.pop_ready(100).is_none(), "nothing is older than the window yet");
        let out: Vec<u64> = std::iter::from_fn(|| r.pop_ready(140)).map(|r| r.header().ktime_ns).collect();
        assert_eq!(out, [10, 20, 30], "50 is still inside the window");
        assert_eq!(r.pop().unwrap().header().ktime_ns, 50);
        assert_eq!(r.late(), 0);
        r.push(rec(5));
        r.pop();
        assert_eq!(r.late(), 1, "a record older than one already released is late");
    }
}
