//! Trainings, badges and bookings over HTTP: every refusal has its code, the database keeps
//! one booking per slot under 50 simultaneous requests, the feeds parse with an independent
//! iCalendar parser, and the badge is an Open Badges 3.0 credential.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, client, spawn_app};
use fabrique_controller::domain::calendar::CalendarSettings;
use fabrique_controller::domain::training::TrainingInput;
use fabrique_controller::domain::{MachineId, MachineState, Role, User};
use fabrique_controller::lab::now;
use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Open every day 08:00-20:00 UTC, 30-minute slots: tests pick any future slot.
fn open_settings() -> CalendarSettings {
    let day = vec![(8 * 60, 20 * 60)];
    CalendarSettings {
        timezone: "UTC".into(),
        opening_hours: [
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day,
        ],
        ..CalendarSettings::default()
    }
}

/// Tomorrow (UTC) at `hh:mm`, as RFC 3339.
fn tomorrow(hh: i64, mm: i64) -> String {
    let day = now() / 86_400 + 1;
    Timestamp::from_second(day * 86_400 + hh * 3600 + mm * 60)
        .unwrap()
        .to_string()
}

fn in_days(days: i64, hh: i64) -> String {
    let day = now() / 86_400 + days;
    Timestamp::from_second(day * 86_400 + hh * 3600)
        .unwrap()
        .to_string()
}

struct Lab {
    app: TestApp,
    manager: User,
    machine: i64,
    training: i64,
}

/// A lab with a laser that the "Découpe laser" training unlocks.
async fn lab() -> Lab {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    app.lab
        .set_calendar_settings(&manager, &open_settings())
        .await
        .unwrap();
    let input = fabrique_controller::domain::MachineInput::new(
        "Découpeuse laser",
        fabrique_controller::domain::MachineKind::LaserCutter,
        fabrique_controller::domain::Connection::Manual,
        Default::default(),
        "Salle laser",
        "",
    )
    .unwrap();
    let machine = app
        .lab
        .create_machine(&manager, &input, now())
        .await
        .unwrap();
    let training = TrainingInput::parse("Découpe laser", "", "24", "", vec![machine.id]).unwrap();
    let training = app
        .lab
        .save_training(&manager, None, &training, now())
        .await
        .unwrap();
    Lab {
        app,
        manager,
        machine: machine.id.0,
        training: training.id.0,
    }
}

impl Lab {
    /// A member with an API key, with or without the laser badge.
    async fn member(&self, name: &str, badge: bool) -> (User, String) {
        let user = self.app.add_user(name, Role::Member).await;
        if badge {
            let training = fabrique_controller::domain::training::TrainingId(self.training);
            self.app
                .lab
                .award_badge(&self.manager, user.id, training, None, now())
                .await
                .unwrap();
        }
        let key = self
            .app
            .lab
            .create_api_key(&user, "test", now())
            .await
            .unwrap();
        (user, key)
    }

    async fn book(&self, key: &str, start: &str, end: &str, extra: Value) -> (StatusCode, Value) {
        let mut body = json!({"machine_id": self.machine, "start": start, "end": end});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let response = client()
            .post(self.app.url("/api/v1/bookings"))
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn settings(&self, change: impl FnOnce(&mut CalendarSettings)) {
        let mut settings = open_settings();
        change(&mut settings);
        self.app
            .lab
            .set_calendar_settings(&self.manager, &settings)
            .await
            .unwrap();
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_member_with_the_badge_books_a_free_slot() {
    let lab = lab().await;
    let (member, key) = lab.member("josette", true).await;
    let (status, body) = lab
        .book(
            &key,
            &tomorrow(14, 0),
            &tomorrow(15, 0),
            json!({"note": "porte-clés"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["member_id"], member.id.0);
    assert_eq!(body["status"], "booked");
    // Another member sees the slot taken, without the name.
    let (_, other) = lab.member("karim", true).await;
    let url = lab.app.url(&format!(
        "/api/v1/machines/{}/bookings?from={}&to={}",
        lab.machine,
        tomorrow(0, 0),
        tomorrow(23, 0)
    ));
    let list: Value = client()
        .get(&url)
        .header("x-api-key", &other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["member_name"], Value::Null);
    assert_eq!(list[0]["note"], "");
    let mine: Value = client()
        .get(&url)
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine[0]["member_name"], member.display_name.as_str());
}

#[tokio::test]
async fn refusal_badge_required() {
    let lab = lab().await;
    let (_, key) = lab.member("josette", false).await;
    let (status, body) = lab
        .book(&key, &tomorrow(14, 0), &tomorrow(15, 0), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (403, "badge_required"));
    assert_eq!(
        body["error"]["message"],
        "Vous n'avez pas encore le badge Découpe laser. Inscrivez-vous à une formation, ou réservez un créneau accompagné d'un formateur."
    );
    // A supervised slot is allowed by default, and refused when the lab says so.
    let (status, body) = lab
        .book(
            &key,
            &tomorrow(14, 0),
            &tomorrow(15, 0),
            json!({"supervised": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["supervised"], true);
    lab.settings(|s| s.supervised_without_badge = false).await;
    let (status, body) = lab
        .book(
            &key,
            &tomorrow(16, 0),
            &tomorrow(17, 0),
            json!({"supervised": true}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (403, "supervision_not_allowed")
    );
}

#[tokio::test]
async fn refusal_slot_taken() {
    let lab = lab().await;
    let (_, a) = lab.member("amina", true).await;
    let (_, b) = lab.member("bruno", true).await;
    assert_eq!(
        lab.book(&a, &tomorrow(14, 0), &tomorrow(15, 0), json!({}))
            .await
            .0,
        201
    );
    let (status, body) = lab
        .book(&b, &tomorrow(14, 30), &tomorrow(15, 30), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (409, "slot_taken"));
    assert_eq!(
        body["error"]["message"],
        "Ce créneau est déjà réservé. Choisissez-en un autre."
    );
    // Touching ends are not an overlap.
    assert_eq!(
        lab.book(&b, &tomorrow(15, 0), &tomorrow(16, 0), json!({}))
            .await
            .0,
        201
    );
}

#[tokio::test]
async fn refusal_outside_opening_hours_and_lab_closed() {
    let lab = lab().await;
    let (_, key) = lab.member("josette", true).await;
    let (status, body) = lab
        .book(&key, &tomorrow(6, 0), &tomorrow(7, 0), json!({}))
        .await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (422, "outside_opening_hours")
    );
    // Starting while open and ending after the close is a length to shorten.
    let (status, body) = lab
        .book(&key, &tomorrow(19, 30), &tomorrow(20, 30), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (422, "past_closing"));
    let date = jiff::Timestamp::from_second((now() / 86_400 + 1) * 86_400)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    lab.settings(|s| s.closures = vec![date]).await;
    let (status, body) = lab
        .book(&key, &tomorrow(14, 0), &tomorrow(15, 0), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (422, "lab_closed"));
}

#[tokio::test]
async fn refusal_beyond_horizon_in_the_past_too_long_and_off_grid() {
    let lab = lab().await;
    let (_, key) = lab.member("josette", true).await;
    let (status, body) = lab
        .book(&key, &in_days(20, 14), &in_days(20, 15), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (422, "beyond_horizon"));
    assert_eq!(
        body["error"]["message"],
        "Réservation possible jusqu'à 14 jours à l'avance."
    );
    let (status, body) = lab
        .book(&key, &in_days(-1, 14), &in_days(-1, 15), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (422, "in_the_past"));
    let (status, body) = lab
        .book(&key, &tomorrow(9, 0), &tomorrow(13, 0), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (422, "too_long"));
    let (status, body) = lab
        .book(&key, &tomorrow(9, 10), &tomorrow(9, 40), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (422, "not_on_slot_grid"));
    let (status, body) = lab
        .book(&key, &tomorrow(10, 0), &tomorrow(9, 0), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (422, "invalid_range"));
    let (status, body) = lab
        .book(&key, "tomorrow at two", &tomorrow(9, 0), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (422, "invalid_input"));
}

#[tokio::test]
async fn refusal_too_many_bookings_and_machine_unavailable() {
    let lab = lab().await;
    let (_, key) = lab.member("josette", true).await;
    for hour in 8..12 {
        assert_eq!(
            lab.book(&key, &tomorrow(hour, 0), &tomorrow(hour, 30), json!({}))
                .await
                .0,
            201
        );
    }
    let (status, body) = lab
        .book(&key, &tomorrow(13, 0), &tomorrow(13, 30), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (422, "too_many_bookings"));
    let (_, other) = lab.member("karim", true).await;
    lab.app
        .lab
        .set_machine_state(
            &lab.manager,
            MachineId(lab.machine),
            MachineState::Maintenance,
            "lentille",
            now(),
        )
        .await
        .unwrap();
    let (status, body) = lab
        .book(&other, &tomorrow(14, 0), &tomorrow(15, 0), json!({}))
        .await;
    assert_eq!((status.as_u16(), code(&body)), (409, "machine_unavailable"));
}

#[tokio::test]
async fn refusal_cancel_deadline_passed_and_cancelling_frees_the_slot() {
    let lab = lab().await;
    let (_, key) = lab.member("josette", true).await;
    let (_, body) = lab
        .book(&key, &tomorrow(14, 0), &tomorrow(15, 0), json!({}))
        .await;
    let id = body["id"].as_i64().unwrap();
    let response = client()
        .delete(lab.app.url(&format!("/api/v1/bookings/{id}")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, other) = lab.member("karim", true).await;
    assert_eq!(
        lab.book(&other, &tomorrow(14, 0), &tomorrow(15, 0), json!({}))
            .await
            .0,
        201,
        "the cancelled slot is free again"
    );

    // With a deadline of 48 h, tomorrow's booking can no longer be cancelled online.
    lab.settings(|s| s.cancel_deadline_hours = 48).await;
    let (_, body) = lab
        .book(&key, &tomorrow(16, 0), &tomorrow(17, 0), json!({}))
        .await;
    let id = body["id"].as_i64().unwrap();
    let response = client()
        .delete(lab.app.url(&format!("/api/v1/bookings/{id}")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "cancel_deadline_passed");
}

#[tokio::test]
async fn managers_book_for_members_and_block_slots() {
    let lab = lab().await;
    let manager_key = lab
        .app
        .lab
        .create_api_key(&lab.manager, "m", now())
        .await
        .unwrap();
    let (member, member_key) = lab.member("josette", false).await;
    let (status, body) = lab
        .book(
            &manager_key,
            &tomorrow(14, 0),
            &tomorrow(15, 0),
            json!({"member_id": member.id.0}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let response = client()
        .post(lab.app.url("/api/v1/blocks"))
        .header("x-api-key", &manager_key)
        .json(&json!({"machine_id": lab.machine, "start": tomorrow(16, 0), "end": tomorrow(18, 0), "note": "atelier collège"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let (status, body) = lab
        .book(
            &member_key,
            &tomorrow(17, 0),
            &tomorrow(17, 30),
            json!({"supervised": true}),
        )
        .await;
    assert_eq!((status.as_u16(), code(&body)), (409, "slot_taken"));
    // A member cannot book for someone else, nor block.
    let (status, _) = lab
        .book(
            &member_key,
            &tomorrow(9, 0),
            &tomorrow(9, 30),
            json!({"member_id": lab.manager.id.0, "supervised": true}),
        )
        .await;
    assert_eq!(status, 403);
}

/// 50 members ask for the same slot at the same moment: exactly one gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_simultaneous_requests_for_one_slot_give_one_booking() {
    let lab = lab().await;
    let mut keys = Vec::new();
    for i in 0..50 {
        keys.push(lab.member(&format!("member-{i:02}"), true).await.1);
    }
    let body = json!({"machine_id": lab.machine, "start": tomorrow(14, 0), "end": tomorrow(15, 0)});
    let url = lab.app.url("/api/v1/bookings");
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for key in keys {
        let (url, body, barrier) = (url.clone(), body.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            barrier.wait().await;
            let response = c
                .post(url)
                .header("x-api-key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_string(),
            )
        }));
    }
    let mut created = 0;
    let mut taken = 0;
    for task in tasks {
        match task.await.unwrap() {
            (201, _) => created += 1,
            (409, code) if code == "slot_taken" => taken += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((created, taken), (1, 49));
    let bookings = lab
        .app
        .lab
        .bookings_between(
            Some(MachineId(lab.machine)),
            Timestamp::from_second(0).unwrap(),
            Timestamp::from_second(now() + 10 * 86_400).unwrap(),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(bookings.len(), 1);
}

#[tokio::test]
async fn trainings_sessions_waiting_list_and_badges() {
    let lab = lab().await;
    let trainer = lab.app.add_user("karim", Role::Trainer).await;
    let trainer_key = lab
        .app
        .lab
        .create_api_key(&trainer, "t", now())
        .await
        .unwrap();
    let response = client()
        .post(lab.app.url(&format!("/api/v1/trainings/{}/sessions", lab.training)))
        .header("x-api-key", &trainer_key)
        .json(&json!({"start": tomorrow(14, 0), "end": tomorrow(16, 0), "capacity": 1, "location": "Salle laser"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let session: Value = response.json().await.unwrap();
    let sid = session["id"].as_i64().unwrap();
    let (amina, a) = lab.member("amina", false).await;
    let (bruno, b) = lab.member("bruno", false).await;
    let enrol = |key: String| {
        let url = lab.app.url(&format!("/api/v1/sessions/{sid}/enrolments"));
        async move {
            client()
                .post(url)
                .header("x-api-key", key)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(enrol(a.clone()).await["status"], "enrolled");
    assert_eq!(enrol(b.clone()).await["status"], "waiting");
    // A manager enrols someone else (a member cannot).
    let (carla, _) = lab.member("carla", false).await;
    let for_carla = json!({"member_id": carla.id.0});
    let url = lab.app.url(&format!("/api/v1/sessions/{sid}/enrolments"));
    let response = client()
        .post(&url)
        .header("x-api-key", &a)
        .json(&for_carla)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let manager_key = lab
        .app
        .lab
        .create_api_key(&lab.manager, "m", now())
        .await
        .unwrap();
    let response = client()
        .post(&url)
        .header("x-api-key", &manager_key)
        .json(&for_carla)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "waiting");
    // Amina cancels: Bruno takes the place.
    let promoted = lab
        .app
        .lab
        .cancel_enrolment(
            &amina,
            fabrique_controller::domain::training::SessionId(sid),
            amina.id,
        )
        .await
        .unwrap();
    assert_eq!(promoted, Some(bruno.id));
    // Attendance does not give the badge; the trainer does.
    let response = client()
        .put(
            lab.app
                .url(&format!("/api/v1/sessions/{sid}/attendance/{}", bruno.id.0)),
        )
        .header("x-api-key", &trainer_key)
        .json(&json!({"attended": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        lab.book(&b, &tomorrow(17, 0), &tomorrow(17, 30), json!({}))
            .await
            .0,
        403
    );
    // A member cannot award badges.
    let award = json!({"member_id": bruno.id.0, "training_id": lab.training, "session_id": sid});
    let response = client()
        .post(lab.app.url("/api/v1/badges"))
        .header("x-api-key", &b)
        .json(&award)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = client()
        .post(lab.app.url("/api/v1/badges"))
        .header("x-api-key", &trainer_key)
        .json(&award)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let badge: Value = response.json().await.unwrap();
    assert_eq!(badge["status"], "valid");
    assert_eq!(
        lab.book(&b, &tomorrow(17, 0), &tomorrow(17, 30), json!({}))
            .await
            .0,
        201
    );

    // Revoked with a reason: the badge no longer opens the machine.
    let response = client()
        .post(
            lab.app
                .url(&format!("/api/v1/badges/{}/revoke", badge["id"])),
        )
        .header("x-api-key", &trainer_key)
        .json(&json!({"reason": "consignes de sécurité non respectées"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        lab.book(&b, &tomorrow(18, 0), &tomorrow(18, 30), json!({}))
            .await
            .0,
        403
    );
    let mine: Value = client()
        .get(lab.app.url("/api/v1/badges"))
        .header("x-api-key", &b)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine[0]["status"], "revoked");
    assert_eq!(
        mine[0]["revoke_reason"],
        "consignes de sécurité non respectées"
    );
}

#[tokio::test]
async fn the_badge_is_an_open_badges_3_credential() {
    let lab = lab().await;
    let (_, key) = lab.member("josette", true).await;
    let badges: Value = client()
        .get(lab.app.url("/api/v1/badges"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let credential_url = badges[0]["credential_url"].as_str().unwrap().to_string();
    let page_url = badges[0]["url"].as_str().unwrap().to_string();
    assert!(credential_url.starts_with(&lab.app.base));
    let token = page_url.rsplit('/').next().unwrap();
    assert!(token.len() >= 40, "the public address is unguessable");

    // Anyone with the link (no session) can verify it.
    let response = client().get(&credential_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/ld+json");
    let vc: Value = response.json().await.unwrap();
    // What the Open Badges 3.0 data model requires of an OpenBadgeCredential.
    assert_eq!(vc["@context"][0], "https://www.w3.org/ns/credentials/v2");
    assert!(
        vc["@context"][1]
            .as_str()
            .unwrap()
            .starts_with("https://purl.imsglobal.org/spec/ob/v3p0/context-3.0")
    );
    assert_eq!(vc["id"], credential_url.as_str());
    let types: Vec<&str> = vc["type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(types.contains(&"VerifiableCredential") && types.contains(&"OpenBadgeCredential"));
    assert!(vc["issuer"]["id"].as_str().unwrap().starts_with("http"));
    assert!(
        vc["issuer"]["type"]
            .as_array()
            .unwrap()
            .contains(&json!("Profile"))
    );
    assert!(
        vc["validFrom"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .is_ok()
    );
    assert!(
        vc["validUntil"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .unwrap()
            > vc["validFrom"]
                .as_str()
                .unwrap()
                .parse::<Timestamp>()
                .unwrap()
    );
    let subject = &vc["credentialSubject"];
    assert!(
        subject["type"]
            .as_array()
            .unwrap()
            .contains(&json!("AchievementSubject"))
    );
    assert!(
        subject["id"].is_string() || subject["identifier"].is_array(),
        "an id or an identifier"
    );
    let identity = &subject["identifier"][0];
    assert_eq!(identity["type"], "IdentityObject");
    assert!(
        identity["identityType"].is_string()
            && identity["hashed"].is_boolean()
            && identity["identityHash"].is_string()
    );
    let achievement = &subject["achievement"];
    assert!(achievement["id"].is_string());
    assert!(
        achievement["type"]
            .as_array()
            .unwrap()
            .contains(&json!("Achievement"))
    );
    assert_eq!(achievement["name"], "Découpe laser");
    assert!(achievement["description"].is_string());
    assert!(
        achievement["criteria"]["narrative"].is_string()
            || achievement["criteria"]["id"].is_string()
    );

    // The verification page reads in plain words.
    let html = client()
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Badge\u{a0}: Découpe laser") && html.contains("valable"));
    assert_eq!(
        client()
            .get(lab.app.url("/badges/not-a-token/credential.json"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn calendar_feeds_parse_with_an_independent_parser_and_hide_names() {
    let lab = lab().await;
    let (member, key) = lab.member("josette", true).await;
    assert_eq!(
        lab.book(
            &key,
            &tomorrow(14, 0),
            &tomorrow(15, 0),
            json!({"note": "porte-clés; cadeau, Noël"})
        )
        .await
        .0,
        201
    );
    let token = lab.app.lab.new_calendar_token(&member).await.unwrap();
    let member_feed = client()
        .get(lab.app.url(&format!("/calendar/member/{token}.ics")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        member_feed.headers()["content-type"],
        "text/calendar; charset=utf-8"
    );
    let member_feed = member_feed.text().await.unwrap();
    let machine_feed = client()
        .get(
            lab.app
                .url(&format!("/calendar/machines/{}.ics", lab.machine)),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !machine_feed.contains(&member.display_name) && !machine_feed.contains("porte-clés"),
        "no names in the machine feed"
    );
    assert_eq!(
        client()
            .get(lab.app.url("/calendar/member/wrong.ics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // PyPI's icalendar reads both feeds and finds the booking at the right time.
    for (name, feed, summary) in [
        ("member", &member_feed, "Découpeuse laser"),
        ("machine", &machine_feed, "Découpeuse laser : réservé"),
    ] {
        let file = lab.app.dir.path().join(format!("{name}.ics"));
        std::fs::write(&file, feed).unwrap();
        let script = "import sys, icalendar\ncal = icalendar.Calendar.from_ical(open(sys.argv[1], 'rb').read())\nfor e in cal.walk('VEVENT'):\n    print(e.decoded('dtstart').isoformat(), '|', str(e.get('summary')), '|', str(e.get('description', '')))";
        let output = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&file)
            .output()
            .expect("python3 is needed");
        assert!(
            output.status.success(),
            "icalendar refused the {name} feed (or is not installed: pip install -r .ci/requirements.txt): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let start = tomorrow(14, 0).replace('Z', "+00:00");
        assert!(text.contains(&start), "{name}: {text}");
        assert!(text.contains(summary), "{name}: {text}");
        if name == "member" {
            assert!(
                text.contains("porte-clés; cadeau, Noël"),
                "escaping round-trips: {text}"
            );
        }
    }
}

#[tokio::test]
async fn a_manager_awards_and_withdraws_a_badge_from_the_member_page() {
    let lab = lab().await;
    let (member, key) = lab.member("josette", false).await;
    let (page, _) = lab.app.signed_in("karim", Role::Trainer).await;
    let path = format!("/members/{}/badges", member.id.0);
    let token = lab.app.page_csrf(&page, &path).await;
    let response = page
        .post(lab.app.url(&path))
        .form(&[
            ("csrf_token", token.clone()),
            ("training", lab.training.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        lab.book(&key, &tomorrow(14, 0), &tomorrow(15, 0), json!({}))
            .await
            .0,
        201,
        "the badge opens the laser"
    );
    let badge = lab
        .app
        .lab
        .store()
        .badges_of(member.id)
        .await
        .unwrap()
        .remove(0);
    let response = page
        .post(lab.app.url(&format!("/badges/{}/revoke", badge.id.0)))
        .form(&[
            ("csrf_token", token.as_str()),
            ("reason", "n'a pas fermé le capot"),
            ("next", path.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let html = page
        .get(lab.app.url(&path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        common::unescaped(&html).contains("n'a pas fermé le capot") && html.contains("retiré"),
        "{html}"
    );
    assert!(html.contains("sans venir\u{a0}: 0"));
    // A member cannot see another member's badges page.
    let (other, _) = lab.app.signed_in("bruno", Role::Member).await;
    assert_eq!(
        other.get(lab.app.url(&path)).send().await.unwrap().status(),
        403
    );
}

/// A signed-in client of `user` (made by the test), through the login form.
async fn signed_in_as(lab: &Lab, user: &User) -> reqwest::Client {
    let page = client();
    let response = lab
        .app
        .login(&page, user.username.as_str(), common::PASSWORD)
        .await;
    assert_eq!(response.status(), 303);
    page
}

async fn text(page: &reqwest::Client, url: String) -> String {
    common::unescaped(&page.get(url).send().await.unwrap().text().await.unwrap())
}

/// The notice cookie a redirect set, for the next request of a client without a store
/// would not send it; here the client keeps cookies, so only the page's text is read.
#[tokio::test]
async fn a_booking_is_confirmed_once_on_the_next_page_without_javascript() {
    let lab = lab().await;
    let (member, _) = lab.member("josette", true).await;
    let page = signed_in_as(&lab, &member).await;
    let token = lab
        .app
        .page_csrf(&page, &format!("/machines/{}/week", lab.machine))
        .await;
    let response = page
        .post(lab.app.url("/bookings"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("machine", &lab.machine.to_string()),
            ("start", &tomorrow(14, 0)),
            ("minutes", "60"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/bookings");
    let html = text(&page, lab.app.url("/bookings")).await;
    assert!(
        html.contains("role=\"status\">Réservation enregistrée\u{a0}: Découpeuse laser,")
            && html.contains("14:00 – 15:00."),
        "{html}"
    );
    let again = text(&page, lab.app.url("/bookings")).await;
    assert!(
        !again.contains("Réservation enregistrée"),
        "shown once: {again}"
    );
    // Cancelling says so too, in the language of the page that shows it.
    let booking = lab
        .app
        .lab
        .my_bookings(&member, now())
        .await
        .unwrap()
        .remove(0);
    let response = page
        .post(lab.app.url(&format!("/bookings/{}/cancel", booking.id.0)))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let lang = page
        .post(lab.app.url("/lang"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("lang", "en"),
            ("next", "/bookings"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(lang.status(), 303);
    let html = text(&page, lab.app.url("/bookings")).await;
    assert!(
        html.contains("Booking cancelled: Découpeuse laser,"),
        "{html}"
    );
}

#[tokio::test]
async fn the_booking_page_offers_only_what_can_be_booked_and_refusals_say_why() {
    let lab = lab().await;
    let (member, key) = lab.member("josette", true).await;
    assert_eq!(
        lab.book(&key, &tomorrow(15, 0), &tomorrow(16, 0), json!({}))
            .await
            .0,
        201
    );
    let page = signed_in_as(&lab, &member).await;
    let offer = |start: String| {
        let url = lab.app.url(&format!(
            "/bookings/new?machine={}&start={start}",
            lab.machine
        ));
        let page = page.clone();
        async move {
            let html = text(&page, url).await;
            html.split("<option value=\"")
                .skip(1)
                .filter_map(|o| o.split('"').next()?.parse::<u32>().ok())
                .collect::<Vec<_>>()
        }
    };
    // Up to the member's own 15:00 booking; up to the 20:00 close.
    assert_eq!(offer(tomorrow(14, 0)).await, vec![30, 60]);
    assert_eq!(offer(tomorrow(19, 0)).await, vec![30, 60]);
    let html = text(
        &page,
        lab.app.url(&format!(
            "/bookings/new?machine={}&start={}",
            lab.machine,
            tomorrow(15, 30)
        )),
    )
    .await;
    assert!(html.contains("Ce créneau n'est plus libre."), "{html}");
    // Sent anyway (an old page, a typed request): the true reason.
    let (status, body) = lab
        .book(&key, &tomorrow(14, 0), &tomorrow(16, 0), json!({}))
        .await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (409, "own_booking"),
        "{body}"
    );
    assert_eq!(
        body["error"]["message"],
        "Cette durée déborde sur une autre réservation de la même personne (15:00 – 16:00)\u{a0}: choisissez une durée plus courte."
    );
    let (status, body) = lab
        .book(&key, &tomorrow(19, 0), &tomorrow(21, 0), json!({}))
        .await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (422, "past_closing"),
        "{body}"
    );
    assert_eq!(
        body["error"]["message"],
        "Le fablab ferme à 20:00\u{a0}: choisissez une durée plus courte."
    );
    // The page form says it the same way.
    let token = lab.app.page_csrf(&page, "/bookings").await;
    let response = page
        .post(lab.app.url("/bookings"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("machine", &lab.machine.to_string()),
            ("start", &tomorrow(14, 0)),
            ("minutes", "90"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let html = common::unescaped(&response.text().await.unwrap());
    assert!(html.contains("déborde sur une autre réservation"), "{html}");
    assert!(!html.contains("déjà réservé"), "{html}");
}

#[tokio::test]
async fn the_desk_creates_an_account_books_enrols_marks_and_awards_for_a_member() {
    let lab = lab().await;
    let desk = signed_in_as(&lab, &lab.manager).await;
    let token = lab.app.page_csrf(&desk, "/members/new").await;
    // A new account: "compte créé", and a card with the username but no PIN.
    let response = desk
        .post(lab.app.url("/members/new"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", "josette.m"),
            ("display_name", "Josette Martin"),
            ("role", "member"),
            ("lang", "fr"),
            ("credential_kind", "pin"),
            ("secret", "482913"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let member_page = response.headers()["location"].to_str().unwrap().to_string();
    let html = text(&desk, lab.app.url(&member_page)).await;
    assert!(
        html.contains("Compte créé pour Josette Martin (nom d'utilisateur\u{a0}: josette.m).")
            && html.contains("Imprimer la carte de connexion"),
        "{html}"
    );
    let card = text(&desk, lab.app.url(&format!("{member_page}/card"))).await;
    assert!(
        card.contains("josette.m") && card.contains("/login"),
        "{card}"
    );
    assert!(!card.contains("482913"), "no PIN unless asked");
    // Asked for: the PIN is on the answer itself, which is not kept.
    let response = desk
        .post(lab.app.url("/members/new"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", "marcel"),
            ("display_name", "Marcel"),
            ("role", "member"),
            ("lang", "fr"),
            ("credential_kind", "pin"),
            ("secret", "771245"),
            ("print_secret", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let card = response.text().await.unwrap();
    assert!(
        card.contains("771245") && card.contains("Compte créé pour Marcel"),
        "{card}"
    );

    let member = lab
        .app
        .lab
        .store()
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.username.as_str() == "josette.m")
        .unwrap();
    let id = member.id.0;
    // Book for her: from her page to the machine's week, acting for her.
    let response = desk
        .get(
            lab.app
                .url(&format!("/members/{id}/book?machine={}", lab.machine)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let week = response.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(week, format!("/machines/{}/week?member={id}", lab.machine));
    let html = text(&desk, lab.app.url(&week)).await;
    assert!(html.contains("Réserver pour Josette Martin"), "{html}");
    assert!(
        html.contains(&format!("&member={id}")),
        "slot links act for her"
    );
    let response = desk
        .post(lab.app.url("/bookings"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("machine", &lab.machine.to_string()),
            ("start", &tomorrow(10, 0)),
            ("minutes", "60"),
            ("member", &id.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], member_page.as_str());
    let html = text(&desk, lab.app.url(&member_page)).await;
    assert!(
        html.contains("Réservation enregistrée pour Josette Martin\u{a0}: Découpeuse laser"),
        "{html}"
    );
    let bookings = lab.app.lab.my_bookings(&member, now()).await.unwrap();
    assert_eq!(bookings.len(), 1, "the booking is hers");
    assert_eq!(bookings[0].user, Some(member.id));

    // Enrol her from her page, mark her present and award the badge from there too.
    let training = fabrique_controller::domain::training::TrainingId(lab.training);
    let start = Timestamp::from_second(now() + 2 * 86_400).unwrap();
    let end = Timestamp::from_second(now() + 2 * 86_400 + 7200).unwrap();
    let session = lab
        .app
        .lab
        .create_session(
            &lab.manager,
            training,
            start,
            end,
            None,
            6,
            "Salle laser",
            now(),
        )
        .await
        .unwrap();
    let response = desk
        .post(lab.app.url(&format!("/members/{id}/enrol")))
        .form(&[
            ("csrf_token", token.as_str()),
            ("session", &session.id.0.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let html = text(&desk, lab.app.url(&member_page)).await;
    assert!(
        html.contains("Josette Martin est inscrit·e\u{a0}: Découpe laser."),
        "{html}"
    );
    for (path, extra) in [("attendance", Some("1")), ("award", None)] {
        let mut form = vec![
            ("csrf_token", token.clone()),
            ("member", id.to_string()),
            ("next", member_page.clone()),
        ];
        if let Some(v) = extra {
            form.push(("attended", v.to_string()));
        }
        let response = desk
            .post(lab.app.url(&format!("/sessions/{}/{path}", session.id.0)))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], member_page.as_str());
    }
    let html = text(&desk, lab.app.url(&member_page)).await;
    assert!(
        html.contains("Badge «\u{202f}Découpe laser\u{202f}» remis à Josette Martin."),
        "{html}"
    );
    let enrolments = lab
        .app
        .lab
        .enrolments(&lab.manager, session.id)
        .await
        .unwrap();
    assert!(enrolments[0].attended);
    assert_eq!(
        lab.app
            .lab
            .store()
            .badges_of(member.id)
            .await
            .unwrap()
            .len(),
        1
    );

    // From the session page, the desk enrols another member.
    let (other, _) = lab.member("bruno", false).await;
    let session_page = format!("/sessions/{}", session.id.0);
    let html = text(&desk, lab.app.url(&session_page)).await;
    assert!(
        html.contains("Inscrire un membre") && html.contains("bruno"),
        "{html}"
    );
    let response = desk
        .post(lab.app.url(&format!("{session_page}/enrol")))
        .form(&[
            ("csrf_token", token.as_str()),
            ("member", &other.id.0.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let html = text(&desk, lab.app.url(&session_page)).await;
    assert!(
        html.contains("est inscrit·e\u{a0}: Découpe laser."),
        "{html}"
    );
    let enrolments = lab
        .app
        .lab
        .enrolments(&lab.manager, session.id)
        .await
        .unwrap();
    assert!(enrolments.iter().any(|e| e.user == other.id));
    // In English, no space before the colon between a label and its value.
    let response = desk
        .post(lab.app.url("/lang"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("lang", "en"),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let html = text(&desk, lab.app.url(&session_page)).await;
    assert!(
        html.contains("aria-label=\"Award the badge: Josette Martin\""),
        "{html}"
    );
    assert!(!html.contains(" : "), "{html}");

    // A member acts only for themselves.
    let page = signed_in_as(&lab, &other).await;
    let token = lab.app.page_csrf(&page, "/bookings").await;
    let response = page
        .post(lab.app.url("/bookings"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("machine", &lab.machine.to_string()),
            ("start", &tomorrow(12, 0)),
            ("minutes", "30"),
            ("member", &id.to_string()),
            ("supervised", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = page.get(lab.app.url(&week)).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        lab.app.lab.my_bookings(&member, now()).await.unwrap().len(),
        1
    );
}

/// "When is it free?": every machine over a day as a real table (a row per slot, a column
/// per machine), bookings, blocks and sessions on it, free slots linked to their booking;
/// a week as a machine per row; each machine's card says its next free slot.
#[tokio::test]
async fn the_grid_shows_every_machine_over_a_day_and_a_week() {
    let lab = lab().await;
    let (member, key) = lab.member("josette", true).await;
    let (_, other) = lab.member("bruno", true).await;
    assert_eq!(
        lab.book(&key, &tomorrow(9, 0), &tomorrow(10, 0), json!({}))
            .await
            .0,
        201
    );
    assert_eq!(
        lab.book(&other, &tomorrow(10, 0), &tomorrow(10, 30), json!({}))
            .await
            .0,
        201
    );
    let start = Timestamp::from_second(now() / 86_400 * 86_400 + 86_400 + 14 * 3600).unwrap();
    lab.app
        .lab
        .block(
            &lab.manager,
            MachineId(lab.machine),
            start,
            Timestamp::from_second(start.as_second() + 3600).unwrap(),
            "atelier collège",
            now(),
        )
        .await
        .unwrap();
    let training = fabrique_controller::domain::training::TrainingId(lab.training);
    lab.app
        .lab
        .create_session(
            &lab.manager,
            training,
            Timestamp::from_second(start.as_second() + 2 * 3600).unwrap(),
            Timestamp::from_second(start.as_second() + 3 * 3600).unwrap(),
            None,
            6,
            "",
            now(),
        )
        .await
        .unwrap();
    let date = &tomorrow(0, 0)[..10];
    let page = signed_in_as(&lab, &member).await;
    let html = text(&page, lab.app.url(&format!("/grid?date={date}"))).await;
    let row = |time: &str| {
        let at = html
            .find(&format!("<th scope=\"row\">{time}</th>"))
            .unwrap_or_else(|| panic!("a row for {time}: {html}"));
        html[at..].split("</tr>").next().unwrap().to_string()
    };
    assert!(
        html.contains("<th scope=\"col\">Découpeuse laser</th>"),
        "{html}"
    );
    assert!(row("09:00 – 09:30").contains("votre réservation"));
    let ten = row("10:00 – 10:30");
    assert!(
        ten.contains("réservé") && !ten.contains("bruno"),
        "no names: {ten}"
    );
    assert!(row("14:00 – 14:30").contains("bloqué"));
    assert!(
        !row("14:00 – 14:30").contains("atelier collège"),
        "reasons for managers"
    );
    assert!(row("16:00 – 16:30").contains("formation Découpe laser"));
    assert!(
        row("11:00 – 11:30").contains(&format!(
            "href=\"/bookings/new?machine={}&start={}\"",
            lab.machine,
            tomorrow(11, 0)
        )),
        "{}",
        row("11:00 – 11:30")
    );
    assert!(
        html.contains("Découpe laser · "),
        "the day's sessions are listed"
    );
    // A manager reads names and reasons.
    let desk = signed_in_as(&lab, &lab.manager).await;
    let managed = text(&desk, lab.app.url(&format!("/grid?date={date}"))).await;
    assert!(managed.contains("bruno") && managed.contains("bloqué\u{a0}: atelier collège"));
    // The manager's day is that grid too, above the day's bookings and their actions.
    let day = text(&desk, lab.app.url(&format!("/day?date={date}"))).await;
    assert!(
        day.contains("<th scope=\"col\">Découpeuse laser</th>")
            && day.contains("<th scope=\"row\">10:00 – 10:30</th>")
            && day.contains("Réservations de la journée"),
        "{day}"
    );
    // The week: a row per machine, a cell per day with its free slots.
    let week = text(&page, lab.app.url(&format!("/grid?view=week&date={date}"))).await;
    assert!(
        week.contains("<th scope=\"row\">Découpeuse laser</th>")
            && week.contains("créneaux libres, dès"),
        "{week}"
    );
    // The machine's card says when it is next free.
    let home = text(&page, lab.app.url("/")).await;
    assert!(home.contains("Prochain créneau libre\u{a0}: "), "{home}");
    // Last week is over, not full; a machine in maintenance is unavailable, not full.
    let last_week = &in_days(-7, 12)[..10];
    let week = text(
        &page,
        lab.app.url(&format!("/grid?view=week&date={last_week}")),
    )
    .await;
    assert!(
        week.contains(">passé<") && !week.contains("complet"),
        "{week}"
    );
    lab.app
        .lab
        .set_machine_state(
            &lab.manager,
            MachineId(lab.machine),
            MachineState::Maintenance,
            "révision",
            now(),
        )
        .await
        .unwrap();
    let next_week = &in_days(7, 12)[..10];
    let week = text(
        &page,
        lab.app.url(&format!("/grid?view=week&date={next_week}")),
    )
    .await;
    assert!(
        week.contains(">indisponible<") && !week.contains("complet"),
        "{week}"
    );
    let home = text(&page, lab.app.url("/")).await;
    assert!(home.contains("Aucun créneau libre"), "{home}");
}
