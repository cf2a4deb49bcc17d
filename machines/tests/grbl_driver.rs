//! The GRBL driver against the virtual GRBL: faults end safe, laser refusals, dry run, and the
//! visor-shield file streamed end to end over a pseudo-terminal.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests and benchmarks stand in for the person at the machine.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use fabrique_machines::driver::grbl::{
    Config, Control, Event, FailReason, GrblDriver, GrblError, JobKind, Lang, LineError,
    LineOutcome, MachineState, PersonAtMachine, Program, Realtime, Refusal, WorkArea,
};
use fabrique_machines::sim::grbl::{
    Faults, LinkConfig, PtyLink, Record, SimConfig, VirtualGrbl, serve,
};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SHIELD: &str = include_str!("data/laser_shield.gcode");
const AREA: WorkArea = WorkArea {
    width: 400.0,
    height: 300.0,
};

fn person() -> PersonAtMachine {
    PersonAtMachine::confirmed_at_the_machine("Awa", tokio::time::Instant::now().into_std())
}

fn shield() -> Program {
    Program::parse(SHIELD, 128).unwrap()
}

struct Rig {
    driver: GrblDriver<DuplexStream>,
    stop: CancellationToken,
    sim: JoinHandle<VirtualGrbl>,
}

impl Rig {
    async fn new(cfg: SimConfig) -> Rig {
        let (host, machine) = tokio::io::duplex(1 << 16);
        let stop = CancellationToken::new();
        let link = LinkConfig {
            baud: Some(115_200),
            reply_latency: Duration::from_millis(2),
        };
        let sim = tokio::spawn(serve(machine, VirtualGrbl::new(cfg), link, stop.clone()));
        let driver = GrblDriver::connect(host, Config::default(), &mut |_| {})
            .await
            .unwrap();
        Rig { driver, stop, sim }
    }

    async fn finish(self) -> VirtualGrbl {
        self.stop.cancel();
        drop(self.driver);
        self.sim.await.unwrap()
    }
}

/// A job line count the virtual GRBL took (its line 1 is the driver's `$$`).
fn job_lines_taken(sim: &VirtualGrbl) -> Vec<String> {
    sim.records()
        .iter()
        .filter_map(|r| match r {
            Record::Line(l) if !l.starts_with('$') => Some(l.clone()),
            _ => None,
        })
        .collect()
}

/// The machine ends safe: a feed hold came before the last soft reset, and the laser is off,
/// its last recorded change being "off".
fn assert_held_then_reset(sim: &VirtualGrbl) {
    let recs = sim.records();
    let hold = recs
        .iter()
        .rposition(|r| *r == Record::Realtime(Realtime::FeedHold))
        .expect("a feed hold");
    let reset = recs
        .iter()
        .rposition(|r| *r == Record::Realtime(Realtime::SoftReset))
        .expect("a soft reset");
    assert!(hold < reset, "hold before reset");
    assert!(recs[reset..].contains(&Record::Reset));
    assert_laser_off(sim);
}

fn assert_laser_off(sim: &VirtualGrbl) {
    assert!(!sim.laser_on());
    let last = sim
        .records()
        .iter()
        .rev()
        .find(|r| matches!(r, Record::Laser { .. }));
    assert!(
        matches!(last, Some(Record::Laser { on: false, .. })),
        "last laser change is off: {last:?}"
    );
    assert!(
        sim.records()
            .iter()
            .any(|r| matches!(r, Record::Laser { on: true, .. })),
        "the job did fire before it stopped"
    );
}

async fn cut_with_faults(faults: Faults, time_scale: f64) -> (Result<(), GrblError>, VirtualGrbl) {
    let mut rig = Rig::new(SimConfig {
        faults,
        time_scale,
        ..SimConfig::default()
    })
    .await;
    let r = rig
        .driver
        .cut(shield(), AREA, person(), None, &mut |_| {})
        .await
        .map(|_| ());
    (r, rig.finish().await)
}

#[tokio::test(start_paused = true)]
async fn an_error_on_a_line_holds_resets_and_names_the_file_line() {
    let (r, sim) = cut_with_faults(
        Faults {
            error_on_line: Some((40, 24)),
            ..Faults::default()
        },
        1.0,
    )
    .await;
    // The 40th line the machine took, counted among job lines (the driver's `$$` read, and
    // a second one after the start-up reset, come first).
    let taken: Vec<&Record> = sim
        .records()
        .iter()
        .filter(|r| matches!(r, Record::Line(_)))
        .take(40)
        .collect();
    let job_index = taken
        .iter()
        .filter(|r| !matches!(r, Record::Line(l) if l.starts_with('$')))
        .count()
        - 1;
    let expected = shield().lines()[job_index].number;
    match r {
        Err(GrblError::JobFailed(FailReason::Error(LineError { line, code: 24 }))) => {
            assert_eq!(line, expected)
        }
        other => panic!("{other:?}"),
    }
    assert_held_then_reset(&sim);
}

#[tokio::test(start_paused = true)]
async fn an_alarm_mid_job_resets_with_the_alarm_as_reason() {
    let (r, sim) = cut_with_faults(
        Faults {
            alarm_at: Some((Duration::from_secs(3), 1)),
            ..Faults::default()
        },
        1.0,
    )
    .await;
    assert!(
        matches!(r, Err(GrblError::JobFailed(FailReason::Alarm(1)))),
        "{r:?}"
    );
    assert_held_then_reset(&sim);
    assert!(
        sim.is_alarmed(),
        "a hard limit stays locked after the reset"
    );
}

#[tokio::test(start_paused = true)]
async fn after_an_alarm_the_machine_refuses_jobs_until_unlocked() {
    let mut rig = Rig::new(SimConfig {
        faults: Faults {
            alarm_at: Some((Duration::from_secs(2), 2)),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let r = rig
        .driver
        .cut(shield(), AREA, person(), None, &mut |_| {})
        .await;
    assert!(
        matches!(r, Err(GrblError::JobFailed(FailReason::Alarm(2)))),
        "{r:?}"
    );
    rig.driver.wait_ready(&mut |_| {}).await.unwrap();
    let r = rig
        .driver
        .cut(shield(), AREA, person(), None, &mut |_| {})
        .await;
    assert!(
        matches!(r, Err(GrblError::Refused(Refusal::NotIdle(_)))),
        "{r:?}"
    );
    assert_eq!(
        rig.driver.command("$X", &mut |_| {}).await.unwrap(),
        LineOutcome::Ok
    );
    rig.driver.wait_ready(&mut |_| {}).await.unwrap();
    let report = rig
        .driver
        .cut(shield(), AREA, person(), None, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.summary.lines, shield().lines().len());
    let sim = rig.finish().await;
    assert!(!sim.laser_on());
}

#[tokio::test(start_paused = true)]
async fn probing_recognises_grbl_by_its_banner() {
    let (mut host, machine) = tokio::io::duplex(4096);
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(
        machine,
        VirtualGrbl::new(SimConfig::default()),
        LinkConfig::default(),
        stop.clone(),
    ));
    let v = fabrique_machines::driver::grbl::probe(&mut host, Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v.major, v.minor, v.letter), (1, 1, Some('h')));
    stop.cancel();
    task.await.unwrap();
    // Something that never answers is not GRBL.
    let (mut host, _silent) = tokio::io::duplex(4096);
    let v = fabrique_machines::driver::grbl::probe(&mut host, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(v, None);
}

#[tokio::test(start_paused = true)]
async fn a_lost_link_fails_the_job_and_leaves_the_laser_off() {
    let (r, sim) = cut_with_faults(
        Faults {
            disconnect_on_line: Some(60),
            ..Faults::default()
        },
        1.0,
    )
    .await;
    assert!(
        matches!(r, Err(GrblError::JobFailed(FailReason::Disconnected))),
        "{r:?}"
    );
    assert!(sim.records().contains(&Record::Disconnected));
    assert_laser_off(&sim);
}

#[tokio::test(start_paused = true)]
async fn an_unexpected_reset_mid_job_fails_it_and_never_continues_blind() {
    let (r, sim) = cut_with_faults(
        Faults {
            reset_on_line: Some(80),
            ..Faults::default()
        },
        1.0,
    )
    .await;
    assert!(
        matches!(r, Err(GrblError::JobFailed(FailReason::UnexpectedReset))),
        "{r:?}"
    );
    assert_held_then_reset(&sim);
    // After the spontaneous reset, only lines already on their way (at most a receive
    // buffer's worth) reached the machine before the host's hold.
    let recs = sim.records();
    // The spontaneous reset is the one no soft-reset byte asked for.
    let restart = (1..recs.len())
        .find(|&i| recs[i] == Record::Reset && recs[i - 1] != Record::Realtime(Realtime::SoftReset))
        .unwrap();
    let hold = restart
        + recs[restart..]
            .iter()
            .position(|r| *r == Record::Realtime(Realtime::FeedHold))
            .unwrap();
    let late: usize = recs[restart..hold]
        .iter()
        .map(|r| match r {
            Record::Line(l) => l.len() + 1,
            _ => 0,
        })
        .sum();
    assert!(late <= 128, "{late} bytes after the reset");
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_is_detected_when_the_machine_stands_idle() {
    let (r, sim) = cut_with_faults(
        Faults {
            drop_ok_on_line: Some(100),
            ..Faults::default()
        },
        0.01,
    )
    .await;
    assert!(
        matches!(r, Err(GrblError::JobFailed(FailReason::ReplyLost { .. }))),
        "{r:?}"
    );
    assert_held_then_reset(&sim);
}

#[tokio::test(start_paused = true)]
async fn a_machine_stuck_in_run_without_progress_is_held_reset_and_the_job_failed() {
    let (r, sim) = cut_with_faults(
        Faults {
            stall_on_line: Some(100),
            ..Faults::default()
        },
        0.01,
    )
    .await;
    assert!(
        matches!(
            r,
            Err(GrblError::JobFailed(FailReason::Stalled {
                state: Some(MachineState::Run),
                ..
            }))
        ),
        "{r:?}"
    );
    assert_held_then_reset(&sim);
}

#[tokio::test(start_paused = true)]
async fn a_hold_nobody_asked_for_is_a_stall_but_a_persons_pause_is_not() {
    let (r, sim) = cut_with_faults(
        Faults {
            hold_on_line: Some(100),
            ..Faults::default()
        },
        0.01,
    )
    .await;
    assert!(
        matches!(
            r,
            Err(GrblError::JobFailed(FailReason::Stalled {
                state: Some(MachineState::Hold(_)),
                ..
            }))
        ),
        "{r:?}"
    );
    assert_held_then_reset(&sim);
    let message = GrblError::JobFailed(FailReason::Stalled {
        state: Some(MachineState::Hold(0)),
        line: 12,
    })
    .message(Lang::Fr);
    assert!(message.contains("ligne 12"), "{message}");

    // A pause asked by a person lasts as long as it must.
    let mut rig = Rig::new(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await;
    let (tx, mut rx) = mpsc::channel(4);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(Control::Pause).await.unwrap();
        tokio::time::sleep(Duration::from_secs(120)).await;
        tx.send(Control::Resume).await.unwrap();
        std::future::pending::<()>().await;
    });
    let r = rig
        .driver
        .cut(shield(), AREA, person(), Some(&mut rx), &mut |_| {})
        .await;
    assert!(r.is_ok(), "{r:?}");
    rig.finish().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_holds_then_resets_without_losing_position() {
    let mut rig = Rig::new(SimConfig::default()).await;
    let (tx, mut rx) = mpsc::channel(4);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send(Control::Cancel).await.unwrap();
    });
    let r = rig
        .driver
        .cut(shield(), AREA, person(), Some(&mut rx), &mut |_| {})
        .await;
    assert!(
        matches!(r, Err(GrblError::JobFailed(FailReason::Cancelled))),
        "{r:?}"
    );
    let sim = rig.finish().await;
    assert_held_then_reset(&sim);
    assert!(
        !sim.records().contains(&Record::Alarm(3)),
        "reset after the hold settled"
    );
    assert!(!sim.is_alarmed());
}

#[tokio::test(start_paused = true)]
async fn pause_turns_the_laser_off_and_resume_finishes_the_job() {
    let mut rig = Rig::new(SimConfig::default()).await;
    let (tx, mut rx) = mpsc::channel(4);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        tx.send(Control::Pause).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        tx.send(Control::Override(Realtime::PowerMinus10))
            .await
            .unwrap();
        tx.send(Control::Resume).await.unwrap();
    });
    let report = rig
        .driver
        .cut(shield(), AREA, person(), Some(&mut rx), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.summary.lines, shield().lines().len());
    assert!(report.elapsed > Duration::from_secs(30));
    let sim = rig.finish().await;
    let recs = sim.records();
    let hold = recs
        .iter()
        .position(|r| *r == Record::Realtime(Realtime::FeedHold))
        .unwrap();
    assert_eq!(
        recs[hold + 1],
        Record::Laser {
            on: false,
            power: 0.0
        }
    );
    let resume = recs
        .iter()
        .position(|r| *r == Record::Realtime(Realtime::CycleStart))
        .unwrap();
    assert!(
        !recs[hold..resume]
            .iter()
            .any(|r| matches!(r, Record::Laser { on: true, .. }))
    );
    // After the -10 % power override, the laser fires at 720 rather than 800.
    assert!(recs[resume..].contains(&Record::Laser {
        on: true,
        power: 720.0
    }));
    assert!(!sim.laser_on());
}

async fn refused(cfg: SimConfig, area: WorkArea, source: &str) -> (Refusal, VirtualGrbl) {
    let mut rig = Rig::new(cfg).await;
    let program = Program::parse(source, 128).unwrap();
    let r = rig
        .driver
        .cut(program, area, person(), None, &mut |_| {})
        .await;
    let Err(GrblError::Refused(refusal)) = r else {
        panic!("expected a refusal, got {r:?}");
    };
    let sim = rig.finish().await;
    assert!(job_lines_taken(&sim).is_empty(), "nothing was sent");
    assert!(
        !sim.records()
            .iter()
            .any(|r| matches!(r, Record::Laser { on: true, .. }))
    );
    (refusal, sim)
}

#[tokio::test(start_paused = true)]
async fn a_laser_job_is_refused_without_laser_mode() {
    let cfg = SimConfig {
        settings: vec![(32, 0.0)],
        ..SimConfig::default()
    };
    let (r, _) = refused(cfg, AREA, SHIELD).await;
    assert_eq!(r, Refusal::LaserModeOff);
    assert!(
        r.message(fabrique_machines::protocol::grbl::Lang::Fr)
            .contains("$32=1")
    );
}

#[tokio::test(start_paused = true)]
async fn a_laser_job_is_refused_when_s_exceeds_max_power() {
    let cfg = SimConfig {
        settings: vec![(30, 500.0)],
        ..SimConfig::default()
    };
    let (r, _) = refused(cfg, AREA, SHIELD).await;
    let first_s800 = SHIELD.lines().position(|l| l.contains("S800")).unwrap() + 1;
    assert_eq!(
        r,
        Refusal::PowerTooHigh {
            line: first_s800,
            power: 800.0,
            max: 500.0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_laser_job_is_refused_outside_the_work_area_or_travel() {
    // The profile's area is smaller than the drawing (290 mm wide).
    let small = WorkArea {
        width: 200.0,
        height: 300.0,
    };
    let (r, _) = refused(SimConfig::default(), small, SHIELD).await;
    assert!(
        matches!(r, Refusal::OutOfBounds { axis: 'X', limit, .. } if limit == 200.0),
        "{r:?}"
    );
    // The machine's travel ($131) is smaller than the area.
    let cfg = SimConfig {
        settings: vec![(131, 150.0)],
        ..SimConfig::default()
    };
    let (r, _) = refused(cfg, AREA, SHIELD).await;
    assert!(
        matches!(r, Refusal::OutOfBounds { axis: 'Y', limit, .. } if limit == 150.0),
        "{r:?}"
    );
    // Negative coordinates.
    let (r, _) = refused(SimConfig::default(), AREA, "G21\nG0 X-5 Y10\n").await;
    assert!(
        matches!(
            r,
            Refusal::OutOfBounds {
                line: 2,
                axis: 'X',
                ..
            }
        ),
        "{r:?}"
    );
}

/// A machine homed to its positive end (`$23=0`, the default): machine space is negative, and
/// where the drawing lands depends on the work origin set on the material (`WCO`), not on
/// a lower-left corner.
#[tokio::test(start_paused = true)]
async fn the_bounds_are_checked_in_machine_space_from_the_work_origin() {
    let homed = |origin: [f64; 3]| SimConfig {
        start_locked: true,
        work_offset: Some(origin),
        ..SimConfig::default()
    };
    // Powered up locked: homing finds the corner, then G10 L20 sets the work origin 50 mm
    // from it. The 290 mm shield, drawn from there, leaves the machine on the right.
    let mut rig = Rig::new(homed([-400.0, -300.0, 0.0])).await;
    let r = rig
        .driver
        .cut(shield(), AREA, person(), None, &mut |_| {})
        .await;
    assert!(
        matches!(
            r,
            Err(GrblError::Refused(Refusal::NotIdle(Some(
                MachineState::Alarm
            ))))
        ),
        "{r:?}"
    );
    // Work coordinates still have the old origin: X350 Y50 is machine (-50, -250).
    for command in ["$H", "G0X350Y50", "G10L20P1X0Y0"] {
        let outcome = rig.driver.command(command, &mut |_| {}).await.unwrap();
        assert_eq!(outcome, LineOutcome::Ok, "{command}");
    }
    // The move takes a few seconds; the next reports carry the new offset.
    tokio::time::sleep(Duration::from_secs(10)).await;
    rig.driver.wait_ready(&mut |_| {}).await.unwrap();
    assert_eq!(
        rig.driver.session().work_offset(),
        Some([-50.0, -250.0, 0.0])
    );
    let r = rig
        .driver
        .cut(shield(), AREA, person(), None, &mut |_| {})
        .await;
    let Err(GrblError::Refused(Refusal::OutsideTravel { axis, min, max, .. })) = r else {
        panic!("expected a refusal in machine space, got {r:?}");
    };
    assert_eq!((axis, min, max), ('X', -400.0, 0.0));
    let sim = rig.finish().await;
    assert_eq!(
        job_lines_taken(&sim),
        ["G0X350Y50", "G10L20P1X0Y0"],
        "nothing of the job was sent"
    );
    // The same drawing from an origin at the lower-left corner of the bed is cut.
    let mut rig = Rig::new(SimConfig {
        start_locked: false,
        ..homed([-400.0, -300.0, 0.0])
    })
    .await;
    let report = rig
        .driver
        .cut(shield(), AREA, person(), None, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.summary.lines, shield().lines().len());
    let sim = rig.finish().await;
    assert!(!sim.laser_on());
}

#[tokio::test(start_paused = true)]
async fn a_stale_confirmation_is_refused() {
    let mut rig = Rig::new(SimConfig::default()).await;
    let long_ago =
        PersonAtMachine::confirmed_at_the_machine("Awa", tokio::time::Instant::now().into_std());
    tokio::time::sleep(Duration::from_secs(600)).await;
    let r = rig
        .driver
        .cut(shield(), AREA, long_ago, None, &mut |_| {})
        .await;
    assert!(
        matches!(r, Err(GrblError::Refused(Refusal::StaleConfirmation))),
        "{r:?}"
    );
    let sim = rig.finish().await;
    assert!(job_lines_taken(&sim).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_reports_errors_by_file_line_then_leaves_check_mode() {
    let mut rig = Rig::new(SimConfig::default()).await;
    let source = "G21\n; comment only\nG1 X10 F600 M4 S500\nG5 X1\nbanana\nG1 X20\n";
    let mut line_events = Vec::new();
    let summary = rig
        .driver
        .dry_run(Program::parse(source, 128).unwrap(), &mut |e| {
            if let Event::Line { outcome, .. } = e {
                line_events.push(*outcome);
            }
        })
        .await
        .unwrap();
    assert_eq!(summary.kind, JobKind::DryRun);
    assert_eq!(
        summary.errors,
        vec![
            LineError { line: 4, code: 20 },
            LineError { line: 5, code: 2 }
        ]
    );
    assert_eq!(
        line_events,
        vec![
            LineOutcome::Ok,
            LineOutcome::Ok,
            LineOutcome::Error(20),
            LineOutcome::Error(2),
            LineOutcome::Ok
        ]
    );
    assert!(
        summary.errors[0]
            .message(fabrique_machines::protocol::grbl::Lang::En)
            .starts_with("Line 4 (error 20)")
    );
    // Check mode left (GRBL reset itself), and the machine accepts a cut afterwards.
    rig.driver.wait_ready(&mut |_| {}).await.unwrap();
    let report = rig
        .driver
        .cut(
            Program::parse("G21\nG1 X5 F3000 M4 S100\nM5\n", 128).unwrap(),
            AREA,
            person(),
            None,
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.summary.lines, 3);
    let sim = rig.finish().await;
    let on: Vec<_> = sim
        .records()
        .iter()
        .filter(|r| matches!(r, Record::Laser { on: true, .. }))
        .collect();
    assert_eq!(
        on,
        vec![&Record::Laser {
            on: true,
            power: 100.0
        }],
        "only the real cut fired"
    );
}

#[tokio::test(start_paused = true)]
async fn eeprom_writes_go_alone_and_update_the_settings() {
    let mut rig = Rig::new(SimConfig::default()).await;
    let outcome = rig.driver.command("$30=900", &mut |_| {}).await.unwrap();
    assert_eq!(outcome, LineOutcome::Ok);
    let outcome = rig.driver.command("$$", &mut |_| {}).await.unwrap();
    assert_eq!(outcome, LineOutcome::Ok);
    assert_eq!(rig.driver.session().settings().max_power(), Some(900.0));
    let sim = rig.finish().await;
    assert_eq!(sim.setting(30), Some(900.0));
}

#[tokio::test(start_paused = true)]
async fn grbl_0_9_connects_but_a_laser_cut_is_refused() {
    let cfg = SimConfig {
        banner: "Grbl 0.9j ['$' for help]".into(),
        settings: vec![],
        ..SimConfig::default()
    };
    let mut rig = Rig::new(cfg).await;
    let v = rig.driver.session().version().unwrap();
    assert_eq!((v.major, v.minor), (0, 9));
    assert!(
        rig.driver.session().status().is_some(),
        "0.9 status reports are read"
    );
    assert_eq!(rig.driver.session().settings().max_travel(0), Some(400.0));
    let r = rig
        .driver
        .cut(shield(), AREA, person(), None, &mut |_| {})
        .await;
    assert!(
        matches!(r, Err(GrblError::Refused(Refusal::LaserModeOff))),
        "{r:?}"
    );
    // A dry run needs no laser mode.
    let summary = rig.driver.dry_run(shield(), &mut |_| {}).await.unwrap();
    assert!(summary.errors.is_empty());
    let sim = rig.finish().await;
    assert!(
        !sim.records()
            .iter()
            .any(|r| matches!(r, Record::Laser { on: true, .. }))
    );
}

#[tokio::test]
async fn the_visor_shield_streams_end_to_end_over_a_pty() {
    let mut pty = PtyLink::open().unwrap();
    let host = pty.host_stream().unwrap();
    let stop = CancellationToken::new();
    let cfg = SimConfig {
        time_scale: 0.002,
        ..SimConfig::default()
    };
    let link = LinkConfig {
        baud: Some(115_200),
        reply_latency: Duration::from_millis(1),
    };
    let sim_task = tokio::spawn(serve(
        pty.take_master().unwrap(),
        VirtualGrbl::new(cfg),
        link,
        stop.clone(),
    ));
    let mut events = 0usize;
    let mut driver = GrblDriver::connect(host, Config::default(), &mut |_| events += 1)
        .await
        .unwrap();
    assert_eq!(driver.session().settings().laser_mode(), Some(true));
    let report = driver
        .cut(shield(), AREA, person(), None, &mut |_| events += 1)
        .await
        .unwrap();
    assert_eq!(report.summary.lines, shield().lines().len());
    assert!(report.summary.errors.is_empty());
    stop.cancel();
    let sim = sim_task.await.unwrap();
    drop(pty);
    let sent: Vec<String> = shield().lines().iter().map(|l| l.text.clone()).collect();
    assert_eq!(
        job_lines_taken(&sim),
        sent,
        "every line arrived once, in order"
    );
    assert!(
        !sim.records()
            .iter()
            .any(|r| matches!(r, Record::Overflow(_)))
    );
    assert_laser_off(&sim);
    assert_eq!(sim.position()[0], 0.0, "the file ends at the origin");
    assert!(events > shield().lines().len());
}

async fn stream_file_on_sim(
    source: &str,
    sim_cfg: SimConfig,
) -> (Result<usize, GrblError>, VirtualGrbl) {
    use fabrique_machines::driver::grbl::{StreamOptions, stream_file};
    let (host, machine) = tokio::io::duplex(1 << 16);
    let stop = CancellationToken::new();
    let sim = tokio::spawn(serve(
        machine,
        VirtualGrbl::new(sim_cfg),
        LinkConfig::default(),
        stop.clone(),
    ));
    let options = StreamOptions {
        config: Config::default(),
        area: AREA,
        dry_run_first: true,
    };
    let r = stream_file(host, source, &options, person(), None, &mut |_| {})
        .await
        .map(|report| report.summary.lines);
    stop.cancel();
    (r, sim.await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn stream_file_checks_first_then_cuts() {
    let (r, sim) = stream_file_on_sim(SHIELD, SimConfig::default()).await;
    assert_eq!(r.unwrap(), shield().lines().len());
    let taken = job_lines_taken(&sim);
    assert_eq!(
        taken.len(),
        2 * shield().lines().len(),
        "once in check mode, once cutting"
    );
    assert!(!sim.laser_on());
}

#[tokio::test(start_paused = true)]
async fn stream_file_never_cuts_a_file_the_dry_run_refused() {
    let source = "G21\nG1 X10 F600 M4 S500\nG5 X1\nG1 X20\nM5\n";
    let (r, sim) = stream_file_on_sim(source, SimConfig::default()).await;
    assert!(
        matches!(
            r,
            Err(GrblError::JobFailed(FailReason::Error(LineError {
                line: 3,
                code: 20
            })))
        ),
        "{r:?}"
    );
    assert!(
        !sim.records()
            .iter()
            .any(|r| matches!(r, Record::Laser { on: true, .. }))
    );
}
