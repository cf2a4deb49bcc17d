//! Whatever the jobs, machines, owners and sequence of actions (upload, approve, cancel,
//! queue again, start from the board, a planner pass, a machine checked), no job ever starts
//! on a machine it does not fit, without its owner's badge (or a supervised approval and a
//! trainer at the machine), with findings nobody approved, or by itself on a laser or a
//! machine without a data link. The lab runs for real: its database (SQLite file, or
//! PostgreSQL with FABRIQUE_TEST_POSTGRES_URL), its runtime with one task per machine, its
//! planner; the verdict comes from the jobs' own histories, judged by a model of the rule
//! written here from the machines' figures, not by the rule itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_controller::domain::job::{JobId, JobState, NewJob};
use fabrique_controller::domain::training::TrainingInput;
use fabrique_controller::domain::{
    Connection, CredentialKind, Lang, MachineInput, MachineKind, MachineProfile, MachineState,
    NewUser, Role, Secret, User,
};
use fabrique_controller::lab::now;
use fabrique_controller::runtime::Runtime;
use fabrique_controller::testing::fresh_database_url;
use fabrique_controller::{Lab, Store};
use fabrique_machines::files::embroidery::{Design, write_dst};
use proptest::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

/// A file a member sends.
#[derive(Debug, Clone)]
enum File {
    /// A print reaching `width` mm on X, its nozzle at `hotend` °C; `eeprom`: it ends with
    /// `M500`, which members may not send.
    Print {
        width: u32,
        hotend: u32,
        eeprom: bool,
    },
    /// A cut reaching `width` mm on X at power `power`; `eeprom`: it writes a GRBL setting.
    Cut {
        width: u32,
        power: u32,
        eeprom: bool,
    },
    /// An embroidery design `width` × `width / 2` mm.
    Design { width: u32 },
    /// Bytes that are not G-code.
    Garbage,
}

impl File {
    fn bytes(&self) -> Vec<u8> {
        match self {
            File::Print { width, hotend, eeprom } => format!(
                "M104 S{hotend}\nM140 S60\nG28\nG1 Z0.2 F3000\nG1 X10 Y10 E1 F1200\nG1 X{width} Y20 E2\n{}",
                if *eeprom { "M500\n" } else { "" }
            )
            .into_bytes(),
            File::Cut { width, power, eeprom } => format!(
                "{}G90\nM4 S{power}\nG1 X10 Y10 F600\nG1 X{width} Y20\nM5\n",
                if *eeprom { "$130=400\n" } else { "" }
            )
            .into_bytes(),
            File::Design { width } => {
                let (w, h) = (*width as i32 * 10, *width as i32 * 5);
                let mut d = Design::new();
                d.stitch(0, 0).stitch(w, 0).stitch(w, h);
                let mut out = Vec::new();
                write_dst(&d, &mut out).unwrap();
                out
            }
            File::Garbage => (0..1500u32).map(|i| (i * 31 % 251) as u8).collect(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            File::Design { .. } => "motif.dst",
            _ => "fichier.gcode",
        }
    }

    fn has_findings(&self) -> bool {
        matches!(
            self,
            File::Print { eeprom: true, .. } | File::Cut { eeprom: true, .. }
        )
    }
}

/// The lab's machines, as the model knows them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Marlin over serial: it may start by itself. 250 × 210 × 210 mm, 300 °C.
    Prusa,
    /// A printer without a data link: 220 × 220 × 250 mm, 260 °C.
    Ender,
    /// GRBL: 400 × 300 mm, S1000.
    Laser,
    /// Hoops of 100 × 100 and 130 × 180 mm, no data link.
    Brodeuse,
}

const MACHINES: [Kind; 4] = [Kind::Prusa, Kind::Ender, Kind::Laser, Kind::Brodeuse];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Prusa => "Prusa",
            Kind::Ender => "Ender",
            Kind::Laser => "Laser",
            Kind::Brodeuse => "Brodeuse",
        }
    }

    /// The model's own judgement of a file on this machine.
    fn fits(self, file: &File) -> bool {
        match (self, file) {
            (Kind::Prusa, File::Print { width, hotend, .. }) => *width <= 250 && *hotend <= 300,
            (Kind::Ender, File::Print { width, hotend, .. }) => *width <= 220 && *hotend <= 260,
            (Kind::Laser, File::Cut { width, power, .. }) => *width <= 400 && *power <= 1000,
            (Kind::Brodeuse, File::Design { width }) => {
                let (w, h) = (f64::from(*width), f64::from(*width) / 2.0);
                [(100.0, 100.0), (130.0, 180.0)]
                    .iter()
                    .any(|&(a, b)| (w <= a && h <= b) || (w <= b && h <= a))
            }
            _ => false,
        }
    }

    /// Whether it may start with nobody there.
    fn starts_by_itself(self) -> bool {
        self == Kind::Prusa
    }

    /// The training it needs, if any.
    fn training(self) -> Option<&'static str> {
        match self {
            Kind::Prusa | Kind::Ender => Some("Impression 3D"),
            Kind::Laser => Some("Laser"),
            Kind::Brodeuse => None,
        }
    }
}

/// The people: a manager, a trainer, and three members with their badges.
const MEMBERS: [(&str, &[&str]); 3] = [
    ("amina", &["Impression 3D"]),
    ("bruno", &["Laser"]),
    ("chloe", &[]),
];

#[derive(Debug, Clone)]
enum Op {
    Upload {
        owner: usize,
        file: File,
        target: Option<usize>,
    },
    Approve {
        job: usize,
    },
    Cancel {
        job: usize,
        by_manager: bool,
    },
    Requeue {
        job: usize,
        by_manager: bool,
    },
    /// A person at a machine: 0 the trainer, 1 the manager, 2 the job's owner.
    Start {
        job: usize,
        machine: usize,
        person: usize,
    },
    Plan,
    /// The manager marks a machine checked (idle again).
    Checked {
        machine: usize,
    },
}

fn file() -> impl Strategy<Value = File> {
    prop_oneof![
        4 => (prop::sample::select(vec![100u32, 215, 240, 300]), prop::sample::select(vec![210u32, 255, 290, 450]), prop::bool::weighted(0.3))
            .prop_map(|(width, hotend, eeprom)| File::Print { width, hotend, eeprom }),
        2 => (prop::sample::select(vec![200u32, 390, 450]), prop::sample::select(vec![500u32, 1200]), prop::bool::weighted(0.3))
            .prop_map(|(width, power, eeprom)| File::Cut { width, power, eeprom }),
        1 => prop::sample::select(vec![90u32, 150, 200]).prop_map(|width| File::Design { width }),
        1 => Just(File::Garbage),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..3usize, file(), proptest::option::weighted(0.4, 0..4usize))
            .prop_map(|(owner, file, target)| Op::Upload { owner, file, target }),
        3 => any::<usize>().prop_map(|job| Op::Approve { job }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(job, by_manager)| Op::Cancel { job, by_manager }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(job, by_manager)| Op::Requeue { job, by_manager }),
        5 => (any::<usize>(), 0..4usize, 0..3usize).prop_map(|(job, machine, person)| Op::Start { job, machine, person }),
        3 => Just(Op::Plan),
        2 => (0..4usize).prop_map(|machine| Op::Checked { machine }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn no_job_ever_starts_where_the_rule_forbids(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops));
    }
}

async fn user(lab: &Lab, name: &str, role: Role) -> User {
    let new = NewUser::parse(
        name,
        "",
        "",
        role,
        Lang::Fr,
        CredentialKind::Password,
        Secret::new("a long password"),
    )
    .unwrap();
    lab.create_user_unchecked(&new, now()).await.unwrap()
}

struct Sent {
    id: JobId,
    owner: usize,
    file: File,
    target: Option<usize>,
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new(
        Store::open(&fresh_database_url(dir.path()).await.unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    let manager = user(&lab, "nadia", Role::Manager).await;
    let trainer = user(&lab, "karim", Role::Trainer).await;
    let mut members = Vec::new();
    for (name, _) in MEMBERS {
        members.push(user(&lab, name, Role::Member).await);
    }
    // The lab is open all day, every day, and lets printers run unattended: the planner
    // would place any job now, whatever the hour the test runs at.
    let settings = fabrique_controller::domain::calendar::CalendarSettings {
        printers_unattended: true,
        opening_hours: std::array::from_fn(|_| vec![(0, 24 * 60)]),
        ..Default::default()
    };
    lab.set_calendar_settings(&manager, &settings)
        .await
        .unwrap();
    let nowhere = |name: &str| dir.path().join(name).display().to_string();
    let mut machines = Vec::new();
    for kind in MACHINES {
        let (machine_kind, connection, profile) = match kind {
            Kind::Prusa => (
                MachineKind::FdmPrinter,
                Connection::SerialMarlin {
                    port: nowhere("prusa"),
                    baud: 115_200,
                },
                MachineProfile::parse(["250", "210", "210"], "300", "120", "", "", "").unwrap(),
            ),
            Kind::Ender => (
                MachineKind::FdmPrinter,
                Connection::Manual,
                MachineProfile::parse(["220", "220", "250"], "260", "100", "", "", "").unwrap(),
            ),
            Kind::Laser => (
                MachineKind::LaserCutter,
                Connection::SerialGrbl {
                    port: nowhere("laser"),
                    baud: 115_200,
                },
                MachineProfile::parse(["400", "300", "0"], "", "", "1000", "", "").unwrap(),
            ),
            Kind::Brodeuse => (
                MachineKind::Embroidery,
                Connection::Manual,
                MachineProfile::parse(["0", "0", "0"], "", "", "", "100x100, 130x180", "").unwrap(),
            ),
        };
        let input =
            MachineInput::new(kind.name(), machine_kind, connection, profile, "", "").unwrap();
        let m = lab.create_machine(&manager, &input, now()).await.unwrap();
        lab.set_machine_state(&manager, m.id, MachineState::Idle, "", now())
            .await
            .unwrap();
        machines.push(m);
    }
    let mut trainings = HashMap::new();
    for name in ["Impression 3D", "Laser"] {
        let unlocks = MACHINES
            .iter()
            .zip(&machines)
            .filter(|(k, _)| k.training() == Some(name))
            .map(|(_, m)| m.id)
            .collect();
        let input = TrainingInput::parse(name, "", "24", "", unlocks).unwrap();
        let t = lab
            .save_training(&manager, None, &input, now())
            .await
            .unwrap();
        trainings.insert(name, t.id);
    }
    for (member, (_, badges)) in members.iter().zip(MEMBERS) {
        for badge in badges {
            lab.award_badge(&manager, member.id, trainings[badge], None, now())
                .await
                .unwrap();
        }
    }
    let jobs_dir = dir.path().join("jobs");
    std::fs::create_dir_all(&jobs_dir).unwrap();
    let runtime = Runtime::start(lab.clone(), jobs_dir.clone(), 30)
        .await
        .unwrap();

    let mut sent: Vec<Sent> = Vec::new();
    for (n, op) in ops.into_iter().enumerate() {
        let pick = |i: usize| (!sent.is_empty()).then(|| &sent[i % sent.len()]);
        match op {
            Op::Upload {
                owner,
                file,
                target,
            } => {
                let stored_name = format!("job-{n}-{}", file.name());
                let bytes = file.bytes();
                std::fs::write(jobs_dir.join(&stored_name), &bytes).unwrap();
                let new = NewJob {
                    owner: members[owner].id,
                    file_name: file.name().into(),
                    stored_name,
                    size_bytes: bytes.len() as i64,
                    sha256: "0".repeat(64),
                    target_machine: target.map(|t| machines[t].id),
                    target_kind: None,
                };
                let job = lab
                    .submit_job(&members[owner], &new, &jobs_dir, now())
                    .await
                    .unwrap();
                if matches!(file, File::Garbage) {
                    assert_eq!(job.state, JobState::Failed);
                }
                sent.push(Sent {
                    id: job.id,
                    owner,
                    file,
                    target,
                });
                runtime.wake();
            }
            Op::Approve { job } => {
                if let Some(s) = pick(job) {
                    let _refused_or_done = lab.approve_job(&manager, s.id, now()).await;
                }
            }
            Op::Cancel { job, by_manager } => {
                if let Some(s) = pick(job) {
                    let by = if by_manager {
                        &manager
                    } else {
                        &members[s.owner]
                    };
                    let _refused_or_done = lab.cancel_job(by, s.id, now()).await;
                }
            }
            Op::Requeue { job, by_manager } => {
                if let Some(s) = pick(job) {
                    let by = if by_manager {
                        &manager
                    } else {
                        &members[s.owner]
                    };
                    let requeued = lab.requeue_job(by, s.id, now()).await;
                    if matches!(s.file, File::Garbage) {
                        assert!(
                            requeued.is_err(),
                            "a file that cannot be read is never queued"
                        );
                    }
                }
            }
            Op::Start {
                job,
                machine,
                person,
            } => {
                if let Some(s) = pick(job) {
                    let by = [&trainer, &manager, &members[s.owner]][person];
                    let _refused_or_started =
                        runtime.start_job(machines[machine].id, s.id, by).await;
                }
            }
            Op::Plan => {
                runtime.plan_once().await.unwrap();
            }
            Op::Checked { machine } => {
                let m = machines[machine].id;
                let _refused_while_working = lab
                    .set_machine_state(&manager, m, MachineState::Idle, "", now())
                    .await;
                runtime.refresh(m).await;
            }
        }
    }
    // Every task ends: a job a machine took is then running, failed or ended.
    runtime.shutdown(Duration::from_secs(10)).await;

    // The verdict, from each job's history.
    let role_of = |name: &str| match name {
        "nadia" => Role::Manager,
        "karim" => Role::Trainer,
        _ => Role::Member,
    };
    for s in &sent {
        let events = lab.store().job_events(s.id).await.unwrap();
        let (owner_name, owner_badges) = MEMBERS[s.owner];
        let mut approval: Option<bool> = None;
        for e in &events {
            // A new run (submitted, or queued again after it ended) has no approval yet.
            if e.from.is_none_or(JobState::is_finished) && e.to != JobState::Running {
                approval = None;
            }
            if e.note.starts_with("approuvé") {
                approval = Some(e.note.contains("formateur"));
            }
            if e.to != JobState::Running || e.from != Some(JobState::Queued) {
                continue;
            }
            let machine = e.note.strip_prefix("sur ").unwrap_or_default();
            let kind = MACHINES
                .iter()
                .find(|k| k.name() == machine)
                .unwrap_or_else(|| panic!("a start on an unknown machine: {e:?}"));
            let history = format!("{owner_name}'s {:?} to {:?}: {events:#?}", s.file, s.target);
            assert!(
                kind.fits(&s.file),
                "started where it does not fit: {history}"
            );
            if let Some(t) = s.target {
                assert_eq!(
                    MACHINES[t], *kind,
                    "started on another machine than named: {history}"
                );
            }
            if s.file.has_findings() {
                assert!(
                    approval.is_some(),
                    "started with findings nobody approved: {history}"
                );
            }
            let starter = e.actor_name.as_deref().map(role_of);
            let trained = kind.training().is_none_or(|t| owner_badges.contains(&t));
            if !trained {
                assert_eq!(approval, Some(true), "started without the badge: {history}");
                assert!(
                    starter.is_some_and(|r| r.at_least(Role::Trainer)),
                    "a supervised run started by nobody at the machine: {history}"
                );
            }
            if !kind.starts_by_itself() {
                assert!(
                    starter.is_some(),
                    "started by itself on the {machine}: {history}"
                );
            }
        }
    }
}

#[test]
fn the_model_of_the_rule_agrees_with_the_files_it_writes() {
    // The files the property sends are what the model thinks they are.
    let print = File::Print {
        width: 240,
        hotend: 290,
        eeprom: true,
    };
    let text = String::from_utf8(print.bytes()).unwrap();
    assert!(text.contains("M104 S290") && text.contains("X240") && text.ends_with("M500\n"));
    assert!(Kind::Prusa.fits(&print) && !Kind::Ender.fits(&print));
    assert!(Kind::Brodeuse.fits(&File::Design { width: 150 }));
    assert!(!Kind::Brodeuse.fits(&File::Design { width: 200 }));
}
