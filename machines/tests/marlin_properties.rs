//! Property: whatever resends, dropped and doubled `ok`s the printer throws at the host,
//! every job line is executed exactly once and in order.
//!
//! The sans-I/O host protocol is driven directly against the sans-I/O virtual printer with a
//! virtual clock and a byte "wire" delivered in arbitrary chunks: no I/O, so thousands of
//! interleavings run in seconds.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use fabrique_machines::protocol::marlin::{Event, Marlin, MarlinConfig, Origin};
use fabrique_machines::sim::marlin::{Faults, SimConfig, VirtualMarlin};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    lines: usize,
    corrupt: BTreeSet<u64>,
    drop_oks: BTreeSet<u64>,
    double_oks: BTreeSet<u64>,
    advanced_ok: bool,
    ok_after_resend: bool,
    chunks: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        20usize..120,
        prop::collection::btree_set(1u64..200, 0..12),
        prop::collection::btree_set(1u64..200, 0..6),
        prop::collection::btree_set(1u64..200, 0..12),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(1usize..64, 1..16),
    )
        .prop_map(
            |(lines, corrupt, drop_oks, double_oks, advanced_ok, ok_after_resend, chunks)| Case {
                lines,
                corrupt,
                drop_oks,
                double_oks,
                advanced_ok,
                ok_after_resend,
                chunks,
            },
        )
}

fn run(case: &Case) -> Result<(), String> {
    drive(case).0
}

/// Runs a case; returns how it ended and the job lines the printer executed.
fn drive(case: &Case) -> (Result<(), String>, Vec<String>) {
    let t0 = Instant::now();
    let mut t = t0;
    let job: Vec<String> = (0..case.lines)
        .map(|i| format!("G1 X{i} Y{} F3000", i % 7))
        .collect();
    let mut sim = VirtualMarlin::new(
        SimConfig {
            time_scale: 0.0,
            advanced_ok: case.advanced_ok,
            ok_after_resend: case.ok_after_resend,
            faults: Faults {
                corrupt_received: case.corrupt.clone(),
                drop_oks: case.drop_oks.clone(),
                double_oks: case.double_oks.clone(),
                ..Faults::default()
            },
            ..SimConfig::default()
        },
        t,
    );
    let mut host = Marlin::new(
        MarlinConfig {
            max_consecutive_resends: 1000,
            ..MarlinConfig::default()
        },
        t,
    );
    let mut to_printer: VecDeque<u8> = VecDeque::new();
    let mut to_host: VecDeque<u8> = VecDeque::new();
    let mut next_line = 0usize;
    let mut acked = 0usize;
    let mut chunk = case.chunks.iter().cycle();
    // DEBUG_WIRE=1 prints the conversation of a failing case.
    let debug = std::env::var_os("DEBUG_WIRE").is_some();
    for _ in 0..200_000 {
        // Keep a few job lines queued once connected, as the driver does.
        while host.is_ready() && next_line < job.len() && host.queued() < 4 {
            host.enqueue(
                &job[next_line],
                Origin::Job {
                    line: next_line as u64 + 1,
                    end_offset: 0,
                },
            );
            next_line += 1;
        }
        host.tick(t);
        while let Some(bytes) = host.poll_transmit(t) {
            if debug {
                eprint!(">> {}", String::from_utf8_lossy(&bytes));
            }
            to_printer.extend(bytes);
        }
        let k = (*chunk.next().unwrap()).min(to_printer.len());
        let bytes: Vec<u8> = to_printer.drain(..k).collect();
        sim.receive(&bytes, t);
        sim.step(t);
        let o = sim.take_output();
        if debug && !o.is_empty() {
            eprint!("<< {}", String::from_utf8_lossy(&o));
        }
        to_host.extend(o);
        let k = (*chunk.next().unwrap()).min(to_host.len());
        let bytes: Vec<u8> = to_host.drain(..k).collect();
        host.receive(&bytes, t);
        while let Some(e) = host.poll_event() {
            match e {
                Event::Acked(Origin::Job { .. }) => acked += 1,
                Event::Fatal(r) => return (Err(format!("job failed: {r}")), g1(&sim)),
                _ => {}
            }
        }
        if next_line == job.len() && host.is_idle() && to_printer.is_empty() && to_host.is_empty() {
            let executed = g1(&sim);
            if executed != job {
                return (
                    Err(format!("executed {executed:?}\nwanted {job:?}")),
                    executed,
                );
            }
            if acked != job.len() {
                return (
                    Err(format!("{acked} acknowledgements for {} lines", job.len())),
                    executed,
                );
            }
            return (Ok(()), executed);
        }
        if to_printer.is_empty() && to_host.is_empty() && bytes.is_empty() {
            // Nothing on the wire: let time pass to the next deadline.
            let next = [host.next_deadline(), sim.next_wakeup(t)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(t + Duration::from_millis(10));
            t = next.max(t + Duration::from_millis(1));
        }
    }
    (
        Err(format!(
            "did not finish; {acked} of {} acknowledged, executed {:?}",
            job.len(),
            sim.executed().len()
        )),
        g1(&sim),
    )
}

/// The job lines (the `G1` moves) the printer executed, in order.
fn g1(sim: &VirtualMarlin) -> Vec<String> {
    sim.executed()
        .iter()
        .filter(|c| c.starts_with("G1"))
        .cloned()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    #[test]
    fn every_line_is_executed_exactly_once_and_in_order(case in case()) {
        prop_assert_eq!(run(&case), Ok(()));
    }
}

/// A case the property test found (2026-12-04): bytes crossing one at a time, the
/// printer's two early `ok`s doubled (so the host took lines for acknowledged that were
/// not), then a corrupted line near the end. Every line sent after the refused one leaves a
/// tail that raises one more `Resend:` for it; the host rewound for each, sent the line
/// twice, and ended asked for a line past the last one, failing a job whose every line had
/// run. It now swallows as many repeats as lines went after the refused one.
#[test]
fn the_tails_of_a_flushed_buffer_do_not_make_the_host_send_a_line_twice() {
    let case = Case {
        lines: 58,
        corrupt: BTreeSet::from([60]),
        drop_oks: BTreeSet::new(),
        double_oks: BTreeSet::from([2, 3]),
        advanced_ok: false,
        ok_after_resend: false,
        chunks: vec![1],
    };
    let (result, executed) = drive(&case);
    let job: Vec<String> = (0..case.lines)
        .map(|i| format!("G1 X{i} Y{} F3000", i % 7))
        .collect();
    assert_eq!(result, Ok(()));
    assert_eq!(executed, job, "every line once, in order");
}

#[test]
fn a_clean_link_runs_without_any_resend() {
    let case = Case {
        lines: 50,
        corrupt: BTreeSet::new(),
        drop_oks: BTreeSet::new(),
        double_oks: BTreeSet::new(),
        advanced_ok: true,
        ok_after_resend: true,
        chunks: vec![64],
    };
    assert_eq!(run(&case), Ok(()));
}

proptest! {
    /// Whatever bytes a machine sends, in whatever pieces, the host protocol does not panic.
    #[test]
    fn nonsense_from_the_printer_never_panics(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..40),
                                              words in prop::collection::vec(prop::sample::select(vec![
                                                  "ok", "ok T:", "ok N5 P B", "Resend: ", "rs N", "Resend: 4294967295", "Error:", "!!",
                                                  "T:abc /", "busy:", "start", "//action:", "Cap:", "FIRMWARE_NAME:", "\n", "\r\n", " ",
                                              ]), 0..60)) {
        let t0 = Instant::now();
        let mut host = Marlin::new(MarlinConfig::default(), t0);
        for i in 0..5 {
            host.enqueue(&format!("G1 X{i}"), Origin::Host);
        }
        let mut t = t0;
        for (i, c) in chunks.iter().enumerate() {
            host.receive(c, t);
            if let Some(w) = words.get(i) {
                host.receive(w.as_bytes(), t);
            }
            t += Duration::from_millis(700);
            host.tick(t);
            while host.poll_transmit(t).is_some() {}
            while host.poll_event().is_some() {}
        }
        for w in &words {
            host.receive(w.as_bytes(), t);
            host.receive(b"\n", t);
            while host.poll_transmit(t).is_some() {}
        }
    }
}
