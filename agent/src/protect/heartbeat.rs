//! The signed heartbeat: every `heartbeat_interval` an event lists the agent's programs with
//! their run counts and live links, HMAC-SHA256-signed so a SIEM can tell a real agent's
//! heartbeat from a forged one and notice a node that went quiet.
//!
//! Verification: `HMAC-SHA256(key, osprey.heartbeat.payload)` (the payload string's UTF-8
//! bytes, exactly as written) equals `osprey.heartbeat.signature` (lower-case hex).

use hmac::{KeyInit, Mac};
use serde::Serialize;
use tracing::warn;

use super::{kernel::StatsGuard, watchdog::ProgramRun};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What is signed.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub seq: u64,
    /// Wall-clock time of the heartbeat, ns since the Unix epoch.
    pub time_ns: u64,
    pub agent_pid: u32,
    pub boot_id: String,
    pub programs: Vec<ProgramRun>,
    /// Programs the canary should have run that did not run: the sensor is blinded there.
    pub blinded: Vec<String>,
    /// Run counts are real (kernel BPF statistics enabled by the agent).
    pub run_counts: bool,
}

/// `osprey.heartbeat` of a heartbeat event.
#[derive(Debug, Clone, Serialize)]
pub struct Heartbeat {
    pub seq: u64,
    pub programs_attached: usize,
    pub blinded: Vec<String>,
    /// The signed JSON document (see the module documentation).
    pub payload: String,
    /// `hmac-sha256`, or `none` when no key is configured.
    pub algorithm: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

pub struct Heartbeats {
    key: Option<Vec<u8>>,
    seq: u64,
    stats: Option<StatsGuard>,
}

pub fn sign(key: &[u8], payload: &str) -> String {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

impl Heartbeats {
    pub fn new(key: Option<Vec<u8>>) -> Self {
        let stats = match StatsGuard::enable() {
            Ok(g) => Some(g),
            Err(e) => {
                warn!(error = %e, "BPF run statistics unavailable: heartbeats carry no run counts, the canary cannot check programs");
                None
            }
        };
        if key.is_none() {
            warn!("no self_protection.heartbeat_key(_file): heartbeats are unsigned");
        }
        Self { key, seq: 0, stats }
    }

    pub fn run_counts(&self) -> bool {
        self.stats.is_some()
    }

    pub fn beat(&mut self, time_ns: u64, programs: Vec<ProgramRun>, blinded: Vec<String>) -> Heartbeat {
        self.seq += 1;
        let payload = Payload {
            seq: self.seq,
            time_ns,
            agent_pid: std::process::id(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string(),
            programs,
            blinded: blinded.clone(),
            run_counts: self.stats.is_some(),
        };
        let attached = payload.programs.iter().filter(|p| p.links > 0).count();
        let text = serde_json::to_string(&payload).expect("a heartbeat serialises");
        Heartbeat {
            seq: self.seq,
            programs_attached: attached,
            blinded,
            algorithm: if self.key.is_some() { "hmac-sha256" } else { "none" },
            signature: self.key.as_deref().map(|k| sign(k, &text)),
            payload: text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe".
        assert_eq!(
            sign(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_heartbeat_verifies_with_its_key_only() {
        let mut h = Heartbeats { key: Some(b"k1".to_vec()), seq: 0, stats: None };
        let runs = vec![ProgramRun { name: "proc_exec".into(), id: 7, run_count: 3, links: 1 }];
        let b = h.beat(1, runs, Vec::new());
        assert_eq!(b.seq, 1);
        assert_eq!(b.programs_attached, 1);
        assert_eq!(b.signature.as_deref(), Some(sign(b"k1", &b.payload).as_str()));
        assert_ne!(b.signature.as_deref(), Some(sign(b"k2", &b.payload).as_str()));
        let v: serde_json::Value = serde_json::from_str(&b.payload).unwrap();
        assert_eq!(v["programs"][0]["run_count"], 3);
    }
}
