//! Property: driven against the virtual GRBL's logic with no I/O, the character-counting
//! session acknowledges every line it sent exactly once and in order, never overfills the
//! receive buffer, and ends with the laser off, whatever fault strikes and however the
//! bytes are chunked.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests and benchmarks stand in for the person at the machine.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use fabrique_machines::protocol::grbl::{
    Config, Event, LineOutcome, Output, PersonAtMachine, Program, Realtime, Session, WorkArea,
};
use fabrique_machines::sim::grbl::{Faults, Record, SimConfig, VirtualGrbl};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Fault {
    None,
    Error(u64, u8),
    Alarm(u64),
    Disconnect(u64),
    Reset(u64),
    DropOk(u64),
    Cancel(u64),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::None),
        (3..150u64, 1..=38u8).prop_map(|(l, c)| Fault::Error(l, c)),
        (0..3000u64).prop_map(Fault::Alarm),
        (3..150u64).prop_map(Fault::Disconnect),
        (3..150u64).prop_map(Fault::Reset),
        (3..150u64).prop_map(Fault::DropOk),
        (0..3000u64).prop_map(Fault::Cancel),
    ]
}

fn program() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (0.0..390.0f64, 0.0..290.0f64, 0..1000u32, 0..6usize),
        1..120,
    )
    .prop_map(|moves| {
        let mut s = String::from("G21 G90\nG1 F6000 M4 S0\n");
        for (x, y, p, d) in moves {
            s.push_str(&format!("G1 X{x:.d$} Y{y:.d$} S{p}\n"));
        }
        s.push_str("M5\n");
        s
    })
}

struct Outcome {
    lines: Vec<(usize, LineOutcome)>,
    written_lines: Vec<String>,
    done: bool,
    failed: bool,
    /// The cut was refused before anything was sent (an alarm struck before it started).
    refused: bool,
    sim: VirtualGrbl,
}

/// Moves bytes between session and virtual GRBL in chunks of `chunk` bytes, 1 ms a step.
fn run(source: &str, fault: &Fault, chunk: usize) -> Outcome {
    let t0 = Instant::now();
    let mut faults = Faults::default();
    let mut cancel_at = None;
    match *fault {
        Fault::None => {}
        Fault::Error(l, c) => faults.error_on_line = Some((l, c)),
        Fault::Alarm(ms) => faults.alarm_at = Some((Duration::from_millis(ms), 1)),
        Fault::Disconnect(l) => faults.disconnect_on_line = Some(l),
        Fault::Reset(l) => faults.reset_on_line = Some(l),
        Fault::DropOk(l) => faults.drop_ok_on_line = Some(l),
        Fault::Cancel(ms) => cancel_at = Some(Duration::from_millis(ms)),
    }
    let mut sim = VirtualGrbl::new(SimConfig {
        time_scale: 0.05,
        faults,
        ..SimConfig::default()
    });
    let mut session = Session::new(Config::default());
    session.start(t0);
    let mut program = Some(Program::parse(source, 128).unwrap());
    let mut out = Outcome {
        lines: Vec::new(),
        written_lines: Vec::new(),
        done: false,
        failed: false,
        refused: false,
        sim: VirtualGrbl::new(SimConfig::default()),
    };
    let mut to_sim: Vec<u8> = Vec::new();
    let mut to_host: Vec<u8> = Vec::new();
    let mut started_at = None;
    for step in 0..60_000u64 {
        let now = t0 + Duration::from_millis(step);
        while let Some(o) = session.poll_output() {
            match o {
                Output::Write(b) => {
                    if started_at.is_some() && b.ends_with(b"\n") && !b.starts_with(b"$") {
                        out.written_lines
                            .push(String::from_utf8_lossy(&b[..b.len() - 1]).into_owned());
                    }
                    to_sim.extend(b);
                }
                Output::Event(Event::Line { index, outcome, .. }) => {
                    out.lines.push((index, outcome))
                }
                Output::Event(Event::JobDone(_)) => out.done = true,
                Output::Event(Event::JobFailed(_)) => out.failed = true,
                Output::Event(_) => {}
            }
        }
        if (out.done || out.failed) && !session.awaiting_reset() {
            break;
        }
        if session.is_closed() && (out.done || out.failed || started_at.is_none()) {
            break;
        }
        if started_at.is_none() && session.is_ready() && session.has_fresh_status() {
            let person = PersonAtMachine::confirmed_at_the_machine("test", now);
            let area = WorkArea {
                width: 400.0,
                height: 300.0,
            };
            if let Some(p) = program.take()
                && session.start_cut(p, area, person, now).is_err()
            {
                out.refused = true;
                break;
            }
            started_at = Some(now);
            continue;
        }
        if let (Some(c), Some(s)) = (cancel_at, started_at)
            && now >= s + c
        {
            session.cancel(now);
            cancel_at = None;
        }
        let n = to_sim.len().min(chunk);
        let bytes: Vec<u8> = to_sim.drain(..n).collect();
        if !sim.is_disconnected() {
            sim.receive(&bytes, now);
            sim.tick(now);
            to_host.extend(sim.take_output());
        }
        let n = to_host.len().min(chunk);
        let bytes: Vec<u8> = to_host.drain(..n).collect();
        session.receive(&bytes, now);
        if sim.is_disconnected() && to_host.is_empty() {
            session.link_lost(now);
        }
        session.tick(now);
    }
    out.sim = sim;
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn every_line_is_acknowledged_once_in_order_under_any_fault(
        source in program(),
        fault in fault(),
        chunk in prop_oneof![Just(1usize), Just(7), Just(64), Just(4096)],
    ) {
        let o = run(&source, &fault, chunk);
        let total = Program::parse(&source, 128).unwrap().lines().len();
        // The job ended, one way or the other.
        let ends = [o.done, o.failed, o.refused];
        prop_assert_eq!(ends.iter().filter(|e| **e).count(), 1, "done/failed/refused {:?}", ends);
        if o.refused {
            // Only an alarm before the start may refuse the cut.
            prop_assert!(matches!(fault, Fault::Alarm(_)));
            prop_assert!(o.written_lines.is_empty());
        }
        // Exactly one outcome per sent line, in sending order.
        for (i, (index, _)) in o.lines.iter().enumerate() {
            prop_assert_eq!(*index, i);
        }
        prop_assert_eq!(o.lines.len(), o.written_lines.len());
        if o.done {
            prop_assert_eq!(o.lines.len(), total);
            prop_assert!(o.lines.iter().all(|(_, r)| *r == LineOutcome::Ok));
        }
        // Character counting never overfilled the receive buffer.
        prop_assert!(!o.sim.records().iter().any(|r| matches!(r, Record::Overflow(_))));
        // The machine took the lines the host wrote, in order, as a prefix. A spontaneous
        // restart clears GRBL's receive buffer: what was still on the wire then arrives as
        // fragments (at most the bytes in flight, 128), before the host's hold and reset.
        let recs = o.sim.records();
        let restart = (1..recs.len()).find(|&i| {
            recs[i] == Record::Reset && recs[i - 1] != Record::Realtime(Realtime::SoftReset)
        });
        let lines_in = |r: &[Record]| -> Vec<String> {
            r.iter()
                .filter_map(|r| match r {
                    Record::Line(l) if !l.starts_with('$') => Some(l.clone()),
                    _ => None,
                })
                .collect()
        };
        let before = lines_in(&recs[..restart.unwrap_or(recs.len())]);
        prop_assert!(before.len() <= o.written_lines.len());
        prop_assert_eq!(&before[..], &o.written_lines[..before.len()]);
        if let Some(i) = restart {
            prop_assert!(matches!(fault, Fault::Reset(_)));
            let hold = recs[i..]
                .iter()
                .position(|r| *r == Record::Realtime(Realtime::FeedHold))
                .map_or(recs.len(), |h| i + h);
            let after = lines_in(&recs[i..hold]);
            let bytes: usize = after.iter().map(|l| l.len() + 1).sum();
            prop_assert!(bytes <= 128, "{} bytes after the restart", bytes);
            for l in &after {
                prop_assert!(o.written_lines.iter().any(|w| w.ends_with(l.as_str())), "{} is no fragment", l);
            }
        }
        // Safe at the end: laser off; a failure was a hold then a reset unless the link died.
        prop_assert!(!o.sim.laser_on());
        if o.failed && !o.sim.is_disconnected() {
            let recs = o.sim.records();
            let hold = recs.iter().rposition(|r| *r == Record::Realtime(Realtime::FeedHold));
            let reset = recs.iter().rposition(|r| *r == Record::Realtime(Realtime::SoftReset));
            prop_assert!(hold.is_some() && reset.is_some() && hold < reset);
        }
    }
}

proptest! {
    #[test]
    fn any_bytes_from_the_machine_are_parsed_without_panicking(
        lines in prop::collection::vec(
            prop_oneof![
                any::<String>(),
                "<[A-Za-z:0-9]{0,8}(\\|[A-Za-z]{1,4}:[-0-9.,]{0,20}){0,6}>",
                "(ok|error:[0-9]{0,4}|ALARM:[0-9a-z ]{0,6}|\\$[0-9]{1,4}=[-0-9.e]{0,8}|Grbl [0-9.a-z]{0,6} .*)",
            ],
            0..20,
        ),
        raw in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let t = Instant::now();
        let mut s = Session::new(Config::default());
        s.start(t);
        for l in &lines {
            let _ = fabrique_machines::protocol::grbl::parse_response(l);
            s.receive(l.as_bytes(), t);
            s.receive(b"\n", t);
        }
        s.receive(&raw, t);
        s.tick(t + Duration::from_secs(1));
        while s.poll_output().is_some() {}
    }
}
