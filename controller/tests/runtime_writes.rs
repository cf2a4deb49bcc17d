//! A job's state that the database will not take is never ignored: the machine is stopped
//! safe and the job marked with what happened. The database refuses for real (a trigger on
//! the SQLite file or the PostgreSQL database of the test), the printer is the virtual
//! Marlin on a pseudo-terminal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_controller::domain::job::{JobState, NewJob};
use fabrique_controller::domain::{
    Connection, CredentialKind, Lang, MachineInput, MachineKind, MachineProfile, MachineState,
    NewUser, Role, Secret,
};
use fabrique_controller::lab::now;
use fabrique_controller::runtime::{Command, Live, Runtime};
use fabrique_controller::testing::{fresh_database_url, on_postgres};
use fabrique_controller::{Lab, Store};
use fabrique_machines::sim::marlin::{SimConfig, VirtualPrinter};
use sqlx::Connection as _;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Makes the database refuse any write that pauses a job, as a full disk would.
async fn refuse_pauses(url: &str) {
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(url).await.unwrap();
    let statements: &[&str] = if on_postgres() {
        &[
            "CREATE FUNCTION refuse_pause() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_pause BEFORE UPDATE ON jobs FOR EACH ROW WHEN (NEW.state = 'paused') EXECUTE FUNCTION refuse_pause()",
        ]
    } else {
        &[
            "CREATE TRIGGER refuse_pause BEFORE UPDATE ON jobs WHEN NEW.state = 'paused' BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        ]
    };
    for sql in statements {
        sqlx::query(sql).execute(&mut db).await.unwrap();
    }
    db.close().await.unwrap();
}

/// Waits for the runtime to show `machine` as `seen` says, at most a minute.
async fn reaches(runtime: &Runtime, machine: i64, seen: impl Fn(&Live) -> bool) {
    let mut events = runtime.subscribe();
    let wait = async {
        while !runtime
            .live()
            .iter()
            .any(|l| l.machine == machine && seen(l))
        {
            let _ = events.recv().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("never reached: {:?}", runtime.live()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_the_database_refuses_stops_the_printer_safe_and_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await.unwrap();
    let lab = Lab::new(Store::open(&url).await.unwrap()).unwrap();
    let new_user = |name: &str, role| {
        NewUser::parse(
            name,
            "",
            "",
            role,
            Lang::Fr,
            CredentialKind::Password,
            Secret::new("a long password"),
        )
        .unwrap()
    };
    let manager = lab
        .create_user_unchecked(&new_user("nadia", Role::Manager), now())
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let printer = VirtualPrinter::new(SimConfig::default());
    let link = dir.path().join("prusa");
    let (served, at, cancel) = (printer.clone(), link.clone(), stop.clone());
    tokio::spawn(async move { served.run_at_path(&at, cancel).await });
    while !link.exists() {
        tokio::task::yield_now().await;
    }
    let input = MachineInput::new(
        "Prusa",
        MachineKind::FdmPrinter,
        Connection::SerialMarlin {
            port: link.display().to_string(),
            baud: 115_200,
        },
        MachineProfile::parse(["250", "210", "210"], "300", "120", "", "", "").unwrap(),
        "",
        "",
    )
    .unwrap();
    let prusa = lab.create_machine(&manager, &input, now()).await.unwrap();
    lab.set_machine_state(&manager, prusa.id, MachineState::Idle, "", now())
        .await
        .unwrap();
    let jobs_dir = dir.path().join("jobs");
    std::fs::create_dir_all(&jobs_dir).unwrap();
    // Short moves at real speed (half a second each): the print is still going when it
    // is paused, and what the printer has planned ends within seconds of a cancel.
    let mut text = String::from("M104 S200\nM140 S60\nG28\nG1 Z0.2 F600\n");
    for i in 0..1000 {
        text.push_str(&format!("G1 X{} Y5 E{} F600\n", 5 * (i % 2), i));
    }
    std::fs::write(jobs_dir.join("long.gcode"), &text).unwrap();
    let new = NewJob {
        owner: manager.id,
        file_name: "long.gcode".into(),
        stored_name: "long.gcode".into(),
        size_bytes: text.len() as i64,
        sha256: "0".repeat(64),
        target_machine: Some(prusa.id),
        target_kind: None,
    };
    let job = lab
        .submit_job(&manager, &new, &jobs_dir, now())
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Queued);
    let runtime = Runtime::start(lab.clone(), jobs_dir, 30).await.unwrap();
    runtime.start_job(prusa.id, job.id, &manager).await.unwrap();
    // The printer reports its nozzle heating: it is really printing.
    reaches(&runtime, prusa.id.0, |l| {
        l.hotend.is_some_and(|(_, target)| target == Some(200.0))
    })
    .await;
    assert_eq!(printer.state().hotend.target, 200.0);

    refuse_pauses(&url).await;
    runtime.control(prusa.id, Command::Pause).await.unwrap();
    reaches(&runtime, prusa.id.0, |l| l.state == MachineState::Error).await;

    let job = lab.store().job(job.id).await.unwrap();
    assert_eq!(job.state, JobState::Failed, "{}", job.state_reason);
    assert!(
        job.state_reason.contains("n'a pas pu être enregistré"),
        "{}",
        job.state_reason
    );
    let events = lab.store().job_events(job.id).await.unwrap();
    assert!(events.iter().all(|e| e.to != JobState::Paused));
    let safe = printer.state();
    assert_eq!(
        (safe.hotend.target, safe.bed.target),
        (0.0, 0.0),
        "heaters off"
    );
    runtime.shutdown(Duration::from_secs(5)).await;
    stop.cancel();
}
