//! The probes of a careful attacker's tour, kept as tests: parallel guesses, open
//! redirects, a secret changed with an API key alone, keys outliving a reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, client, spawn_app};
use fabrique_controller::domain::{CredentialKind, Lang, NewUser, Role, Secret};
use fabrique_controller::lab::now;
use serde_json::{Value, json};

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_guesses_at_a_pin_are_five_checks_and_429s_with_retry_after() {
    let app = spawn_app().await;
    let josette = NewUser::parse(
        "josette",
        "",
        "",
        Role::Member,
        Lang::Fr,
        CredentialKind::Pin,
        Secret::new("482913"),
    )
    .unwrap();
    app.lab
        .create_user_unchecked(&josette, now())
        .await
        .unwrap();
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let url = app.url("/api/v1/login");
            tokio::spawn(async move {
                client()
                    .post(url)
                    .json(
                        &json!({"username": "josette", "password": format!("{:06}", 200_000 + i)}),
                    )
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let (mut checked, mut refused) = (0, 0);
    for guess in guesses {
        let response = guess.await.unwrap();
        match response.status().as_u16() {
            401 => checked += 1,
            429 => {
                let retry: i64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=900).contains(&retry), "Retry-After {retry}");
                refused += 1;
            }
            other => panic!("{other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(checked, 5, "checked guesses ({refused} refused)");
    // The login page says so too, with the header.
    let c = client();
    let response = app.login(&c, "josette", "482913").await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn next_and_lang_targets_stay_on_this_site() {
    let app = spawn_app().await;
    app.add_user("amina", Role::Member).await;
    let off_site = [
        "/%09/evil.example",
        "/\t/evil.example",
        "//evil.example",
        "/\\evil.example",
        "/%5Cevil.example",
        "/%0a/evil.example",
        "/%0D/evil.example",
        "/%2F/evil.example",
        "https://evil.example",
        "/\u{0}x",
        "javascript:alert(1)",
        "",
    ];
    for next in off_site {
        // After logging in.
        let c = client();
        let token = app.csrf(&c).await;
        let response = c
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("username", "amina"),
                ("secret", PASSWORD),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{next:?}");
        assert_eq!(response.headers()["location"], "/", "login next={next:?}");
        // Already signed in, at /login?next=...
        let response = c
            .get(app.url("/login"))
            .query(&[("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["location"],
            "/",
            "GET /login next={next:?}"
        );
        // Switching language.
        let token = app.page_csrf(&c, "/account").await;
        let response = c
            .post(app.url("/lang"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("lang", "en"),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["location"], "/", "lang next={next:?}");
    }
    // Paths of the site are kept, with their query.
    let c = client();
    let token = app.csrf(&c).await;
    let response = c
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", "amina"),
            ("secret", PASSWORD),
            ("next", "/bookings?week=2026-12-07"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "/bookings?week=2026-12-07");
}

#[tokio::test]
async fn an_api_key_alone_does_not_change_the_password() {
    let app = spawn_app().await;
    let amina = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&amina, "Cura", now()).await.unwrap();
    let patch = |body: Value| {
        client()
            .patch(app.url("/api/v1/me"))
            .header("x-api-key", &key)
            .json(&body)
            .send()
    };
    let (status, body) = json_of(
        patch(json!({"secret": "taken over by a slicer"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "current_secret_required");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("actuel"),
        "{body}"
    );
    let (status, body) = json_of(
        patch(json!({"secret": "taken over by a slicer", "current_secret": "a guess", "display_name": "Pirate"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "current_secret_wrong");
    // Nothing of that patch was applied; the old password still opens the account.
    assert_eq!(
        app.lab.store().user(amina.id).await.unwrap().display_name,
        amina.display_name
    );
    assert_eq!(app.login(&client(), "amina", PASSWORD).await.status(), 303);
    // The same through /members/{id} on oneself.
    let (status, body) = json_of(
        client()
            .patch(app.url(&format!("/api/v1/members/{}", amina.id.0)))
            .header("x-api-key", &key)
            .json(&json!({"secret": "taken over by a slicer"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("current_secret_required"))
    );
    // With the current one, it changes, and her own key keeps working.
    let (status, body) = json_of(
        patch(json!({"secret": "a new long secret", "current_secret": PASSWORD}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.login(&client(), "amina", "a new long secret")
            .await
            .status(),
        303
    );
    let (status, _) = json_of(
        client()
            .get(app.url("/api/v1/me"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    // The page asks for the current one the same way.
    let (c, _) = (client(), ());
    assert_eq!(
        app.login(&c, "amina", "a new long secret").await.status(),
        303
    );
    let token = app.page_csrf(&c, "/account").await;
    let response = c
        .post(app.url("/account/secret"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("current", "wrong"),
            ("new_secret", "yet another secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert!(
        common::unescaped(&response.text().await.unwrap())
            .contains("Le mot de passe actuel n'est pas le bon")
    );
}

#[tokio::test]
async fn a_reset_by_a_manager_ends_the_members_keys_and_managers_revoke_keys() {
    let app = spawn_app().await;
    let (manager, nadia) = app.signed_in("nadia", Role::Manager).await;
    let amina = app.add_user("amina", Role::Member).await;
    let cura = app.lab.create_api_key(&amina, "Cura", now()).await.unwrap();
    let prusa = app
        .lab
        .create_api_key(&amina, "PrusaSlicer", now())
        .await
        .unwrap();
    let me = |key: &str| {
        client()
            .get(app.url("/api/v1/me"))
            .header("x-api-key", key)
            .send()
    };
    assert_eq!(me(&cura).await.unwrap().status(), 200);

    // A manager lists her keys and revokes one.
    let (status, keys) = json_of(
        manager
            .get(app.url(&format!("/api/v1/members/{}/api-keys", amina.id.0)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(
        keys[0].get("key_hash").is_none() && cura.starts_with(keys[0]["prefix"].as_str().unwrap())
    );
    let response = manager
        .delete(app.url(&format!(
            "/api/v1/members/{}/api-keys/{}",
            amina.id.0, keys[0]["id"]
        )))
        .header("x-csrf-token", app.page_csrf(&manager, "/account").await)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(me(&cura).await.unwrap().status(), 401);
    assert_eq!(me(&prusa).await.unwrap().status(), 200);
    // A member does not see another's keys.
    let (paul, _) = app.signed_in("paul", Role::Member).await;
    let response = paul
        .get(app.url(&format!("/api/v1/members/{}/api-keys", amina.id.0)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // The manager's reset on the page ends every key she had.
    let token = app
        .page_csrf(&manager, &format!("/members/{}", amina.id.0))
        .await;
    let response = manager
        .post(app.url(&format!("/members/{}", amina.id.0)))
        .form(&[
            ("csrf_token", token.as_str()),
            ("display_name", "Amina"),
            ("email", ""),
            ("role", "member"),
            ("lang", "fr"),
            ("credential_kind", "pin"),
            ("secret", "135790"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(me(&prusa).await.unwrap().status(), 401);

    // Her history says who did what; the member page shows it.
    let (status, events) = json_of(
        manager
            .get(app.url(&format!("/api/v1/members/{}/events", amina.id.0)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let kinds: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["by"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        kinds,
        [
            ("secret_reset", "nadia"),
            ("api_key_revoked", "nadia"),
            ("api_key_created", "amina"),
            ("api_key_created", "amina"),
        ]
    );
    let html = manager
        .get(app.url(&format!("/members/{}", amina.id.0)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let html = common::unescaped(&html);
    assert!(html.contains("clés d'API supprimées\u{a0}: 1"), "{html}");
    assert!(html.contains(nadia.username.as_str()));
}

#[tokio::test]
async fn a_trainer_cannot_award_themselves_a_badge_but_a_manager_may() {
    use fabrique_controller::domain::training::TrainingInput;
    let app = spawn_app().await;
    let nadia = app.add_user("nadia", Role::Manager).await;
    let (trainer, samir) = app.signed_in("samir", Role::Trainer).await;
    let training = TrainingInput::parse("Découpe laser", "", "24", "", vec![]).unwrap();
    let training = app
        .lab
        .save_training(&nadia, None, &training, now())
        .await
        .unwrap();
    let token = app.page_csrf(&trainer, "/account").await;
    let (status, body) = json_of(
        trainer
            .post(app.url("/api/v1/badges"))
            .header("x-csrf-token", &token)
            .json(&json!({"member_id": samir.id.0, "training_id": training.id.0}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "self_award");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vous-même"),
        "{body}"
    );
    // The page refuses it the same way.
    let response = trainer
        .post(app.url(&format!("/members/{}/badges", samir.id.0)))
        .form(&[
            ("csrf_token", token.as_str()),
            ("training", &training.id.0.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert!(common::unescaped(&response.text().await.unwrap()).contains("vous-même"));
    assert!(
        app.lab
            .badges_of(&nadia, samir.id)
            .await
            .unwrap()
            .is_empty()
    );
    // A manager may award one to herself (she answers for the lab), and to the trainer.
    app.lab
        .award_badge(&nadia, nadia.id, training.id, None, now())
        .await
        .unwrap();
    app.lab
        .award_badge(&nadia, samir.id, training.id, None, now())
        .await
        .unwrap();
}

#[tokio::test]
async fn links_sent_elsewhere_come_from_public_url_never_from_the_host_header() {
    use fabrique_controller::domain::training::TrainingInput;
    use fabrique_web::config::Layer;
    for public_url in [Some("https://fablab.example.org"), None] {
        let app = common::spawn_app_with(Layer {
            public_url: public_url.map(String::from),
            ..Layer::default()
        })
        .await;
        // Unset: the listen address (here 127.0.0.1 and the test's port).
        let expected = public_url.unwrap_or(&app.base).to_string();
        let expected = expected.as_str();
        let nadia = app.add_user("nadia", Role::Manager).await;
        let amina = app.add_user("amina", Role::Member).await;
        let training = TrainingInput::parse("Impression 3D", "", "24", "", vec![]).unwrap();
        let training = app
            .lab
            .save_training(&nadia, None, &training, now())
            .await
            .unwrap();
        let badge = app
            .lab
            .award_badge(&nadia, amina.id, training.id, None, now())
            .await
            .unwrap();
        let credential = client()
            .get(app.url(&format!("/badges/{}/credential.json", badge.public_token)))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!credential.contains("evil.example"), "{credential}");
        assert!(
            credential.contains(&format!("{expected}/badges/{}", badge.public_token)),
            "{credential}"
        );
        // A slicer's upload is answered with links it keeps and follows.
        let key = app.lab.create_api_key(&amina, "Cura", now()).await.unwrap();
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"G28\nG1 X10 Y10\n".to_vec()).file_name("cube.gcode"),
        );
        let response = client()
            .post(app.url("/api/files/local"))
            .header("x-api-key", &key)
            .header("host", "evil.example")
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let body: Value = response.json().await.unwrap();
        let refs = &body["files"]["local"]["refs"];
        for link in [&refs["resource"], &refs["download"]] {
            assert!(
                link.as_str().unwrap().starts_with(&format!("{expected}/")),
                "{body}"
            );
        }
        assert!(location.starts_with(expected), "{location}");
    }
}

#[tokio::test]
async fn pages_are_never_framed_by_another_site() {
    let app = spawn_app().await;
    for path in [
        "/login",
        "/campaigns",
        "/api/v1/openapi.json",
        "/no-such-page",
    ] {
        let response = client().get(app.url(path)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"], "frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
}

#[tokio::test]
async fn the_demo_seeded_twice_on_one_data_folder_is_the_same_demo() {
    use fabrique_web::config::{Config, Layer};
    let app = spawn_app().await;
    let config = Config::build(&[(
        "test",
        Layer {
            data_dir: Some(app.dir.path().to_path_buf()),
            ..Layer::default()
        },
    )])
    .unwrap();
    let mut passwords = Vec::new();
    for _ in 0..2 {
        passwords.push(fabrique_web::demo::seed(&app.lab).await.unwrap());
        fabrique_web::demo::submit_sample_job(&app.lab, &config)
            .await
            .unwrap();
        fabrique_web::demo::seed_campaign(&app.lab, &config)
            .await
            .unwrap();
    }
    let manager = app
        .lab
        .store()
        .user_by_username(&fabrique_controller::domain::Username::parse("manager").unwrap())
        .await
        .unwrap();
    assert_eq!(app.lab.machines().await.unwrap().len(), 6);
    assert_eq!(app.lab.trainings().await.unwrap().len(), 3);
    assert_eq!(app.lab.campaigns(Some(&manager)).await.unwrap().len(), 1);
    let jobs = app.lab.jobs_for(&manager).await.unwrap();
    let mut names: Vec<_> = jobs.iter().map(|j| j.file_name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), jobs.len(), "each sample job once: {names:?}");
    // Each start prints fresh passwords, and the new one opens the account.
    assert_ne!(passwords[0][1].2, passwords[1][1].2);
    assert_eq!(
        app.login(&client(), "manager", &passwords[1][1].2)
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn serial_ports_and_print_server_addresses_are_for_managers_only() {
    use fabrique_controller::domain::machine::ConnectionKind;
    use fabrique_controller::domain::{Connection, MachineInput, MachineKind, MachineProfile};
    let app = spawn_app().await;
    let (manager, nadia) = app.signed_in("nadia", Role::Manager).await;
    let (member, amina) = app.signed_in("amina", Role::Member).await;
    let (trainer, _) = app.signed_in("samir", Role::Trainer).await;
    let profile =
        MachineProfile::parse(["250", "210", "210"], "300", "120", "", "", "PLA").unwrap();
    let mut ids = Vec::new();
    for (name, connection) in [
        (
            "Prusa",
            Connection::parse(
                ConnectionKind::SerialMarlin,
                "/dev/ttyACM7",
                "115200",
                "",
                "",
                None,
            )
            .unwrap(),
        ),
        (
            "Voron",
            Connection::parse(
                ConnectionKind::Moonraker,
                "",
                "",
                "http://10.0.3.14:7125",
                "",
                None,
            )
            .unwrap(),
        ),
    ] {
        let input = MachineInput::new(
            name,
            MachineKind::FdmPrinter,
            connection,
            profile.clone(),
            "",
            "",
        )
        .unwrap();
        ids.push(
            app.lab
                .create_machine(&nadia, &input, now())
                .await
                .unwrap()
                .id
                .0,
        );
    }
    // A state reason may quote a print server's error, address and all.
    for (id, reason) in [
        (ids[0], "port /dev/ttyACM7 absent"),
        (
            ids[1],
            "error sending request for url (http://10.0.3.14:7125/printer/info): refused by 10.0.3.14",
        ),
    ] {
        app.lab
            .store()
            .set_machine_state(
                fabrique_controller::domain::MachineId(id),
                fabrique_controller::domain::MachineState::Maintenance,
                reason,
                now(),
            )
            .await
            .unwrap();
    }
    // So may a job's note, which its owner reads.
    let job = app
        .submit_file(&amina, None, "cube.gcode", b"G28\nG1 X10 Y10\n")
        .await;
    app.lab
        .store()
        .change_job_state(
            job.id,
            job.state,
            fabrique_controller::domain::job::JobState::Failed,
            None,
            "Moonraker injoignable : error sending request for url (http://10.0.3.14:7125/server/files/upload)",
            now(),
        )
        .await
        .unwrap();
    let secrets = ["/dev/ttyACM7", "10.0.3.14"];
    for (client, sees) in [(&member, false), (&trainer, false), (&manager, true)] {
        let list = client
            .get(app.url("/api/v1/machines"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let one = client
            .get(app.url(&format!("/api/v1/machines/{}", ids[0])))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut pages = String::new();
        for path in [
            "/".to_string(),
            format!("/machines/{}", ids[0]),
            format!("/machines/{}", ids[1]),
        ] {
            pages.push_str(
                &client
                    .get(app.url(&path))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            );
        }
        for secret in secrets {
            for (what, text) in [("list", &list), ("machine", &one), ("pages", &pages)] {
                if what == "machine" && secret != secrets[0] {
                    continue; // that one is the serial printer
                }
                assert_eq!(text.contains(secret), sees, "{what} {secret}: {text}");
            }
        }
        // The kind of link is still said to everyone.
        assert!(one.contains("serial_marlin"), "{one}");
    }
}

/// An EXP design (Melco): a stitch is a pair of signed bytes, in 0.1 mm.
fn exp_design(stitches: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..stitches {
        let (dx, dy): (i8, i8) = if i % 2 == 0 { (20, 5) } else { (-20, 5) };
        bytes.push(dx.to_le_bytes()[0]);
        bytes.push(dy.to_le_bytes()[0]);
    }
    bytes
}

#[tokio::test]
async fn the_dst_copy_of_a_design_is_written_once_and_kept_beside_it() {
    let app = spawn_app().await;
    let (client, amina) = app.signed_in("amina", Role::Member).await;
    let job = app
        .submit_file(&amina, None, "coeur.exp", &exp_design(400))
        .await;
    let copy = app
        .jobs_dir()
        .join(format!("{}.design.dst", job.stored_name));
    let mut bodies = Vec::new();
    let mut written = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(app.url(&format!("/jobs/{}/design.dst", job.id.0)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .contains("coeur.dst")
        );
        bodies.push(response.bytes().await.unwrap());
        written.push(std::fs::metadata(&copy).unwrap().modified().unwrap());
    }
    assert!(bodies[0].starts_with(b"LA:"));
    assert!(bodies.iter().all(|b| b == &bodies[0]));
    assert!(
        written.iter().all(|t| t == &written[0]),
        "written once: {written:?}"
    );
    // It goes with the file when the file goes.
    fabrique_controller::job_files::remove(&app.jobs_dir(), &job.stored_name).await;
    assert!(!copy.exists());
}

#[tokio::test]
async fn the_openapi_document_says_every_error_and_the_rules_of_the_bodies() {
    let app = spawn_app().await;
    let doc: Value = client()
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            for status in ["400", "401"] {
                assert!(responses.contains_key(status), "{method} {path}: {status}");
            }
            if op.get("requestBody").is_some() {
                for status in ["404", "413", "415", "422"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
            }
            if method != "get" {
                assert!(responses.contains_key("403"), "{method} {path}: 403");
            }
        }
    }
    assert!(operations > 40);
    let login = &doc["paths"]["/api/v1/login"]["post"]["responses"];
    assert!(login.get("429").is_some());
    let schemas = &doc["components"]["schemas"];
    let username = &schemas["NewMemberBody"]["properties"]["username"];
    assert_eq!(username["pattern"], "^[a-z0-9._-]{3,32}$");
    assert_eq!(username["maxLength"], 32);
    assert_eq!(
        schemas["RoleWord"]["enum"],
        json!(["member", "trainer", "manager", "admin"])
    );
    assert_eq!(
        schemas["PledgeBody"]["properties"]["quantity"]["minimum"],
        1
    );
    assert_eq!(
        schemas["SessionBody"]["properties"]["capacity"]["maximum"],
        100
    );
}
