use super::session::DRAIN_GUARD;
use super::*;

#[test]
fn cleaning_drops_comments_spaces_and_case() {
    assert_eq!(clean_line("g1 x10 (move) y2 ; done"), "G1X10Y2");
    assert_eq!(clean_line("M4 S0;svg > path"), "M4S0");
    assert_eq!(clean_line("%"), "");
}

#[test]
fn words_parse_and_report_grbl_codes() {
    let w = parse_words("G1X-1.5Y.5F1200").unwrap();
    assert_eq!(w.len(), 4);
    assert_eq!(w[1].value, -1.5);
    assert_eq!(w[2].value, 0.5);
    assert_eq!(parse_words("G1X").unwrap_err().code(), 2);
    assert_eq!(parse_words("12").unwrap_err().code(), 1);
}

#[test]
fn eeprom_writes_are_recognised() {
    for l in [
        "$32=1",
        "$N0=G20",
        "$RST=*",
        "$I=ABC",
        "G10L2P1X0",
        "G10L20P1X0",
        "G28.1",
        "G30.1",
    ] {
        assert!(is_eeprom_write(l), "{l}");
    }
    for l in [
        "$$",
        "$H",
        "$X",
        "$C",
        "G1X10",
        "G28",
        "$J=G91X1F100",
        "G10P1",
    ] {
        assert!(!is_eeprom_write(l), "{l}");
    }
}

#[test]
fn banners_of_1_1_and_0_9_are_read() {
    let v = parse_banner("Grbl 1.1h ['$' for help]").unwrap();
    assert_eq!((v.major, v.minor, v.letter), (1, 1, Some('h')));
    assert!(v.is_supported());
    let v = parse_banner("Grbl 0.9j ['$' for help]").unwrap();
    assert_eq!((v.major, v.minor), (0, 9));
    assert!(v.is_supported());
    assert!(
        !parse_banner("Grbl 0.8c ['$' for help]")
            .unwrap()
            .is_supported()
    );
    assert!(parse_banner("Marlin 2.1").is_none());
}

#[test]
fn status_reports_of_1_1_are_read() {
    let s = parse_status(
        "<Run|MPos:10.000,20.500,0.000|FS:1200,800|Bf:12,96|Ov:100,100,90|WCO:1.000,2.000,0.000>",
    )
    .unwrap();
    assert_eq!(s.state, MachineState::Run);
    assert_eq!(s.mpos, Some([10.0, 20.5, 0.0]));
    assert_eq!(s.feed, Some(1200.0));
    assert_eq!(s.power, Some(800.0));
    assert_eq!(s.buffer, Some((12, 96)));
    assert_eq!(s.overrides, Some([100, 100, 90]));
    assert_eq!(s.wco, Some([1.0, 2.0, 0.0]));
    assert_eq!(
        parse_status("<Hold:1|MPos:0,0,0>").unwrap().state,
        MachineState::Hold(1)
    );
}

#[test]
fn status_reports_of_0_9_are_read() {
    let s = parse_status("<Idle,MPos:1.000,2.000,3.000,WPos:0.000,0.500,0.000>").unwrap();
    assert_eq!(s.state, MachineState::Idle);
    assert_eq!(s.mpos, Some([1.0, 2.0, 3.0]));
    assert_eq!(s.wpos, Some([0.0, 0.5, 0.0]));
}

#[test]
fn responses_of_both_versions_are_read() {
    assert_eq!(parse_response("ok"), Response::Ok);
    assert_eq!(parse_response("error:24"), Response::Error(24));
    assert_eq!(
        parse_response("error: Bad number format"),
        Response::Error(2)
    );
    assert_eq!(
        parse_response("error:Invalid gcode ID:33"),
        Response::Error(33)
    );
    assert_eq!(parse_response("ALARM:2"), Response::Alarm(2));
    assert_eq!(parse_response("ALARM: Hard limit"), Response::Alarm(1));
    assert_eq!(
        parse_response("$30=1000.000"),
        Response::Setting(30, 1000.0)
    );
    assert_eq!(
        parse_response("$130=200.000 (x max travel, mm)"),
        Response::Setting(130, 200.0)
    );
    assert_eq!(
        parse_response("[MSG:Enabled]"),
        Response::Message("Enabled".into())
    );
    assert!(matches!(
        parse_response("[GC:G0 G54]"),
        Response::Feedback(_)
    ));
    assert!(matches!(
        parse_response("garbage \u{1}"),
        Response::Other(_)
    ));
}

#[test]
fn the_counter_never_overfills_and_frees_in_order() {
    let mut c = CharCounter::new(128, StreamMode::CharCounting);
    assert!(c.can_send(100, false));
    c.sent(1, 100, false);
    assert!(!c.can_send(29, false));
    assert!(c.can_send(28, false));
    c.sent(2, 28, false);
    assert_eq!(c.bytes(), 128);
    assert_eq!(c.acked(), Some(1));
    assert_eq!(c.bytes(), 28);
    assert!(
        !c.can_send(5, true),
        "an EEPROM write waits for an empty buffer"
    );
    assert_eq!(c.acked(), Some(2));
    assert!(c.can_send(5, true));
    c.sent(3, 5, true);
    assert!(
        !c.can_send(1, false),
        "nothing follows an EEPROM write until its reply"
    );
    assert_eq!(c.acked(), Some(3));
    assert_eq!(c.acked(), None);
}

#[test]
fn send_response_keeps_one_line_in_flight() {
    let mut c = CharCounter::new(128, StreamMode::SendResponse);
    c.sent(1, 10, false);
    assert!(!c.can_send(10, false));
}

#[test]
fn extent_follows_relative_moves_inches_and_arcs() {
    let p = Program::parse(
        "G21 G90\nG0 X10 Y10\nG91\nG1 X5 Y-2 F100 S300\nG90 G2 X20 Y8 I0 J5\nG20 G0 X1",
        128,
    )
    .unwrap();
    let e = p.extent();
    assert_eq!(e.max[0].map(|m| m.0), Some(25.4));
    assert_eq!(e.min[1].map(|m| m.0), Some(8.0));
    assert_eq!(e.max[1].map(|m| m.0), Some(18.0));
    assert_eq!(e.max_power, Some((300.0, 4)));
    assert_eq!(e.unknowable, None);
}

fn laser_settings() -> Settings {
    let mut s = Settings::default();
    for (n, v) in [(30, 1000.0), (32, 1.0), (130, 300.0), (131, 200.0)] {
        s.set(n, v);
    }
    s
}

const AREA: WorkArea = WorkArea {
    width: 400.0,
    height: 400.0,
};

/// A machine homed to its positive end (`$23=0`): machine space runs from -400 to 0 in
/// X and -300 to 0 in Y, and where the drawing lands depends on the work origin set on
/// the material, not on a lower-left corner the profile assumes.
#[test]
fn with_homing_the_check_is_in_machine_space_from_the_work_offset() {
    let mut homed = laser_settings();
    for (n, v) in [(22, 1.0), (23, 0.0), (130, 400.0), (131, 300.0)] {
        homed.set(n, v);
    }
    let drawing = Program::parse("G0X0Y0\nG1X100Y80F600S500\nG0X0Y0", 128).unwrap();
    let check = |offset| check_laser_job(&drawing, &homed, AREA, offset);
    // Origin at the lower-left corner of the bed: machine (-400, -300).
    assert_eq!(check(Some([-400.0, -300.0, 0.0])), Ok(()));
    // Origin set 50 mm from the home corner: 100 mm to the right leaves the machine.
    assert_eq!(
        check(Some([-50.0, -200.0, 0.0])),
        Err(Refusal::OutsideTravel {
            line: 2,
            axis: 'X',
            value: 50.0,
            min: -400.0,
            max: 0.0
        })
    );
    // The profile's lower-left view would accept it: that was the wrong answer.
    assert_eq!(check(None), Ok(()));
    // Without homing machine coordinates mean nothing: the profile's area decides.
    let mut unhomed = homed.clone();
    unhomed.set(22, 0.0);
    assert_eq!(unhomed.machine_space(0), None);
    assert_eq!(
        check_laser_job(&drawing, &unhomed, AREA, Some([-50.0, -200.0, 0.0])),
        Ok(())
    );
    let message = Refusal::OutsideTravel {
        line: 2,
        axis: 'X',
        value: 50.0,
        min: -400.0,
        max: 0.0,
    }
    .message(Lang::Fr);
    assert!(
        message.contains("X=50.0 mm en coordonnées machine"),
        "{message}"
    );
    assert!(message.contains("de -400.0 à 0.0 mm"), "{message}");
}

fn mill_settings() -> Settings {
    let mut s = Settings::default();
    for (n, v) in [
        (30, 24000.0),
        (32, 0.0),
        (130, 600.0),
        (131, 400.0),
        (132, 80.0),
    ] {
        s.set(n, v);
    }
    s
}

/// A two-tool file as CAM software writes it: the spindle stopped before the change, a
/// new tool and speed after it.
const TWO_TOOLS: &str = "G90 G94 G17\nG21\nG54\nT1 M6\nS12000 M3\nG0 Z5\nG1 Z-2 F300\n\
    G1 X40 Y30 F800\nG0 Z5\nM5\nT2 M6 (drill)\nS18000 M3\nG0 X10 Y10\nG1 Z-4 F150\nG0 Z5\nM5\nM30\n";

#[test]
fn a_mill_file_splits_at_its_tool_changes_and_each_part_restores_the_state() {
    let program = Program::parse(TWO_TOOLS, 128).unwrap();
    let parts = program.split_at_tool_changes();
    assert_eq!(parts.len(), 3, "{parts:#?}");
    let texts = |i: usize| -> Vec<String> {
        parts[i]
            .program
            .lines()
            .iter()
            .map(|l| l.text.clone())
            .collect()
    };
    assert_eq!(parts[0].after, None);
    // The `M6` goes; the `T1` on its line stays, GRBL takes it.
    assert_eq!(texts(0), ["G90G94G17", "G21", "G54", "T1"]);
    assert_eq!(
        parts[1].after,
        Some(ToolChange {
            line: 4,
            tool: Some(1)
        })
    );
    assert_eq!(texts(1)[..2], ["G17G21G90G54G94", "G0"]);
    assert_eq!(texts(1)[2], "S12000M3");
    assert_eq!(
        parts[2].after,
        Some(ToolChange {
            line: 11,
            tool: Some(2)
        })
    );
    // After the first part the feed is known and the spindle was stopped by the file.
    assert_eq!(texts(2)[..2], ["G17G21G90G54G94", "G0F800"]);
    assert_eq!(texts(2)[2], "S18000M3");
    assert!(
        parts[1]
            .program
            .lines()
            .iter()
            .all(|l| !l.text.contains("M6")),
        "GRBL refuses M6"
    );
    // Restoring lines carry the M6's line number, for messages.
    assert_eq!(parts[2].program.lines()[0].number, 11);
    assert_eq!(parts.iter().filter(|p| p.after.is_some()).count(), 2);
    // Every part, in order, is what a dry run checks: the file without its M6 words.
    let joined = Program::joined(&parts);
    assert!(joined.lines().iter().all(|l| !l.text.contains("M6")));
    assert!(joined.lines().len() > program.lines().len());
}

#[test]
fn a_file_that_opens_with_its_tool_change_begins_with_the_pause() {
    let program = Program::parse("(outil 1)\nM6\nM3S1000\nG1X1F100\nM5", 128).unwrap();
    let parts = program.split_at_tool_changes();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parts[0].after,
        Some(ToolChange {
            line: 2,
            tool: None
        })
    );
    assert!(parts.iter().all(|p| !p.program.lines().is_empty()));
}

#[test]
fn a_tool_change_with_the_spindle_on_restarts_it_and_waits_for_its_speed() {
    let program = Program::parse("G20G91\nM3S9000\nM8\nG1X1F40\nT3M6\nX1\nM5M9", 128).unwrap();
    let parts = program.split_at_tool_changes();
    let restore: Vec<&str> = parts[1]
        .program
        .lines()
        .iter()
        .map(|l| l.text.as_str())
        .take(5)
        .collect();
    assert_eq!(
        restore,
        [
            "G17G20G91G54G94",
            "G1F40",
            "M3S9000",
            &format!("G4P{SPIN_UP_S}"),
            "M8"
        ]
    );
}

#[test]
fn mill_checks_refuse_with_the_offending_line() {
    let check = |src: &str, coolant| {
        check_mill_job(
            &Program::parse(src, 128).unwrap(),
            &mill_settings(),
            AREA,
            None,
            coolant,
        )
    };
    assert_eq!(check(TWO_TOOLS, Coolant::None), Ok(()));
    let mut laser = mill_settings();
    laser.set(32, 1.0);
    assert_eq!(
        check_mill_job(
            &Program::parse(TWO_TOOLS, 128).unwrap(),
            &laser,
            AREA,
            None,
            Coolant::None
        ),
        Err(Refusal::LaserModeOnMill)
    );
    assert_eq!(
        check("M3S30000\nG1X1F100", Coolant::None),
        Err(Refusal::SpindleTooFast {
            line: 1,
            speed: 30000.0,
            max: 24000.0
        })
    );
    assert_eq!(
        check("M3S10000\nM8\nG1X1F100", Coolant::None),
        Err(Refusal::NoCoolant {
            line: 2,
            mist: false
        })
    );
    assert_eq!(check("M3S10000\nM8\nG1X1F100", Coolant::Flood), Ok(()));
    assert_eq!(
        check("M7\nG1X1F100", Coolant::Flood),
        Err(Refusal::NoCoolant {
            line: 1,
            mist: true
        })
    );
    assert_eq!(check("M7\nG1X1F100", Coolant::FloodAndMist), Ok(()));
    // Without homing, Z is checked by its span: clearance to the deepest cut.
    assert_eq!(
        check("G0Z40\nG1Z-45F100", Coolant::None),
        Err(Refusal::DepthTooLarge {
            line: 2,
            span: 85.0,
            travel: 80.0
        })
    );
    // Relative Z from an unknown height says nothing of the span.
    assert_eq!(check("G91\nG1Z-70F100\nG1Z-70", Coolant::None), Ok(()));
    assert_eq!(
        check("G1X700F100", Coolant::None),
        Err(Refusal::OutOfBounds {
            line: 1,
            axis: 'X',
            value: 700.0,
            limit: 400.0
        })
    );
    for r in [
        Refusal::LaserModeOnMill,
        Refusal::MaxSpeedUnknown,
        Refusal::NoCoolant {
            line: 2,
            mist: true,
        },
        Refusal::DepthTooLarge {
            line: 2,
            span: 85.0,
            travel: 80.0,
        },
    ] {
        for lang in [Lang::Fr, Lang::En] {
            let text = r.message(lang);
            assert!(text.len() > 40 && !text.contains('{'), "{text}");
        }
    }
}

/// Homed, the work origin set on the material's top: the file's Z lands in machine
/// space from the offset, and a clearance height above the top of the travel is refused.
#[test]
fn a_homed_mill_checks_z_in_machine_space() {
    let mut homed = mill_settings();
    homed.set(22, 1.0);
    let program = Program::parse("G0Z10\nG1Z-5F100\nG1X50Y50\nG0Z10", 128).unwrap();
    let check = |offset| check_mill_job(&program, &homed, AREA, Some(offset), Coolant::None);
    assert_eq!(check([-500.0, -350.0, -40.0]), Ok(()));
    assert_eq!(
        check([-500.0, -350.0, -5.0]),
        Err(Refusal::OutsideTravel {
            line: 1,
            axis: 'Z',
            value: 5.0,
            min: -80.0,
            max: 0.0
        })
    );
    assert_eq!(
        check([-500.0, -350.0, -77.0]),
        Err(Refusal::OutsideTravel {
            line: 2,
            axis: 'Z',
            value: -82.0,
            min: -80.0,
            max: 0.0
        })
    );
}

#[test]
fn a_machine_not_idle_is_told_in_words() {
    let alarm = Refusal::NotIdle(Some(MachineState::Alarm)).message(Lang::Fr);
    assert!(
        alarm.contains("en alarme") && alarm.contains("($H)"),
        "{alarm}"
    );
    let held = Refusal::NotIdle(Some(MachineState::Hold(0))).message(Lang::En);
    assert!(held.contains("it is on hold"), "{held}");
    for state in [
        MachineState::Run,
        MachineState::Door(1),
        MachineState::Check,
        MachineState::Unknown,
    ] {
        for lang in [Lang::Fr, Lang::En] {
            let text = Refusal::NotIdle(Some(state)).message(lang);
            assert!(!text.contains("Some(") && !text.contains('{'), "{text}");
        }
    }
    assert!(!Refusal::NotIdle(None).message(Lang::Fr).contains("None"));
}

#[test]
fn laser_checks_refuse_with_the_offending_line() {
    let check = |src: &str| {
        check_laser_job(
            &Program::parse(src, 128).unwrap(),
            &laser_settings(),
            AREA,
            None,
        )
    };
    assert_eq!(
        check(
            "G1X10Y10F100M4S1000
M5"
        ),
        Ok(())
    );
    assert_eq!(
        check(
            "G21
G1X10F100M4S1001"
        ),
        Err(Refusal::PowerTooHigh {
            line: 2,
            power: 1001.0,
            max: 1000.0
        })
    );
    assert!(matches!(
        check("G0X301"),
        Err(Refusal::OutOfBounds {
            axis: 'X',
            line: 1,
            ..
        })
    ));
    assert!(matches!(
        check(
            "G0Y10
G91
G0Y195"
        ),
        Err(Refusal::OutOfBounds {
            axis: 'Y',
            line: 3,
            ..
        })
    ));
    assert_eq!(
        check(
            "G0X1
$32=0
G1X2F100S10"
        ),
        Err(Refusal::SystemCommand(2))
    );
    assert_eq!(
        check(
            "G92X0
G0X1"
        ),
        Err(Refusal::UnknowableBounds(1))
    );
    assert_eq!(
        check(
            "; nothing
"
        ),
        Err(Refusal::Empty)
    );
    let mut off = laser_settings();
    off.set(32, 0.0);
    let p = Program::parse("G0X1", 128).unwrap();
    assert_eq!(
        check_laser_job(&p, &off, AREA, None),
        Err(Refusal::LaserModeOff)
    );
    assert_eq!(
        check_laser_job(&p, &Settings::default(), AREA, None),
        Err(Refusal::LaserModeOff)
    );
}

fn drain(s: &mut Session) -> (Vec<u8>, Vec<Event>) {
    let (mut w, mut e) = (Vec::new(), Vec::new());
    while let Some(o) = s.poll_output() {
        match o {
            Output::Write(b) => w.extend(b),
            Output::Event(ev) => e.push(ev),
        }
    }
    (w, e)
}

fn ready_session(t: Instant) -> Session {
    let mut s = Session::new(Config::default());
    s.start(t);
    assert_eq!(drain(&mut s).0, vec![0x18]);
    s.receive(b"\r\nGrbl 1.1h ['$' for help]\r\n", t);
    assert_eq!(drain(&mut s).0, b"$$\n");
    s.receive(b"$30=1000\r\n$32=1\r\n$130=400\r\n$131=300\r\nok\r\n", t);
    let (_, ev) = drain(&mut s);
    assert!(ev.iter().any(|e| matches!(e, Event::Settings(_))));
    s.tick(t);
    assert_eq!(drain(&mut s).0, b"?");
    s.receive(b"<Idle|MPos:0,0,0|FS:0,0>\r\n", t);
    drain(&mut s);
    assert!(s.is_ready() && s.has_fresh_status());
    s
}

#[test]
fn status_is_polled_at_the_configured_rate() {
    let t = Instant::now();
    let mut s = ready_session(t);
    s.tick(t + Duration::from_millis(100));
    assert!(drain(&mut s).0.is_empty());
    s.tick(t + Duration::from_millis(200));
    assert_eq!(drain(&mut s).0, b"?");
}

#[test]
fn an_error_holds_first_and_resets_once_the_machine_stands_still() {
    let t = Instant::now();
    let mut s = ready_session(t);
    let p = Program::parse("G1X1F100M4S10\nG1X2\nG1X3\n", 128).unwrap();
    let person = PersonAtMachine::confirmed_at_the_machine("t", t);
    s.start_cut(
        p,
        WorkArea {
            width: 400.0,
            height: 300.0,
        },
        person,
        t,
    )
    .unwrap();
    assert_eq!(drain(&mut s).0, b"G1X1F100M4S10\nG1X2\nG1X3\n");
    s.receive(b"ok\r\nerror:33\r\n", t);
    let (w, ev) = drain(&mut s);
    assert_eq!(w, b"!?", "hold, then ask whether it stopped");
    assert!(!ev.iter().any(|e| matches!(e, Event::JobFailed(_))));
    s.receive(b"<Hold:1|MPos:1,0,0>\r\n", t);
    assert!(drain(&mut s).0.is_empty(), "still decelerating");
    s.receive(b"<Hold:0|MPos:1.5,0,0>\r\n", t);
    let (w, ev) = drain(&mut s);
    assert_eq!(w, vec![0x18]);
    let lines: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Line { index, outcome, .. } => Some((*index, *outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(lines, vec![(2, LineOutcome::Unconfirmed)]);
    assert_eq!(
        ev.last(),
        Some(&Event::JobFailed(FailReason::Error(LineError {
            line: 2,
            code: 33
        })))
    );
    // The banner after our reset is expected, not a new failure.
    s.receive(b"Grbl 1.1h ['$' for help]\r\n", t);
    let (_, ev) = drain(&mut s);
    assert_eq!(ev, vec![Event::Reset]);
}

#[test]
fn a_hold_that_never_settles_is_reset_after_the_timeout() {
    let t = Instant::now();
    let mut s = ready_session(t);
    let p = Program::parse("G1X1F100M4S10\n", 128).unwrap();
    let person = PersonAtMachine::confirmed_at_the_machine("t", t);
    s.start_cut(
        p,
        WorkArea {
            width: 400.0,
            height: 300.0,
        },
        person,
        t,
    )
    .unwrap();
    drain(&mut s);
    s.cancel(t);
    assert_eq!(drain(&mut s).0, b"!?");
    s.tick(t + Duration::from_millis(999));
    assert!(!drain(&mut s).0.contains(&0x18));
    s.tick(t + Duration::from_secs(1));
    let (w, ev) = drain(&mut s);
    assert!(w.contains(&0x18));
    assert_eq!(ev.last(), Some(&Event::JobFailed(FailReason::Cancelled)));
}

#[test]
fn a_cut_ends_on_an_idle_report_asked_after_the_last_reply() {
    let t = Instant::now();
    let mut s = ready_session(t);
    let p = Program::parse("G1X1F100M4S10\n", 128).unwrap();
    let person = PersonAtMachine::confirmed_at_the_machine("t", t);
    s.start_cut(
        p,
        WorkArea {
            width: 400.0,
            height: 300.0,
        },
        person,
        t,
    )
    .unwrap();
    drain(&mut s);
    s.receive(b"ok\r\n<Idle|MPos:0,0,0>\r\n", t);
    let (_, ev) = drain(&mut s);
    assert!(
        !ev.iter().any(|e| matches!(e, Event::JobDone(_))),
        "too early to trust"
    );
    s.tick(t + DRAIN_GUARD);
    assert_eq!(drain(&mut s).0, b"?");
    let later = t + DRAIN_GUARD + Duration::from_millis(5);
    s.receive(b"<Run|MPos:0.5,0,0>\r\n", later);
    assert!(
        !drain(&mut s)
            .1
            .iter()
            .any(|e| matches!(e, Event::JobDone(_)))
    );
    s.receive(b"<Idle|MPos:1,0,0>\r\n", later);
    let (_, ev) = drain(&mut s);
    assert!(matches!(
        ev.last(),
        Some(Event::JobDone(JobSummary { lines: 1, .. }))
    ));
}

#[test]
fn an_eeprom_line_in_a_stream_waits_for_an_empty_buffer_and_goes_alone() {
    let t = Instant::now();
    let mut s = ready_session(t);
    let p = Program::parse("G0X1\nG0X2\nG28.1\nG0X3\n", 128).unwrap();
    s.start_dry_run(p, t).unwrap();
    assert_eq!(drain(&mut s).0, b"$C\n");
    s.receive(b"[MSG:Enabled]\r\nok\r\n", t);
    assert_eq!(
        drain(&mut s).0,
        b"G0X1\nG0X2\n",
        "G28.1 waits for an empty buffer"
    );
    s.receive(b"ok\r\n", t);
    assert!(drain(&mut s).0.is_empty());
    s.receive(b"ok\r\n", t);
    assert_eq!(drain(&mut s).0, b"G28.1\n");
    assert!(
        drain(&mut s).0.is_empty(),
        "nothing follows until its reply"
    );
    s.receive(b"ok\r\n", t);
    assert_eq!(drain(&mut s).0, b"G0X3\n");
}

#[test]
fn a_critical_alarm_during_start_up_is_reset_and_settings_read_again() {
    let t = Instant::now();
    let mut s = Session::new(Config::default());
    s.start(t);
    drain(&mut s);
    s.receive(b"Grbl 1.1h ['$' for help]\r\n", t);
    assert_eq!(drain(&mut s).0, b"$$\n");
    s.receive(b"ALARM:1\r\n[MSG:Reset to continue]\r\n", t);
    assert_eq!(drain(&mut s).0, vec![0x18]);
    s.receive(
        b"Grbl 1.1h ['$' for help]\r\n[MSG:'$H'|'$X' to unlock]\r\n",
        t,
    );
    assert_eq!(drain(&mut s).0, b"$$\n");
    s.receive(b"$32=1\r\nok\r\n", t);
    assert!(
        drain(&mut s)
            .1
            .iter()
            .any(|e| matches!(e, Event::Settings(_)))
    );
    assert!(s.is_ready());
}

#[test]
fn unanswered_settings_fail_the_connection_after_one_retry() {
    let t = Instant::now();
    let mut s = Session::new(Config::default());
    s.start(t);
    s.receive(b"Grbl 1.1h ['$' for help]\r\n", t);
    drain(&mut s);
    s.tick(t + Duration::from_secs(5));
    assert!(drain(&mut s).0.contains(&0x18));
    s.receive(b"Grbl 1.1h ['$' for help]\r\n", t + Duration::from_secs(5));
    drain(&mut s);
    s.tick(t + Duration::from_secs(10));
    let (_, ev) = drain(&mut s);
    assert_eq!(
        ev.last(),
        Some(&Event::ConnectFailed(ConnectFailure::NoSettings))
    );
    assert!(s.is_closed());
}

#[test]
fn a_banner_mid_job_fails_it_at_once() {
    let t = Instant::now();
    let mut s = ready_session(t);
    let p = Program::parse("G1X1F100M4S10\nG1X2\n", 128).unwrap();
    let person = PersonAtMachine::confirmed_at_the_machine("t", t);
    s.start_cut(
        p,
        WorkArea {
            width: 400.0,
            height: 300.0,
        },
        person,
        t,
    )
    .unwrap();
    drain(&mut s);
    s.receive(b"ok\r\n\r\nGrbl 1.1h ['$' for help]\r\nok\r\n", t);
    let (w, ev) = drain(&mut s);
    assert_eq!(w, vec![b'!', 0x18]);
    assert!(ev.contains(&Event::UnexpectedReset));
    assert!(ev.contains(&Event::JobFailed(FailReason::UnexpectedReset)));
    assert!(
        ev.iter().any(|e| matches!(e, Event::UnexpectedReply(_))),
        "an ok after the reset matches no line"
    );
}

#[test]
fn nonsense_from_the_machine_never_panics_or_loses_a_line() {
    let t = Instant::now();
    let mut s = ready_session(t);
    s.receive(
        &[
            0xff, 0xfe, b'<', b'|', b'>', b'\n', b'e', b'r', b'r', b'o', b'r', b':', b'\n',
        ],
        t,
    );
    s.receive(&[b'x'; 5000], t);
    s.receive(b"\nALARM:\n<Idle|MPos:a,b>\n", t);
    let (_, ev) = drain(&mut s);
    assert!(ev.iter().any(|e| matches!(e, Event::UnexpectedReply(_))));
    assert!(s.is_ready());
}

#[test]
fn too_long_lines_are_refused_with_their_number() {
    let long = format!("G1X{}", "1".repeat(90));
    let err = Program::parse(&format!("G21\n\n{long}"), 128).unwrap_err();
    assert_eq!(
        err,
        ProgramError::LineTooLong {
            line: 3,
            len: 93,
            max: 79
        }
    );
}
