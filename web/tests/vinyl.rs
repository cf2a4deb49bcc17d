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

    let profile = MachineProfile::parse(["2000", "600", ""], "", "", "", "", "").unwrap();
    let (machine, stop, served, _pty) = cutter(&app, &manager, profile).await;

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
    let done = start_and_wait(&app, &machine, job.id).await;
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

/// An SVG drawing sent through the web form for the cutter: Fabrique keeps the HP-GL it
/// follows (`logo.plt`), read with the cutter's profile (its speed, its roll's width); a
/// drawing with text, one that is not SVG and one with nothing to cut are refused in words,
/// and nothing of them stays.
#[tokio::test]
async fn a_member_sends_a_drawing_and_the_cutter_gets_its_hpgl() {
    use reqwest::multipart::{Form, Part};
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    // A roll 300 mm wide, cutting at 100 mm/s.
    let profile = MachineProfile::parse(["0", "300", ""], "", "", "", "", "")
        .unwrap()
        .with_speeds("100", "", "")
        .unwrap();
    let input = MachineInput::new(
        "Plotter vinyle",
        MachineKind::VinylCutter,
        Connection::Manual,
        profile,
        "",
        "",
    )
    .unwrap();
    let machine = app.add_idle_machine(&manager, &input).await;
    let (maker, _) = app.signed_in("amina", Role::Member).await;
    let send = |name: &'static str, body: &'static str| {
        let (app, maker) = (&app, &maker);
        async move {
            let token = app.page_csrf(maker, "/jobs").await;
            let form = Form::new()
                .text("machine_id", machine.id.0.to_string())
                .part(
                    "file",
                    Part::bytes(body.as_bytes().to_vec())
                        .file_name(name)
                        .mime_str("image/svg+xml")
                        .unwrap(),
                );
            maker
                .post(app.url(&format!("/jobs?csrf_token={token}")))
                .multipart(form)
                .send()
                .await
                .unwrap()
        }
    };
    let logo = r#"<svg xmlns="http://www.w3.org/2000/svg" width="100mm" height="50mm" viewBox="0 0 100 50">
        <circle cx="25" cy="25" r="20" fill="black"/><rect x="60" y="10" width="30" height="30" fill="none" stroke="black"/></svg>"#;
    let response = send("logo.svg", logo).await;
    assert_eq!(response.status(), 303);
    let jobs = app
        .lab
        .store()
        .jobs_in_state(&[JobState::Queued])
        .await
        .unwrap();
    let job = jobs
        .iter()
        .find(|j| j.file_name == "logo.plt")
        .expect("the HP-GL job");
    let Some(fabrique_machines::files::FileSummary::Hpgl(cut)) = &job.analysis else {
        panic!("{:?}", job.analysis);
    };
    assert!((cut.width_mm - 85.0).abs() < 0.1, "{}", cut.width_mm);
    assert!(cut.speeds_cm_s.is_empty(), "the drawing sets no speed");
    let fit = cut.media_fit.as_ref().expect("the roll from the profile");
    assert_eq!(fit.media.width_mm, 300.0);
    assert!(fit.fits);
    // At 10 cm/s (the profile) rather than the default 20: the cut takes twice as long.
    let at_default = fabrique_machines::files::hpgl::CutterSettings::default().cut_speed_cm_s;
    assert!(
        cut.time.cutting_s > cut.cut_mm / (at_default * 10.0) * 1.9,
        "{:?}",
        cut.time
    );
    let stored = std::fs::read_to_string(app.jobs_dir().join(&job.stored_name)).unwrap();
    assert!(stored.starts_with("IN;"), "{stored}");
    let drawing = job.stored_name.replace(".plt", ".svg");
    assert!(
        !app.jobs_dir().join(drawing).exists(),
        "the drawing itself is not kept"
    );

    for (name, body, says) in [
        (
            "nom.svg",
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="50mm" height="20mm"><rect width="10" height="10"/><text x="0" y="15">Amina</text></svg>"#,
            "Objet en chemin",
        ),
        (
            "faux.svg",
            "GIF89a not a drawing",
            "pas un dessin SVG lisible",
        ),
        (
            "vide.svg",
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="50mm" height="20mm"></svg>"#,
            "aucun tracé à découper",
        ),
    ] {
        let response = send(name, body).await;
        assert_eq!(response.status(), 422, "{name}");
        let html = common::unescaped(&response.text().await.unwrap());
        assert!(html.contains(says), "{name}: {html}");
    }
    let files = std::fs::read_dir(app.jobs_dir()).unwrap().count();
    assert_eq!(
        files, 2,
        "the one job's file and its preview, nothing of the refused ones"
    );
}

/// A vinyl cutter with `profile` on the project's virtual cutter behind a pseudo-terminal,
/// idle, its task told; the cutter runs until `stop` is cancelled.
async fn cutter(
    app: &common::TestApp,
    manager: &fabrique_controller::domain::User,
    profile: MachineProfile,
) -> (
    fabrique_controller::domain::Machine,
    CancellationToken,
    tokio::task::JoinHandle<VirtualCutter>,
    PtyLink,
) {
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
    let machine = app.add_idle_machine(manager, &input).await;
    app.runtime.refresh(machine.id).await;
    (machine, stop, served, pty)
}

/// A trainer presses "Démarrer" on the board; returns the job once it ended.
async fn start_and_wait(
    app: &common::TestApp,
    machine: &fabrique_controller::domain::Machine,
    job: fabrique_controller::domain::job::JobId,
) -> fabrique_controller::domain::job::Job {
    let (board, _) = app.signed_in("karim", Role::Trainer).await;
    let token = app.page_csrf(&board, "/board").await;
    let response = board
        .post(app.url(&format!("/board/{}/start", machine.id.0)))
        .form(&[("csrf_token", token), ("job", job.0.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let j = app.lab.store().job(job).await.unwrap();
        if !matches!(j.state, JobState::Queued | JobState::Running) {
            return j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cut never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cutter wired one way (its profile says so) is never asked `OA;`: the job ends with
/// its last byte sent instead of failing as silent.
#[tokio::test]
async fn a_one_way_cutter_is_not_asked_where_it_stands() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let profile = MachineProfile::parse(["2000", "600", ""], "", "", "", "", "")
        .unwrap()
        .with_cutting("", true)
        .unwrap();
    let (machine, stop, served, _pty) = cutter(&app, &manager, profile).await;
    let job = app
        .submit_file(
            &manager,
            Some(machine.id),
            "carre.plt",
            b"IN;SP1;PU400,400;PD1200,400,1200,1200,400,1200,400,400;PU0,0;SP0;",
        )
        .await;
    let done = start_and_wait(&app, &machine, job.id).await;
    assert_eq!(done.state, JobState::Done, "{}", done.state_reason);
    stop.cancel();
    let sim = served.await.unwrap();
    assert!(
        sim.records()
            .iter()
            .all(|r| !matches!(r, Record::Instruction(i) if i.starts_with("OA"))),
        "{:?}",
        sim.records()
    );
}
