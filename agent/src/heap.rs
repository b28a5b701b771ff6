//! Gives the heap memory a burst freed back to the kernel.
//!
//! glibc keeps freed memory in its arenas (one per thread that allocates) for reuse, so after a
//! flood of events the agent's resident memory would stay near its peak for as long as it runs.
//! [`trim`] every few seconds returns the free pages (`malloc_trim(0)`: the top of each heap
//! is released and free pages inside them are `MADV_DONTNEED`ed); what is in use is untouched.

use std::time::Duration;

/// How often the pipeline trims the heap.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Returns free heap pages to the kernel (glibc only; a no-op elsewhere).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases memory no allocation owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trimming_keeps_what_is_in_use() {
        let kept: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 4096]).collect();
        let freed: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 4096]).collect();
        drop(freed);
        super::trim();
        assert!(kept.iter().enumerate().all(|(i, v)| v.len() == 4096 && v.iter().all(|&b| b == i as u8)));
    }
}
