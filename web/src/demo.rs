//! `fabrique serve --demo`: a small lab to look at. One account of each role, with a fresh
//! password printed at every start, six machines of different kinds, and a solidarity
//! campaign in progress.

use fabrique_controller::domain::machine::ConnectionKind;
use fabrique_controller::domain::{
    Connection, CredentialKind, Lang, MachineInput, MachineKind, MachineProfile, MachineState,
    NewUser, Role, Secret, UserPatch, Username,
};
use fabrique_controller::lab::now;
use fabrique_controller::{Lab, StoreError};

/// The demo accounts and their passwords, to print.
pub async fn seed(lab: &Lab) -> anyhow::Result<Vec<(String, Role, String)>> {
    let accounts = [
        ("admin", "Alex Admin", Role::Admin),
        ("manager", "Nadia (fab manager)", Role::Manager),
        ("trainer", "Karim (formateur)", Role::Trainer),
        ("member", "Josette", Role::Member),
    ];
    let mut printed = Vec::new();
    let at = now();
    for (username, name, role) in accounts {
        let password = format!(
            "demo-{}",
            &fabrique_controller::secrets::random_token()?[..12]
        );
        let secret = Secret::new(password.clone());
        let name_parsed = Username::parse(username)?;
        match lab.store().user_by_username(&name_parsed).await {
            Ok(existing) => {
                // The demo account exists from an earlier start: give it a fresh password
                // (as the command line does: recorded, and its API keys end with the old one).
                lab.reset_secret_unchecked(
                    existing.id,
                    CredentialKind::Password,
                    secret,
                    UserPatch {
                        disabled: Some(false),
                        ..UserPatch::default()
                    },
                    at,
                )
                .await?;
            }
            Err(StoreError::NotFound) => {
                let new = NewUser::parse(
                    username,
                    name,
                    "",
                    role,
                    Lang::Fr,
                    CredentialKind::Password,
                    secret,
                )?;
                lab.create_user_unchecked(&new, at).await?;
            }
            Err(e) => return Err(e.into()),
        }
        printed.push((username.to_string(), role, password));
    }
    let existing: Vec<String> = lab.machines().await?.into_iter().map(|m| m.name).collect();
    for (input, state, reason) in machines()? {
        if existing.contains(&input.name) {
            continue;
        }
        let id = lab.store().insert_machine(&input, state, at).await?;
        if !reason.is_empty() {
            lab.store().set_machine_state(id, state, reason, at).await?;
        }
    }
    seed_trainings(lab, at).await?;
    // The demo lab lets its printers finish jobs after closing time, so the sample job runs
    // whatever the hour.
    let admin = lab
        .store()
        .user_by_username(&Username::parse("admin")?)
        .await?;
    let mut settings = lab.calendar_settings().await?;
    settings.printers_unattended = true;
    lab.set_calendar_settings(&admin, &settings).await?;
    Ok(printed)
}

/// Trainings for the demo machines, a session next week, a badge for the member and a
/// booking, so that every page has something to show. Added once.
async fn seed_trainings(lab: &Lab, at: i64) -> anyhow::Result<()> {
    use fabrique_controller::domain::training::TrainingInput;
    if !lab.trainings().await?.is_empty() {
        return Ok(());
    }
    let machines = lab.machines().await?;
    let ids = |names: &[&str]| {
        machines
            .iter()
            .filter(|m| names.contains(&m.name.as_str()))
            .map(|m| m.id)
            .collect::<Vec<_>>()
    };
    let manager = lab
        .store()
        .user_by_username(&Username::parse("manager")?)
        .await?;
    let trainer = lab
        .store()
        .user_by_username(&Username::parse("trainer")?)
        .await?;
    let member = lab
        .store()
        .user_by_username(&Username::parse("member")?)
        .await?;
    let printing = TrainingInput::parse(
        "Impression 3D",
        "Préparer un fichier, lancer et surveiller une impression, nettoyer le plateau.",
        "24",
        "6",
        ids(&["Prusa MK3S", "Ender 3"]),
    )?;
    let printing = lab.save_training(&manager, None, &printing, at).await?;
    let laser = TrainingInput::parse(
        "Découpe laser",
        "Sécurité, réglages, découpe d'un porte-clés.",
        "12",
        "3",
        ids(&["Découpeuse laser"]),
    )?;
    let laser = lab.save_training(&manager, None, &laser, at).await?;
    let sewing = TrainingInput::parse("Broderie", "", "24", "", ids(&["Brodeuse Brother"]))?;
    lab.save_training(&manager, None, &sewing, at).await?;
    let settings = lab.calendar_settings().await?;
    let today = settings.local_date(jiff::Timestamp::now());
    let mut upcoming = (1..15)
        .filter_map(|d| today.checked_add(jiff::ToSpan::days(d)).ok())
        .flat_map(|d| settings.slots(d));
    if let Some((start, _)) = upcoming.next() {
        let end = jiff::Timestamp::from_second(start.as_second() + 2 * 3600)?;
        lab.create_session(&trainer, laser.id, start, end, None, 6, "Salle laser", at)
            .await?;
    }
    lab.award_badge(&trainer, member.id, printing.id, None, at)
        .await?;
    if let (Some((start, end)), Some(prusa)) = (upcoming.nth(3), ids(&["Prusa MK3S"]).first()) {
        lab.book(
            &manager,
            *prusa,
            member.id,
            start,
            end,
            false,
            "Porte-clés pour l'atelier seniors",
            at,
        )
        .await?;
    }
    Ok(())
}

fn machines() -> anyhow::Result<Vec<(MachineInput, MachineState, &'static str)>> {
    let printer = MachineProfile::parse(["250", "210", "210"], "300", "120", "", "", "PLA, PETG")?;
    let ender = MachineProfile::parse(["220", "220", "250"], "260", "100", "", "", "PLA")?;
    let laser = MachineProfile::parse(
        ["400", "400", ""],
        "",
        "",
        "1000",
        "",
        "contreplaqué 3 mm, PET, carton",
    )?;
    let embroidery = MachineProfile::parse(["", "", ""], "", "", "", "100x100, 130x180", "")?;
    let mill = MachineProfile::parse(["300", "180", "45"], "", "", "", "", "MDF, bois")?;
    let vinyl = MachineProfile::parse(["330", "1000", ""], "", "", "", "", "vinyle adhésif, flex")?;
    let serial = |kind, port: &str| Connection::parse(kind, port, "115200", "", "", None);
    Ok(vec![
        (
            MachineInput::new(
                "Prusa MK3S",
                MachineKind::FdmPrinter,
                serial(ConnectionKind::SerialMarlin, "/dev/ttyACM0")?,
                printer,
                "Atelier, table 1",
                "Impression 3D",
            )?,
            MachineState::Offline,
            "",
        ),
        (
            MachineInput::new(
                "Ender 3",
                MachineKind::FdmPrinter,
                Connection::Moonraker {
                    url: "http://ender.local".into(),
                },
                ender,
                "Atelier, table 2",
                "Impression 3D",
            )?,
            MachineState::Offline,
            "",
        ),
        (
            MachineInput::new(
                "Découpeuse laser",
                MachineKind::LaserCutter,
                serial(ConnectionKind::SerialGrbl, "/dev/ttyUSB0")?,
                laser,
                "Salle laser",
                "Découpe laser",
            )?,
            MachineState::Offline,
            "",
        ),
        (
            MachineInput::new(
                "Brodeuse Brother",
                MachineKind::Embroidery,
                Connection::Manual,
                embroidery,
                "Coin couture",
                "Broderie",
            )?,
            MachineState::ToCheck,
            "Canette à changer",
        ),
        (
            MachineInput::new(
                "Fraiseuse CNC",
                MachineKind::CncMill,
                serial(ConnectionKind::SerialGrbl, "/dev/ttyUSB1")?,
                mill,
                "Atelier bois",
                "Fraiseuse",
            )?,
            MachineState::Maintenance,
            "Fraise de 3 mm commandée",
        ),
        (
            MachineInput::new(
                "Plotter vinyle",
                MachineKind::VinylCutter,
                Connection::Manual,
                vinyl,
                "Atelier, table 3",
                "",
            )?,
            MachineState::Idle,
            "",
        ),
    ])
}

/// The demo's printer is a virtual Marlin on a pseudo-terminal in the data folder (moves
/// fifty times faster than real), so the board shows a job streaming for real; the laser a
/// virtual GRBL, the mill another in spindle mode (`$32=0`), the vinyl cutter a virtual
/// HP-GL cutter.
pub async fn start_machines(
    lab: &Lab,
    config: &crate::config::Config,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use fabrique_machines::sim::marlin::{SimConfig, VirtualPrinter};
    let dir = config.data_dir.join("sim");
    std::fs::create_dir_all(&dir)?;
    let link = dir.join("prusa-mk3s");
    let printer = VirtualPrinter::new(SimConfig {
        time_scale: 0.02,
        ..SimConfig::default()
    });
    let serve_at = link.clone();
    let printer_cancel = cancel.clone();
    tokio::spawn(async move {
        if let Err(e) = printer.run_at_path(&serve_at, printer_cancel).await {
            tracing::error!(error = %e, "virtual printer stopped");
        }
    });
    // The laser: a virtual GRBL; its job waits on the board for a person to press start.
    use fabrique_machines::sim::grbl as grbl_sim;
    let laser_link = dir.join("laser");
    let laser = grbl_sim::VirtualGrbl::new(grbl_sim::SimConfig {
        time_scale: 0.05,
        ..Default::default()
    });
    let serve_laser = laser_link.clone();
    let simulators_cancel = cancel.clone();
    tokio::spawn(async move {
        if let Err(e) =
            grbl_sim::serve_at(&serve_laser, laser, grbl_sim::LinkConfig::default(), cancel).await
        {
            tracing::error!(error = %e, "virtual laser stopped");
        }
    });
    // The mill: a virtual GRBL with a spindle, homed, the work origin on a 20 mm board.
    let mill_link = dir.join("mill");
    let mill = grbl_sim::VirtualGrbl::new(grbl_sim::SimConfig {
        time_scale: 0.05,
        work_offset: Some([-290.0, -170.0, -25.0]),
        settings: vec![
            (30, 24000.0),
            (32, 0.0),
            (130, 300.0),
            (131, 180.0),
            (132, 45.0),
        ],
        ..Default::default()
    });
    let serve_mill = mill_link.clone();
    let mill_cancel = simulators_cancel.clone();
    tokio::spawn(async move {
        if let Err(e) = grbl_sim::serve_at(
            &serve_mill,
            mill,
            grbl_sim::LinkConfig::default(),
            mill_cancel,
        )
        .await
        {
            tracing::error!(error = %e, "virtual mill stopped");
        }
    });
    // The vinyl cutter: a virtual HP-GL cutter with XON/XOFF at 9600 bauds.
    use fabrique_machines::sim::cutter as cutter_sim;
    let cutter_link = dir.join("plotter");
    let mut cutter_pty = grbl_sim::PtyLink::open_at(&cutter_link)?;
    let cutter_master = cutter_pty
        .take_master()
        .ok_or_else(|| anyhow::anyhow!("the cutter's pseudo-terminal has no master"))?;
    let cutter_cancel = simulators_cancel;
    tokio::spawn(async move {
        let cutter = cutter_sim::VirtualCutter::new(cutter_sim::SimConfig::default());
        cutter_sim::serve(cutter_master, cutter, cutter_cancel).await;
        drop(cutter_pty);
    });
    for _ in 0..50 {
        if link.exists() && laser_link.exists() && mill_link.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let at = now();
    let port = |path: &std::path::Path| path.display().to_string();
    let laser = Connection::SerialGrbl {
        port: port(&laser_link),
        baud: 115_200,
    };
    attach(lab, "Découpeuse laser", laser, at).await?;
    let prusa = Connection::SerialMarlin {
        port: port(&link),
        baud: 115_200,
    };
    attach(lab, "Prusa MK3S", prusa, at).await?;
    let connection = Connection::SerialHpgl {
        port: port(&cutter_link),
        baud: 9_600,
        hardware_flow: false,
    };
    attach(lab, "Plotter vinyle", connection, at).await?;
    let mill = Connection::SerialGrbl {
        port: port(&mill_link),
        baud: 115_200,
    };
    attach(lab, "Fraiseuse CNC", mill, at).await?;
    Ok(())
}

/// Points the seeded machine `name` at `connection` (a virtual machine's link), idle unless
/// a job runs on it or a manager put it out of service.
async fn attach(lab: &Lab, name: &str, connection: Connection, at: i64) -> anyhow::Result<()> {
    let Some(m) = lab.machines().await?.into_iter().find(|m| m.name == name) else {
        return Ok(());
    };
    let mut input = MachineInput::new(
        &m.name,
        m.kind,
        m.connection.clone(),
        m.profile.clone(),
        &m.location,
        &m.required_training,
    )?;
    input.connection = connection;
    lab.store().update_machine(m.id, &input, at).await?;
    if !matches!(
        m.state,
        MachineState::Busy | MachineState::Paused | MachineState::Maintenance
    ) {
        lab.store()
            .set_machine_state(m.id, MachineState::Idle, "", at)
            .await?;
    }
    Ok(())
}

/// A key ring for the seniors' workshop, sent by the member: the planner starts it on the
/// virtual printer and the board follows it. And a visor shield for the laser, which waits
/// on the board for a person to start it.
pub async fn submit_sample_job(lab: &Lab, config: &crate::config::Config) -> anyhow::Result<()> {
    let member = lab
        .store()
        .user_by_username(&Username::parse("member")?)
        .await?;
    let machines = lab.machines().await?;
    let prusa = machines
        .iter()
        .find(|m| m.name == "Prusa MK3S")
        .map(|m| m.id);
    let laser = machines
        .iter()
        .find(|m| m.name == "Découpeuse laser")
        .map(|m| m.id);
    let keychain: &[u8] = include_bytes!("../tests/data/mk3_keychain.gcode");
    let shield: &[u8] = include_bytes!("../tests/data/laser_shield.gcode");
    // Sent once: a later start on the same data folder finds them (run, or still waiting).
    let sent: Vec<String> = lab
        .jobs_for(&member)
        .await?
        .into_iter()
        .map(|j| j.file_name)
        .collect();
    for (machine, name, bytes) in [
        (prusa, "porte-cles-atelier-seniors.gcode", keychain),
        (laser, "ecran-visiere.gcode", shield),
    ] {
        if !sent.iter().any(|s| s == name) {
            submit(lab, config, &member, machine, name, bytes).await?;
        }
    }
    Ok(())
}

async fn submit(
    lab: &Lab,
    config: &crate::config::Config,
    member: &fabrique_controller::domain::User,
    machine: Option<fabrique_controller::domain::MachineId>,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let dir = config.jobs_dir();
    std::fs::create_dir_all(&dir)?;
    let stored_name = format!(
        "demo-{}.gcode",
        &fabrique_controller::secrets::random_token()?[..16]
    );
    let path = dir.join(&stored_name);
    std::fs::write(&path, bytes)?;
    let sha256: String = {
        use sha2::{Digest, Sha256};
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let new = fabrique_controller::store::NewJob {
        owner: member.id,
        file_name: name.to_string(),
        stored_name,
        size_bytes: i64::try_from(bytes.len())?,
        sha256,
        target_machine: machine,
        target_kind: None,
    };
    lab.submit_job(member, &new, &dir, now())
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

/// A solidarity campaign in progress: visors for a care home, with a validated model, a
/// bill of materials, requests, a maker's pledge and batches, donations, an assembly, a
/// delivery, and one print queued for the lab's printers. Added once.
pub async fn seed_campaign(lab: &Lab, config: &crate::config::Config) -> anyhow::Result<()> {
    use fabrique_controller::domain::campaign::{
        CampaignInput, CampaignState, DeliveryInput, ItemName, MaterialInput, PledgeInput,
        RequestInput,
    };
    let manager = lab
        .store()
        .user_by_username(&Username::parse("manager")?)
        .await?;
    if !lab.campaigns(Some(&manager)).await?.is_empty() {
        return Ok(());
    }
    let member = lab
        .store()
        .user_by_username(&Username::parse("member")?)
        .await?;
    let at = now();
    let input = CampaignInput::parse(
        "Visières pour l'EHPAD Les Tilleuls",
        ItemName::parse("visière", "visières", "feminine")?,
        "Les soignants de l'EHPAD et les commerçants du quartier ont besoin de visières.\n\
         Le bandeau est imprimé en 3D, l'écran est une feuille de PET, l'élastique la tient.",
        "PETG, couche de 0,3 mm, 3 périmètres, pas de support.",
        "300",
        "Accueil du centre social\nPharmacie du marché",
    )?;
    let campaign = lab.create_campaign(&manager, &input, at).await?.id;
    for (name, unit, per_item) in [("feuille PET", "pièce", "1"), ("élastique", "cm", "30")] {
        lab.add_material(
            &manager,
            campaign,
            &MaterialInput::parse(name, unit, per_item)?,
            at,
        )
        .await?;
    }
    // The validated model, analysed like any job file.
    let visor: &[u8] = include_bytes!("../../machines/tests/data/mk3_visor.gcode");
    let dir = config.jobs_dir();
    std::fs::create_dir_all(&dir)?;
    let stored_name = format!(
        "model-{}.gcode",
        &fabrique_controller::secrets::random_token()?[..16]
    );
    let path = dir.join(&stored_name);
    std::fs::write(&path, visor)?;
    let sha256: String = {
        use sha2::{Digest, Sha256};
        Sha256::digest(visor)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let analysed = path.clone();
    let analysis = tokio::task::spawn_blocking(move || {
        fabrique_controller::job_files::read(&analysed, "bandeau-visiere.gcode", None)
    })
    .await?
    .map_err(|reason| anyhow::anyhow!("demo visor: {reason}"))?
    .summary;
    let file = lab
        .add_campaign_file(
            &manager,
            campaign,
            "bandeau-visiere.gcode",
            &stored_name,
            &sha256,
            visor,
            &analysis,
            at,
        )
        .await?;
    lab.validate_campaign_file(
        &manager,
        campaign,
        file.id,
        "essayé par l'équipe soignante de l'EHPAD",
        1,
        at,
    )
    .await?;
    lab.set_campaign_state(&manager, campaign, CampaignState::Open, at)
        .await?;
    let settings = lab.calendar_settings().await?;
    let today = settings.local_date(jiff::Timestamp::now());
    let in_days = |n: i64| today.checked_add(jiff::ToSpan::days(n)).unwrap_or(today);
    for (organisation, kind, quantity, contact, phone) in [
        (
            "EHPAD Les Tilleuls",
            "care_home",
            "120",
            "Mme Martin",
            "04 78 00 00 01",
        ),
        (
            "Boulangerie du marché",
            "shop",
            "20",
            "M. Benali",
            "04 78 00 00 02",
        ),
    ] {
        let request = RequestInput::parse(
            organisation,
            kind,
            quantity,
            &in_days(7).to_string(),
            "12 rue des Lilas, accueil",
            contact,
            phone,
            "",
            today,
        )?;
        lab.submit_request(campaign, &request, "demo", at).await?;
    }
    let requests = lab.requests(&manager, campaign).await?;
    let care_home = requests
        .iter()
        .find(|r| r.organisation == "EHPAD Les Tilleuls")
        .map(|r| r.id)
        .ok_or_else(|| anyhow::anyhow!("demo request missing"))?;
    lab.accept_request(&manager, campaign, care_home, at)
        .await?;
    let pledge = PledgeInput::parse("40", &in_days(5).to_string(), "home")?;
    let pledge = lab.pledge(&member, campaign, &pledge, at).await?;
    let first = lab
        .declare_batch(&member, campaign, Some(pledge.id), 30, at)
        .await?;
    lab.drop_batch(&member, campaign, first.id, "Accueil du centre social", at)
        .await?;
    lab.receive_batch(&manager, campaign, first.id, 30, at)
        .await?;
    lab.check_batch(&manager, campaign, first.id, 28, "bandeau fendu", at)
        .await?;
    lab.declare_batch(&member, campaign, Some(pledge.id), 10, at)
        .await?;
    let materials = lab.materials(&manager, campaign).await?;
    for (material, donor, quantity) in [
        (&materials[0], "Pharmacie du marché", 100),
        (&materials[1], "Mercerie Dupont", 1500),
    ] {
        lab.record_donation(&manager, campaign, material.id, donor, quantity, at)
            .await?;
    }
    lab.assemble(&manager, campaign, 20, at).await?;
    let delivery = DeliveryInput::parse(care_home, "12", &today.to_string(), "Karim")?;
    lab.deliver(&manager, campaign, &delivery, at).await?;
    lab.queue_campaign_prints(&manager, campaign, file.id, 1, &dir, at)
        .await?;
    Ok(())
}
