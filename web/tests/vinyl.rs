//! A vinyl cutter driven by Fabrique: an HP-GL file sent for it waits for a person (who
//! loads the media), is started from the board, streamed to the project's virtual cutter
//! on a pseudo-terminal through its XON/XOFF holds, and is done only once the cutter
//! answered the last question.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::spawn_app;
use fabrique_controller::domain::job::JobState;
use fabrique_controller::domain::{
    Connection, MachineInput, MachineKind, MachineProfile, MachineState, Role,
};
use fabrique_machines::sim::cutter::{Faults, Record, SimConfig, VirtualCutter, serve};
use fabrique_machines::sim::grbl::PtyLink;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_sticker_is_cut_on_the_vinyl_cutter_from_the_board_through_its_flow_control() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;

    let link = app.dir.path().join("cutter");
    let mut pty = PtyLink::open_at(&link).unwrap();
    let master = pty.take_master().unwrap();
    let stop = CancellationToken::new();
    // A small buffer, so the job goes through several XOFF holds.
    let cutter = VirtualCutter::new(SimConfig {
        buffer: 1024,
        xoff_at: 256,
        xon_at: 64,
        byte_time: Duration::from_micros(500),
        faults: Faults::default(),
    });
    let served = tokio::spawn(serve(master, cutter, stop.clone()));
    let profile = MachineProfile::parse(["2000", "600", ""], "", "", "", "", "").unwrap();
    let input = MachineInput::new(
        "Plotter vinyle",
        MachineKind::VinylCutter,
        Connection::SerialHpgl {
            port: link.display().to_string(),
            baud: 115_200,
            hardware_flow: false,
        },
        profile,
        "",
        "",
    )
    .unwrap();
    let machine = app.add_idle_machine(&manager, &input).await;
    app.runtime.refresh(machine.id).await;

    // A sticker: 40 squares of 20 mm, as a cutter's software writes them.
    let mut plt = String::from("IN;SP1;VS20;");
    for i in 0..40 {
        let (x, y) = (400 + (i % 10) * 1000, 400 + (i / 10) * 1000);
        plt.push_str(&format!(
            "PU{x},{y};PD{},{y},{},{},{x},{},{x},{y};",
            x + 800,
            x + 800,
            y + 800,
            y + 800
        ));
    }
    plt.push_str("PU0,0;SP0;");
    let job = app
        .submit_file(&maker, Some(machine.id), "stickers.plt", plt.as_bytes())
        .await;
    assert_eq!(job.state, JobState::Queued, "{}", job.state_reason);
    // The planner never starts a cutter: a person loads the media, then starts.
    app.runtime.plan_once().await.unwrap();
    assert_eq!(
        app.lab.store().job(job.id).await.unwrap().state,
        JobState::Queued
    );
    let (board, _) = app.signed_in("karim", Role::Trainer).await;
    let token = app.page_csrf(&board, "/board").await;
    let response = board
        .post(app.url(&format!("/board/{}/start", machine.id.0)))
        .form(&[("csrf_token", token), ("job", job.id.0.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let j = app.lab.store().job(job.id).await.unwrap();
        if !matches!(j.state, JobState::Queued | JobState::Running) {
            break j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cut never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.state, JobState::Done, "{}", done.state_reason);
    assert_eq!(
        app.lab.store().machine(machine.id).await.unwrap().state,
        MachineState::ToCheck
    );
    stop.cancel();
    let sim = served.await.unwrap();
    let cut: Vec<&str> = sim
        .records()
        .iter()
        .filter_map(|r| match r {
            Record::Instruction(i) if i.starts_with("PD") => Some(i.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(cut.len(), 40, "every square, in order: {cut:?}");
    assert_eq!(cut[0], "PD1200,400,1200,1200,400,1200,400,400");
    assert!(
        sim.records().iter().any(|r| matches!(r, Record::Xoff)),
        "the cutter held the flow at least once"
    );
    assert!(
        sim.records()
            .iter()
            .all(|r| !matches!(r, Record::Overflow(_)))
    );
}
