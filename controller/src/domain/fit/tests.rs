use super::*;
use crate::domain::job::{Approval, JobId, JobState, NewJob};
use crate::domain::{MachineId, MachineProfile, MachineState, UserId};
use fabrique_machines::files::embroidery::{self, Design};
use fabrique_machines::files::gcode;

fn gcode_file(text: &str) -> FileSummary {
    FileSummary::Gcode(Box::new(gcode::analyze(text.as_bytes(), None).unwrap()))
}

/// A real file of the machines crate's fixtures, read as an upload reads it.
fn fixture(name: &str) -> FileSummary {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../machines/tests/data")
        .join(name);
    let bytes = std::fs::read(path).unwrap();
    FileSummary::Gcode(Box::new(gcode::analyze(&bytes[..], None).unwrap()))
}

fn design(width_units: i32, height_units: i32) -> FileSummary {
    let mut d = Design::new();
    d.stitch(0, 0).stitch(width_units, height_units);
    FileSummary::Embroidery(Box::new(embroidery::analyze(
        &d,
        &embroidery::EmbroideryMachine::default(),
    )))
}

fn machine(id: i64, name: &str, kind: MachineKind, connection: Connection) -> Machine {
    Machine {
        id: MachineId(id),
        name: name.into(),
        kind,
        connection,
        profile: MachineProfile::default(),
        location: String::new(),
        required_training: String::new(),
        state: MachineState::Idle,
        state_reason: String::new(),
    }
}

fn serial_marlin() -> Connection {
    Connection::SerialMarlin {
        port: "/dev/ttyACM0".into(),
        baud: 115_200,
    }
}

fn prusa() -> Machine {
    let mut m = machine(1, "Prusa", MachineKind::FdmPrinter, serial_marlin());
    m.profile = MachineProfile::parse(["250", "210", "210"], "300", "120", "", "", "PLA").unwrap();
    m
}

fn laser() -> Machine {
    let mut m = machine(
        2,
        "Laser",
        MachineKind::LaserCutter,
        Connection::SerialGrbl {
            port: "/dev/ttyUSB0".into(),
            baud: 115_200,
        },
    );
    m.profile = MachineProfile::parse(["400", "300", "0"], "", "", "1000", "", "").unwrap();
    m
}

fn voron() -> Machine {
    let mut m = machine(
        3,
        "Voron",
        MachineKind::FdmPrinter,
        Connection::Moonraker {
            url: "http://voron.local".into(),
        },
    );
    m.profile = MachineProfile::parse(["350", "350", "340"], "320", "120", "", "", "").unwrap();
    m
}

fn brother() -> Machine {
    let mut m = machine(4, "Brodeuse", MachineKind::Embroidery, Connection::Manual);
    m.profile = MachineProfile::parse(["0", "0", "0"], "", "", "", "100x100, 130x180", "").unwrap();
    m
}

fn job(file: FileSummary) -> Job {
    let new = NewJob {
        owner: UserId(7),
        file_name: "f.gcode".into(),
        stored_name: "f.gcode".into(),
        size_bytes: 10,
        sha256: String::new(),
        target_machine: None,
        target_kind: None,
    };
    let mut j = Job::provisional(&new, "Amina", file, 0);
    j.id = JobId(1);
    j.state = JobState::Queued;
    j
}

fn trained() -> Owner {
    Owner {
        role: Role::Member,
        missing_training: None,
    }
}

fn untrained() -> Owner {
    Owner {
        role: Role::Member,
        missing_training: Some("Impression 3D".into()),
    }
}

fn approved(mut j: Job, seen: &[&str], supervised: bool) -> Job {
    j.approval = Some(Approval {
        by: UserId(1),
        by_name: "Nadia".into(),
        at: jiff::Timestamp::UNIX_EPOCH,
        seen: seen.iter().map(|s| s.to_string()).collect(),
        supervised,
    });
    j
}

fn codes(rs: &[Refusal]) -> Vec<&'static str> {
    rs.iter().map(Refusal::code).collect()
}

#[test]
fn a_file_too_hot_for_the_printer_does_not_fit_it() {
    let file = gcode_file("M104 S450\nM140 S60\nG1 X10 Y10 E1 F1200\n");
    assert_eq!(
        misfits(&file, &prusa()),
        vec![Refusal::HotendTooHot {
            need: 450.0,
            max: 300.0
        }]
    );
    assert!(
        misfits(&file, &{
            let mut hot = prusa();
            hot.profile.max_hotend_c = 500.0;
            hot
        })
        .is_empty()
    );
    let bed = gcode_file("M190 S130\nG1 X10 Y10 E1\n");
    assert_eq!(codes(&misfits(&bed, &prusa())), vec!["bed_too_hot"]);
}

#[test]
fn a_file_larger_than_the_bed_or_below_it_does_not_fit() {
    let file = gcode_file("G1 Z0.2\nG1 X260 Y10 E5 F1200\n");
    assert_eq!(
        misfits(&file, &prusa()),
        vec![Refusal::TooLarge {
            axis: 'X',
            need: 260.0,
            have: 250.0
        }]
    );
    let below = gcode_file("G1 Z0.2\nG1 X10 Y-5 E5 F1200\nG1 X20 Y10 E6\n");
    assert_eq!(
        misfits(&below, &prusa()),
        vec![Refusal::BelowZero {
            axis: 'Y',
            at: -5.0
        }]
    );
    // Travel outside the bed (a parking move) is not printing outside it; height counts.
    let park = gcode_file("G1 Z0.2\nG1 X10 Y10 E5 F1200\nG0 X-10 Y300\n");
    assert!(misfits(&park, &prusa()).is_empty());
    let tall = gcode_file("G1 Z0.2\nG1 X10 Y10 E5\nG1 Z230\n");
    assert_eq!(codes(&misfits(&tall, &prusa())), vec!["too_large"]);
}

#[test]
fn the_real_visor_fits_the_prusa_and_not_a_smaller_bed_nor_the_laser() {
    let visor = fixture("mk3_visor.gcode");
    assert!(
        misfits(&visor, &prusa()).is_empty(),
        "{:?}",
        misfits(&visor, &prusa())
    );
    let mut small = prusa();
    small.profile.work_area_mm = [210.0, 210.0, 200.0];
    let m = misfits(&visor, &small);
    assert!(
        matches!(m[..], [Refusal::TooLarge { axis: 'X', need, have: 210.0 }] if need > 230.0),
        "{m:?}"
    );
    assert_eq!(
        misfits(&visor, &laser()),
        vec![Refusal::PrinterFile {
            line: 18,
            command: "M104".into()
        }]
    );
}

#[test]
fn the_laser_shield_goes_to_the_laser_and_never_to_a_printer() {
    let shield = fixture("laser_shield.gcode");
    assert!(
        misfits(&shield, &laser()).is_empty(),
        "{:?}",
        misfits(&shield, &laser())
    );
    let m = misfits(&shield, &prusa());
    assert_eq!(
        m[0],
        Refusal::LaserFile {
            line: 5,
            command: "M4".into()
        }
    );
    assert_eq!(codes(&m), vec!["laser_file", "too_large"]);
}

#[test]
fn laser_power_and_laser_mode_are_the_lasers_limits() {
    let strong = gcode_file("M4 S1200\nG1 X10 Y10 F1200\nM5\n");
    assert_eq!(
        misfits(&strong, &laser()),
        vec![Refusal::LaserTooStrong {
            need: 1200.0,
            max: 1000.0
        }]
    );
    let mode_off = gcode_file("$32=0\nM4 S500\nG1 X10 F600\n");
    assert_eq!(codes(&misfits(&mode_off, &laser())), vec!["laser_mode_off"]);
    let constant = gcode_file("M3 S500\nG1 X10 F600\nM5\n");
    let m = misfits(&constant, &laser());
    assert_eq!(m, vec![Refusal::ConstantPower { line: 1 }]);
    assert!(
        m[0].approvable(),
        "a manager may accept a constant-power cut"
    );
    // On a mill, M3 turns the spindle: nothing to say.
    let mill = machine(5, "Fraiseuse", MachineKind::CncMill, laser().connection);
    assert!(misfits(&constant, &mill).is_empty());
}

#[test]
fn each_firmware_refuses_the_others_commands() {
    let klipper = gcode_file("PRINT_START BED=60\nG1 X10 Y10 E1\n");
    assert_eq!(codes(&misfits(&klipper, &prusa())), vec!["klipper_macros"]);
    assert!(misfits(&klipper, &voron()).is_empty());
    let grbl = gcode_file("$H\nG1 X10 Y10 E1\n");
    assert_eq!(
        misfits(&grbl, &voron()),
        vec![Refusal::GrblCommands {
            line: 1,
            command: "$H".into()
        }]
    );
    let grbl_cut = gcode_file("$H\nM4 S100\nG1 X10 F600\n");
    assert!(misfits(&grbl_cut, &laser()).is_empty());
}

#[test]
fn designs_go_to_embroidery_machines_whose_hoop_takes_them() {
    let small = design(900, 900);
    assert!(misfits(&small, &brother()).is_empty());
    let turned = design(1700, 1200);
    assert!(
        misfits(&turned, &brother()).is_empty(),
        "fits the 130x180 hoop turned"
    );
    let big = design(2000, 2000);
    assert_eq!(
        misfits(&big, &brother()),
        vec![Refusal::HoopTooSmall {
            width: 200.0,
            height: 200.0
        }]
    );
    assert_eq!(
        misfits(&small, &prusa()),
        vec![Refusal::WrongKind {
            file: "embroidery",
            machine: MachineKind::FdmPrinter
        }]
    );
    assert_eq!(
        codes(&misfits(&gcode_file("G1 X1\n"), &brother())),
        vec!["wrong_kind"]
    );
    let vinyl = machine(6, "Plotter", MachineKind::VinylCutter, Connection::Manual);
    assert_eq!(
        codes(&misfits(&gcode_file("G1 X1\n"), &vinyl)),
        vec!["wrong_kind"]
    );
}

#[test]
fn the_filament_sliced_for_must_be_on_the_printer() {
    let petg = gcode_file("; filament_type = PETG\nG1 X10 Y10 E1\n");
    assert_eq!(
        misfits(&petg, &prusa()),
        vec![Refusal::MaterialMissing {
            needed: "PETG".into(),
            loaded: "PLA".into()
        }]
    );
    let pla = gcode_file("; filament_type = pla\nG1 X10 Y10 E1\n");
    assert!(misfits(&pla, &prusa()).is_empty());
    assert!(
        misfits(&petg, &voron()).is_empty(),
        "a printer that lists none takes any"
    );
}

#[test]
fn the_rule_refuses_in_order_and_says_why() {
    let ok = job(gcode_file("M104 S215\nG1 X10 Y10 E1\n"));
    assert_eq!(check(&ok, &prusa(), &trained(), Start::Automatic), Ok(()));
    let mut other = ok.clone();
    other.target_machine = Some(MachineId(9));
    assert_eq!(
        check(&other, &prusa(), &trained(), Start::Plan),
        Err(Refusal::OtherMachine)
    );
    let mut unread = ok.clone();
    unread.analysis = None;
    assert_eq!(
        check(&unread, &prusa(), &trained(), Start::Plan),
        Err(Refusal::Unreadable)
    );
    let mut kind = ok.clone();
    kind.target_kind = Some(MachineKind::LaserCutter);
    assert_eq!(
        check(&kind, &prusa(), &trained(), Start::Plan).map_err(|r| r.code()),
        Err("wrong_kind")
    );
    // A misfit holds even when approved.
    let hot = approved(
        job(gcode_file("M104 S450\nG1 X1 E1\n")),
        &["hotend_too_hot"],
        true,
    );
    assert_eq!(
        check(&hot, &prusa(), &trained(), Start::Person(Role::Manager)).map_err(|r| r.code()),
        Err("hotend_too_hot")
    );
}

#[test]
fn findings_wait_for_an_approval_that_names_them() {
    let eeprom = job(gcode_file("M500\nG1 X10 Y10 E1\n"));
    assert_eq!(
        check(&eeprom, &prusa(), &trained(), Start::Plan),
        Err(Refusal::ApprovalNeeded {
            codes: vec!["forbidden_command".into()]
        })
    );
    let other_finding = approved(eeprom.clone(), &["unparsable_line"], false);
    assert!(check(&other_finding, &prusa(), &trained(), Start::Plan).is_err());
    let seen = approved(eeprom, &["forbidden_command"], false);
    assert_eq!(check(&seen, &prusa(), &trained(), Start::Automatic), Ok(()));
    let constant = job(gcode_file("M3 S500\nG1 X10 F600\nM5\n"));
    assert_eq!(
        check(
            &constant,
            &laser(),
            &trained(),
            Start::Person(Role::Trainer)
        ),
        Err(Refusal::ApprovalNeeded {
            codes: vec!["constant_power".into()]
        })
    );
    let constant = approved(constant, &["constant_power"], false);
    assert_eq!(
        check(
            &constant,
            &laser(),
            &trained(),
            Start::Person(Role::Trainer)
        ),
        Ok(())
    );
}

#[test]
fn a_member_without_the_badge_runs_only_a_supervised_approved_job_started_by_a_trainer() {
    let print = job(gcode_file("G1 X10 Y10 E1\n"));
    assert_eq!(
        check(&print, &prusa(), &untrained(), Start::Plan),
        Err(Refusal::BadgeRequired {
            training: "Impression 3D".into()
        })
    );
    assert_eq!(
        check(&print, &prusa(), &untrained(), Start::Person(Role::Trainer)).map_err(|r| r.code()),
        Err("badge_required"),
        "a trainer alone does not stand for the manager's approval"
    );
    let supervised = approved(print.clone(), &[], true);
    assert_eq!(
        check(&supervised, &prusa(), &untrained(), Start::Plan),
        Ok(())
    );
    assert_eq!(
        check(&supervised, &prusa(), &untrained(), Start::Automatic),
        Err(Refusal::SupervisorNeeded)
    );
    assert_eq!(
        check(
            &supervised,
            &prusa(),
            &untrained(),
            Start::Person(Role::Member)
        ),
        Err(Refusal::SupervisorNeeded)
    );
    assert_eq!(
        check(
            &supervised,
            &prusa(),
            &untrained(),
            Start::Person(Role::Trainer)
        ),
        Ok(())
    );
    let manager = Owner {
        role: Role::Manager,
        missing_training: Some("Impression 3D".into()),
    };
    assert_eq!(check(&print, &prusa(), &manager, Start::Automatic), Ok(()));
}

#[test]
fn a_laser_and_a_machine_without_a_link_start_only_by_a_person() {
    let cut = job(gcode_file("M4 S500\nG1 X10 F600\nM5\n"));
    assert_eq!(
        check(&cut, &laser(), &trained(), Start::Automatic),
        Err(Refusal::PersonNeeded)
    );
    assert_eq!(check(&cut, &laser(), &trained(), Start::Plan), Ok(()));
    let sew = job(design(500, 500));
    assert_eq!(
        check(&sew, &brother(), &trained(), Start::Automatic),
        Err(Refusal::PersonNeeded)
    );
    assert_eq!(
        check(&sew, &brother(), &trained(), Start::Person(Role::Trainer)),
        Ok(())
    );
}

#[test]
fn a_job_no_machine_takes_waits_with_the_reason_in_its_figures() {
    let hot = job(gcode_file("M104 S450\nG1 X10 Y10 E1\n"));
    let (p, v, l) = (prusa(), voron(), laser());
    let machines = [(&p, trained()), (&v, trained()), (&l, trained())];
    assert_eq!(
        waiting(&hot, &machines),
        Some(Waiting::NoMachine(Refusal::HotendTooHot {
            need: 450.0,
            max: 320.0
        })),
        "the hottest printer is named, the laser is not a candidate"
    );
    let fine = job(gcode_file("M104 S215\nG1 X10 Y10 E1\n"));
    assert_eq!(waiting(&fine, &machines), None);
    let sew = job(design(500, 500));
    assert_eq!(waiting(&sew, &machines), Some(Waiting::NoMachineOfKind));
    let mut named = hot.clone();
    named.target_machine = Some(MachineId(1));
    assert_eq!(
        waiting(&named, &machines),
        Some(Waiting::OnMachine {
            machine: "Prusa".into(),
            refusal: Refusal::HotendTooHot {
                need: 450.0,
                max: 300.0
            }
        })
    );
    let wide = job(gcode_file("M104 S330\nG1 X10 Y10 E1\nG1 X300 Y10 E2\n"));
    match waiting(&wide, &machines) {
        Some(Waiting::Several(list)) => assert_eq!(
            list.iter()
                .map(|(m, r)| (m.as_str(), r.code()))
                .collect::<Vec<_>>(),
            vec![("Prusa", "too_large"), ("Voron", "hotend_too_hot")]
        ),
        other => panic!("{other:?}"),
    }
    let untrained_everywhere = [(&p, untrained()), (&v, untrained())];
    let w = waiting(&fine, &untrained_everywhere).unwrap();
    assert!(w.approvable(), "{w:?}");
}

#[test]
fn every_refusal_has_a_listed_code() {
    let all = [
        Refusal::OtherMachine,
        Refusal::Unreadable,
        Refusal::WrongKind {
            file: "gcode",
            machine: MachineKind::Other,
        },
        Refusal::PrinterFile {
            line: 1,
            command: "M104".into(),
        },
        Refusal::LaserFile {
            line: 1,
            command: "M4".into(),
        },
        Refusal::GrblCommands {
            line: 1,
            command: "$H".into(),
        },
        Refusal::KlipperMacros {
            line: 1,
            command: "PRINT_START".into(),
        },
        Refusal::TooLarge {
            axis: 'X',
            need: 2.0,
            have: 1.0,
        },
        Refusal::BelowZero {
            axis: 'Y',
            at: -1.0,
        },
        Refusal::HotendTooHot {
            need: 2.0,
            max: 1.0,
        },
        Refusal::BedTooHot {
            need: 2.0,
            max: 1.0,
        },
        Refusal::LaserTooStrong {
            need: 2.0,
            max: 1.0,
        },
        Refusal::LaserModeOff,
        Refusal::ConstantPower { line: 1 },
        Refusal::HoopTooSmall {
            width: 1.0,
            height: 1.0,
        },
        Refusal::MaterialMissing {
            needed: "PETG".into(),
            loaded: "PLA".into(),
        },
        Refusal::ApprovalNeeded { codes: vec![] },
        Refusal::BadgeRequired {
            training: "Laser".into(),
        },
        Refusal::SupervisorNeeded,
        Refusal::PersonNeeded,
        Refusal::MachineNotFree {
            state: MachineState::Busy,
        },
        Refusal::NotQueued {
            state: JobState::Done,
        },
    ];
    let codes: Vec<&str> = all.iter().map(Refusal::code).collect();
    assert_eq!(codes, Refusal::CODES);
}

fn cut_file(text: &str) -> FileSummary {
    use fabrique_machines::files::hpgl;
    let a = hpgl::analyze(text.as_bytes(), &hpgl::CutterSettings::default(), None).unwrap();
    FileSummary::Hpgl(Box::new(a.summary))
}

#[test]
fn a_cutting_file_runs_on_a_vinyl_cutter_only_and_within_its_media() {
    let mut vinyl = machine(7, "Roland", MachineKind::VinylCutter, Connection::Manual);
    // A 600 mm wide roll: no length, 600 mm across.
    vinyl.profile = MachineProfile::parse(["0", "600", "0"], "", "", "", "", "").unwrap();
    // 100 × 50 mm from the origin.
    let sticker = cut_file("IN;PU0,0;PD4000,0,4000,2000,0,2000,0,0;PU;");
    assert_eq!(misfits(&sticker, &vinyl), vec![]);
    for other in [prusa(), laser(), brother()] {
        assert_eq!(
            misfits(&sticker, &other),
            vec![Refusal::WrongKind {
                file: "hpgl",
                machine: other.kind
            }]
        );
    }
    assert_eq!(
        codes(&misfits(&gcode_file("G1 X1\n"), &vinyl)),
        vec!["wrong_kind"]
    );
    assert_eq!(
        codes(&misfits(&design(100, 100), &vinyl)),
        vec!["wrong_kind"]
    );
    // A cut below the origin, then 700 mm across a 600 mm roll.
    let low = cut_file("IN;PU0,-40;PD0,8000;PU;");
    assert_eq!(
        misfits(&low, &vinyl),
        vec![Refusal::BelowZero {
            axis: 'Y',
            at: -1.0
        }]
    );
    let wide = cut_file("IN;PU0,0;PD0,28000;PU;");
    assert_eq!(
        misfits(&wide, &vinyl),
        vec![Refusal::TooLarge {
            axis: 'Y',
            need: 700.0,
            have: 600.0
        }]
    );
}
