//! Overload (issue 9): a deliberately small ring buffer, flooded while the agent reads it. Every
//! record is delivered or counted lost, the loss shows in the stream and in the metrics, and the
//! agent is back to delivering within seconds once the flood stops.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use agent::{decode::Record, event::EventBody};
use agent_common::RecordType;
use osprey_tests::{marker, metric_sum, test_config, Harness};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_osprey-workload");

/// Runs `workers` flood processes at once, each forking `children` children that exit at once,
/// at a higher priority than the agent so the readers fall behind. Returns the workers' pids.
fn flood(workers: usize, children: u64) -> Vec<u32> {
    let mut procs: Vec<_> = (0..workers)
        .map(|_| {
            Command::new("nice")
                .args(["-n", "-10", WORKLOAD, "churn", &children.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .expect("start the flood")
        })
        .collect();
    // `nice` execs the workload: the pid stays the same.
    let pids = procs.iter().map(|c| c.id()).collect();
    for p in &mut procs {
        assert!(p.wait().unwrap().success(), "flood worker failed");
    }
    pids
}

/// How soon after the flood the agent must deliver new events again.
const RECOVERY: Duration = Duration::from_secs(10);

fn lost(h: &Harness, kinds: &[RecordType]) -> u64 {
    let c = h.kernel_counters();
    kinds.iter().map(|&k| c.lost_total(k)).sum()
}

#[test]
fn a_small_ring_flooded_while_read_counts_every_loss_reports_it_and_recovers() {
    const CHILDREN: u64 = 4_000;
    let mut cfg = test_config();
    cfg.sensor.ringbuf_size = 64 << 10; // 64 KiB per CPU: a few hundred fork/exit records
    let mut h = Harness::start(cfg);

    // Flood until the kernel drops something: usually the first round does.
    let mut workers = Vec::new();
    let mut rounds = 0;
    while lost(&h, &[RecordType::Fork, RecordType::Exit]) == 0 && rounds < 4 {
        rounds += 1;
        workers.extend(flood(4 * rounds, CHILDREN));
    }
    let performed = workers.len() as u64 * CHILDREN;
    let flood_over = Instant::now();
    assert!(lost(&h, &[RecordType::Fork, RecordType::Exit]) > 0, "{rounds} rounds of flooding a 64 KiB ring lost nothing");

    // The loss is reported in the stream (loss poll: every second) and so in the metrics.
    assert!(
        h.wait_for(Duration::from_secs(5), |evs| evs.iter().any(|e| matches!(e.body, EventBody::Loss(_)))),
        "no events_lost event within 5 s of the flood"
    );
    let metrics = h.metrics.render();
    assert!(metric_sum(&metrics, "osprey_events_lost_total") > 0.0, "osprey_events_lost_total did not move:\n{metrics}");

    // Recovery: fresh, marked execs, one every 200 ms, until one is delivered. A probe may be
    // lost while the agent is still working through what it queued during the flood (that loss
    // is counted like any other); what matters is how soon after the flood delivery resumes.
    let tag = marker();
    let mut probes = Vec::new();
    let mut recovered = None;
    while flood_over.elapsed() < RECOVERY {
        let mut child = Command::new("/bin/echo").arg(format!("{tag}-{}", probes.len())).stdout(Stdio::null()).spawn().unwrap();
        probes.push(child.id());
        assert!(child.wait().unwrap().success());
        let arrived = h.wait_for(Duration::from_millis(200), |evs| {
            evs.iter().any(|e| matches!(e.record(), Some(Record::Exec(x)) if probes.contains(&x.hdr.pid) && x.args.iter().any(|a| a.starts_with(&tag))))
        });
        if arrived {
            recovered = Some(flood_over.elapsed());
            break;
        }
    }
    let Some(recovery) = recovered else {
        panic!("no marked exec delivered within {RECOVERY:?} of the flood ({} probes)", probes.len())
    };

    let summary = h.stop();
    let forks = h
        .records()
        .filter(|r| matches!(r, Record::Fork(f) if !f.thread && workers.contains(&f.hdr.pid)))
        .count() as u64;
    let exits =
        h.records().filter(|r| matches!(r, Record::Exit(x) if !x.thread && workers.contains(&x.hdr.ppid))).count() as u64;
    let (lost_forks, lost_exits) = (summary.counters.lost_total(RecordType::Fork), summary.counters.lost_total(RecordType::Exit));
    eprintln!(
        "overload: {} workers, performed {performed} forks/exits; delivered {forks} forks + {exits} exits; \
         lost (whole machine) {lost_forks} forks + {lost_exits} exits; marked exec delivered {recovery:?} after the flood ({} probes)",
        workers.len(),
        probes.len()
    );
    assert!(forks <= performed && exits <= performed, "never more than performed");
    assert!(forks + lost_forks >= performed, "forks: delivered {forks} + lost {lost_forks} < performed {performed}");
    assert!(exits + lost_exits >= performed, "exits: delivered {exits} + lost {lost_exits} < performed {performed}");

    // Exact: the loss events in the stream add up to the kernel's counters, type by type.
    for kind in RecordType::ALL.iter().copied() {
        let reported: u64 = h
            .events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Loss(l) => Some(l.iter().filter(|(k, _)| *k == kind).map(|(_, n)| n).sum::<u64>()),
                _ => None,
            })
            .sum();
        assert_eq!(reported, summary.counters.lost_total(kind), "{kind:?}: loss events vs the kernel's counter");
    }
    let metrics = h.metrics.render();
    let lost_all: u64 = RecordType::ALL.iter().map(|&k| summary.counters.lost_total(k)).sum();
    assert_eq!(metric_sum(&metrics, "osprey_events_lost_total") as u64, lost_all, "metric vs the kernel's counters");
}
