//! HTTP tests against the real application: pages, JSON API, roles, bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestApp, client, csrf_in, spawn_app, unescaped};
use fabrique_controller::domain::Role;
use fabrique_controller::lab::now;
use fabrique_web::config::Layer;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "JSON expected, got {status} {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

fn machine_body(name: &str) -> Value {
    json!({
        "name": name,
        "kind": "fdm_printer",
        "connection": {"kind": "serial_marlin", "serial_port": "/dev/ttyACM0", "baud": 115200},
        "profile": {"work_area_mm": [250, 210, 210], "max_hotend_c": 300, "materials": ["PLA"]},
        "location": "Atelier"
    })
}

#[tokio::test]
async fn a_wrong_password_gets_401_with_a_french_message() {
    let app = spawn_app().await;
    app.add_user("nadia", Role::Manager).await;
    let (status, body) = json_of(
        client()
            .post(app.url("/api/v1/login"))
            .json(&json!({"username": "nadia", "password": "wrong"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "bad_credentials");
    assert_eq!(
        body["error"]["message"],
        "Nom d'utilisateur ou mot de passe incorrect. Vérifiez et réessayez."
    );

    // The login page says it in French too, keeps the username typed, and answers 401.
    let c = client();
    let response = app.login(&c, "nadia", "wrong").await;
    assert_eq!(response.status(), 401);
    let html = response.text().await.unwrap();
    assert!(
        unescaped(&html).contains("Nom d'utilisateur ou mot de passe incorrect"),
        "{html}"
    );
    assert!(html.contains("value=\"nadia\""));

    // And in English for a browser that asks for English.
    let response = client()
        .post(app.url("/api/v1/login"))
        .header("accept-language", "en-GB,en;q=0.9")
        .json(&json!({"username": "nadia", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    let (_, body) = json_of(response).await;
    assert_eq!(
        body["error"]["message"],
        "Wrong username or password. Check them and try again."
    );
}

#[tokio::test]
async fn home_shows_the_machines_in_french_after_login() {
    let app = spawn_app().await;
    let (c, manager) = app.signed_in("nadia", Role::Manager).await;
    let body = machine_body("Prusa MK3S");
    let input = client_post_json(&c, &app, "/api/v1/machines", &body).await;
    assert_eq!(input.0, 201, "{}", input.1);
    let html = c
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<html lang=\"fr\">"));
    assert!(html.contains("Les machines du fablab"));
    assert!(html.contains("Prusa MK3S"));
    assert!(
        html.contains("Hors ligne"),
        "a serial machine starts offline until its link is up"
    );
    assert!(html.contains(&manager.display_name));
    assert!(html.contains("<link rel=\"icon\" href=\"/static/favicon.svg\""));
    for path in ["/static/favicon.svg", "/favicon.ico"] {
        let response = c.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/svg+xml");
    }
    // An offline machine is not offered "checked and clean": its link comes back by itself.
    let board = c
        .get(app.url("/board"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        board.contains("Prusa MK3S") && board.contains("Hors ligne"),
        "{board}"
    );
    assert!(!board.contains("Vérifiée et propre"), "{board}");
}

/// Anyone reaches the lab's public face at `/`: hours and whether it is open now, the
/// machines with their state and training, the sessions with free places, the open
/// campaigns with their request form; no one's name.
#[tokio::test]
async fn the_public_home_shows_the_lab_without_personal_data() {
    use fabrique_controller::domain::training::TrainingInput;
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let trainer = app.add_user("karim.trainer", Role::Trainer).await;
    let (c, _) = app.signed_in("admin", Role::Admin).await;
    let (status, machine) =
        client_post_json(&c, &app, "/api/v1/machines", &machine_body("Prusa MK3S")).await;
    assert_eq!(status, 201);
    let machine = fabrique_controller::domain::MachineId(machine["id"].as_i64().unwrap());
    let training = TrainingInput::parse("Impression 3D", "", "24", "", vec![machine]).unwrap();
    let training = app
        .lab
        .save_training(&manager, None, &training, now())
        .await
        .unwrap();
    let start = jiff::Timestamp::from_second(now() + 3 * 86_400).unwrap();
    let end = jiff::Timestamp::from_second(now() + 3 * 86_400 + 7200).unwrap();
    app.lab
        .create_session(&trainer, training.id, start, end, None, 6, "", now())
        .await
        .unwrap();
    let anonymous = client();
    let response = anonymous.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let html = unescaped(&response.text().await.unwrap());
    assert!(html.contains("<html lang=\"fr\">"));
    for text in [
        "Horaires d'ouverture",
        "Prusa MK3S",
        "Hors ligne",
        "Formation nécessaire\u{a0}: Impression 3D",
        "6 places libres sur 6",
        "href=\"/login\"",
    ] {
        assert!(html.contains(text), "{text} in {html}");
    }
    assert!(
        html.contains("Ouvert en ce moment") || html.contains("Fermé en ce moment"),
        "{html}"
    );
    assert!(
        !html.contains("karim") && !html.contains("nadia"),
        "no names: {html}"
    );
    let html = anonymous
        .get(app.url("/"))
        .header("accept-language", "en-GB,en;q=0.8")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Opening hours") && html.contains("Training needed: Impression 3D"));
}

async fn client_post_json(
    c: &Client,
    app: &TestApp,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    json_of(c.post(app.url(path)).json(body).send().await.unwrap()).await
}

/// Every route, for every role and for nobody, answers what the rules say.
#[tokio::test]
async fn authorization_matrix() {
    let app = spawn_app().await;
    let anonymous = client();
    let _ = app.csrf(&anonymous).await;
    let mut clients = vec![("anonymous", anonymous, None)];
    for (name, role) in [
        ("member", Role::Member),
        ("trainer", Role::Trainer),
        ("manager", Role::Manager),
        ("admin", Role::Admin),
    ] {
        let (c, user) = app.signed_in(name, role).await;
        clients.push((name, c, Some(user)));
    }
    let member_id = clients[1].2.as_ref().unwrap().id.0;
    let (manager_client, _) = (&clients[3].1, ());
    let (status, machine) = client_post_json(
        manager_client,
        &app,
        "/api/v1/machines",
        &machine_body("Laser"),
    )
    .await;
    assert_eq!(status, 201);
    let m = machine["id"].as_i64().unwrap();
    let (camp, b, r, f) = campaign_for_the_matrix(&app, clients[3].2.as_ref().unwrap()).await;

    // (method, path, body, expected for anonymous, member, trainer, manager, admin).
    // Pages send nobody to the login page (303); the API answers 401.
    let all = [200, 200, 200, 200];
    let managers = [403, 403, 200, 200];
    let pages: Vec<(&str, String, [u16; 5])> = vec![
        ("GET", "/".into(), [200; 5]),
        ("GET", format!("/machines/{m}"), prepend(303, all)),
        ("GET", "/account".into(), prepend(303, all)),
        ("GET", "/members".into(), prepend(303, managers)),
        ("GET", "/members/new".into(), prepend(303, managers)),
        (
            "GET",
            format!("/members/{member_id}"),
            prepend(303, managers),
        ),
        (
            "GET",
            format!("/members/{member_id}/card"),
            prepend(303, managers),
        ),
        ("GET", "/grid".into(), prepend(303, all)),
        ("GET", "/grid?view=week".into(), prepend(303, all)),
        ("GET", "/admin/machines".into(), prepend(303, managers)),
        ("GET", "/admin/machines/new".into(), prepend(303, managers)),
        (
            "GET",
            format!("/admin/machines/{m}"),
            prepend(303, managers),
        ),
        ("GET", "/login".into(), [200, 303, 303, 303, 303]),
        ("GET", "/healthz".into(), [200; 5]),
        ("GET", "/static/app.css".into(), [200; 5]),
        ("GET", "/api/v1/openapi.json".into(), [200; 5]),
        ("GET", "/api/v1/me".into(), prepend(401, all)),
        ("GET", "/api/v1/members".into(), prepend(401, managers)),
        (
            "GET",
            format!("/api/v1/members/{member_id}"),
            [401, 200, 403, 200, 200],
        ),
        ("GET", "/api/v1/machines".into(), prepend(401, all)),
        ("GET", format!("/api/v1/machines/{m}"), prepend(401, all)),
        // Campaigns: public pages and counts, makers' pages, managers' pages.
        ("GET", "/campaigns".into(), [200; 5]),
        ("GET", format!("/campaigns/{camp}"), [200; 5]),
        ("GET", format!("/campaigns/{camp}/request"), [200; 5]),
        (
            "GET",
            format!("/campaigns/{camp}/contribute"),
            prepend(303, all),
        ),
        (
            "GET",
            format!("/campaigns/{camp}/files/{f}"),
            prepend(303, all),
        ),
        ("GET", "/campaigns/new".into(), prepend(303, managers)),
        (
            "GET",
            format!("/campaigns/{camp}/edit"),
            prepend(303, managers),
        ),
        (
            "GET",
            format!("/campaigns/{camp}/manage"),
            prepend(303, managers),
        ),
        (
            "GET",
            format!("/campaigns/{camp}/requests"),
            prepend(303, managers),
        ),
        (
            "GET",
            format!("/campaigns/{camp}/batches"),
            prepend(303, managers),
        ),
        (
            "GET",
            format!("/campaigns/{camp}/batches/{b}"),
            prepend(303, managers),
        ),
        (
            "GET",
            format!("/campaigns/{camp}/materials"),
            prepend(303, managers),
        ),
        (
            "GET",
            format!("/campaigns/{camp}/deliveries"),
            prepend(303, managers),
        ),
        (
            "GET",
            format!("/campaigns/{camp}/export/batches.csv"),
            prepend(303, managers),
        ),
        (
            "GET",
            format!("/campaigns/{camp}/export/deliveries.csv"),
            prepend(303, managers),
        ),
        ("GET", "/api/v1/campaigns".into(), [200; 5]),
        ("GET", format!("/api/v1/campaigns/{camp}"), [200; 5]),
        (
            "GET",
            format!("/api/v1/campaigns/{camp}/requests"),
            prepend(401, managers),
        ),
        (
            "GET",
            format!("/api/v1/campaigns/{camp}/pledges"),
            prepend(401, all),
        ),
        (
            "GET",
            format!("/api/v1/campaigns/{camp}/batches"),
            prepend(401, all),
        ),
    ];
    for (method, path, expected) in &pages {
        for ((who, c, _), want) in clients.iter().zip(expected) {
            let got = c
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(path),
                )
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(got.as_u16(), *want, "{method} {path} as {who}");
        }
    }

    // Changes, through the API (JSON) and through forms (with each client's CSRF token).
    for (i, (who, c, _)) in clients.iter().enumerate() {
        let want = |row: [u16; 5]| row[i];
        let send = |method: Method, path: String, body: Value| {
            let request = c.request(method, app.url(&path)).json(&body);
            async move { request.send().await.unwrap().status().as_u16() }
        };
        let created = [401, 403, 403, 201, 201];
        assert_eq!(
            send(
                Method::POST,
                "/api/v1/machines".into(),
                machine_body(&format!("Printer {who}"))
            )
            .await,
            want(created),
            "POST machines as {who}"
        );
        assert_eq!(
            send(
                Method::POST,
                format!("/api/v1/machines/{m}/state"),
                json!({"state": "maintenance"})
            )
            .await,
            want([401, 403, 403, 200, 200]),
            "POST machine state as {who}"
        );
        assert_eq!(
            send(
                Method::PUT,
                format!("/api/v1/machines/{m}"),
                machine_body("Laser")
            )
            .await,
            want([401, 403, 403, 200, 200]),
            "PUT machine as {who}"
        );
        let new_member = json!({"username": format!("new-{who}"), "role": "member", "credential_kind": "pin", "secret": "123456"});
        assert_eq!(
            send(Method::POST, "/api/v1/members".into(), new_member).await,
            want(created),
            "POST members as {who}"
        );
        assert_eq!(
            send(
                Method::PATCH,
                format!("/api/v1/members/{member_id}"),
                json!({"display_name": "Josette B."})
            )
            .await,
            want([401, 200, 403, 200, 200]),
            "PATCH member as {who}"
        );
        assert_eq!(
            send(Method::PATCH, "/api/v1/me".into(), json!({"lang": "fr"})).await,
            want([401, 200, 200, 200, 200]),
            "PATCH me as {who}"
        );
        assert_eq!(
            send(
                Method::POST,
                "/api/v1/me/api-keys".into(),
                json!({"label": "x"})
            )
            .await,
            want([401, 201, 201, 201, 201]),
            "POST api key as {who}"
        );

        let token = if i == 0 {
            app.csrf(c).await
        } else {
            app.page_csrf(c, "/account").await
        };
        let form = |path: &str, fields: Vec<(&str, String)>| {
            let mut fields = fields;
            fields.push(("csrf_token", token.clone()));
            c.post(app.url(path)).form(&fields).send()
        };
        let status = form(
            "/admin/machines/new",
            vec![
                ("name", format!("Form {who}")),
                ("kind", "other".into()),
                ("connection", "manual".into()),
            ],
        )
        .await
        .unwrap()
        .status()
        .as_u16();
        assert_eq!(
            status,
            [303, 403, 403, 303, 303][i],
            "form: new machine as {who}"
        );
        let status = form(
            "/members/new",
            vec![
                ("username", format!("form-{who}")),
                ("role", "member".into()),
                ("lang", "fr".into()),
                ("credential_kind", "pin".into()),
                ("secret", "654321".into()),
            ],
        )
        .await
        .unwrap()
        .status()
        .as_u16();
        assert_eq!(
            status,
            [303, 403, 403, 303, 303][i],
            "form: new member as {who}"
        );
        let status = form(
            &format!("/machines/{m}/state"),
            vec![("state", "idle".into())],
        )
        .await
        .unwrap()
        .status()
        .as_u16();
        assert_eq!(
            status,
            [303, 403, 403, 303, 303][i],
            "form: machine state as {who}"
        );

        // Campaigns: anyone sends a request, members pledge, managers run the rest.
        let status = form(
            &format!("/campaigns/{camp}/request"),
            vec![
                ("organisation", format!("Structure {who}")),
                ("kind", "school".into()),
                ("quantity", "5".into()),
                ("needed_by", "2099-01-01".into()),
                ("delivery_place", "Cour".into()),
                ("contact_name", "Mme B".into()),
                ("contact_email", "ecole@exemple.fr".into()),
            ],
        )
        .await
        .unwrap()
        .status()
        .as_u16();
        assert_eq!(status, 201, "form: campaign request as {who}");
        let status = form(
            &format!("/campaigns/{camp}/pledges"),
            vec![
                ("quantity", "3".into()),
                ("due_by", "2099-01-01".into()),
                ("place", "home".into()),
            ],
        )
        .await
        .unwrap()
        .status()
        .as_u16();
        assert_eq!(
            status, 303,
            "form: pledge as {who} (anonymous to the login)"
        );
        for (path, fields) in [
            (
                format!("/campaigns/{camp}/materials"),
                vec![
                    ("name", format!("Matériel {who}")),
                    ("unit", "pièce".into()),
                    ("per_item", "1".into()),
                ],
            ),
            (
                format!("/campaigns/{camp}/requests/{r}/priority"),
                vec![("priority", "2".into())],
            ),
            (
                "/campaigns/new".to_string(),
                vec![
                    ("title", format!("Campagne {who}")),
                    ("item", "objet".into()),
                    ("target_quantity", "10".into()),
                ],
            ),
        ] {
            let status = form(&path, fields).await.unwrap().status().as_u16();
            assert_eq!(
                status,
                [303, 403, 403, 303, 303][i],
                "form: {path} as {who}"
            );
        }
        assert_eq!(
            send(
                Method::POST,
                format!("/api/v1/campaigns/{camp}/pledges"),
                json!({"quantity": 2, "due_by": "2099-01-01", "place": "lab"})
            )
            .await,
            want([401, 201, 201, 201, 201]),
            "POST pledge as {who}"
        );
    }
    let campaigns: Vec<String> = app
        .lab
        .campaigns(clients[3].2.as_ref())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.title)
        .collect();
    for who in ["anonymous", "member", "trainer"] {
        assert!(
            !campaigns.iter().any(|t| t.ends_with(who)),
            "{who} created a campaign: {campaigns:?}"
        );
    }
    // Only the managers' and the admin's machines and members exist.
    let names: Vec<String> = app
        .lab
        .machines()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    for who in ["anonymous", "member", "trainer"] {
        assert!(
            !names.iter().any(|n| n.ends_with(who)),
            "{who} created a machine: {names:?}"
        );
    }
    assert!(
        names.contains(&"Printer manager".to_string()) && names.contains(&"Form admin".to_string())
    );
}

/// An open campaign with a validated model file, a request and a batch: (campaign, batch,
/// request, file).
async fn campaign_for_the_matrix(
    app: &TestApp,
    manager: &fabrique_controller::domain::User,
) -> (i64, i64, i64, i64) {
    use fabrique_controller::domain::campaign::{
        CampaignInput, CampaignState, ItemName, RequestInput,
    };
    use fabrique_controller::lab::now;
    let lab = &app.lab;
    let input = CampaignInput::parse(
        "Visières",
        ItemName::parse("visière", "", "feminine").unwrap(),
        "",
        "",
        "50",
        "Accueil",
    )
    .unwrap();
    let c = lab
        .create_campaign(manager, &input, now())
        .await
        .unwrap()
        .id;
    lab.set_campaign_state(manager, c, CampaignState::Open, now())
        .await
        .unwrap();
    let file = lab
        .add_campaign_file(
            manager,
            c,
            "bandeau.gcode",
            "matrix-model.gcode",
            &"0".repeat(64),
            b"G28\n",
            &fabrique_machines::files::FileSummary::Gcode(Box::new(
                fabrique_machines::files::gcode::analyze(&b"G28\n"[..], None).unwrap(),
            )),
            now(),
        )
        .await
        .unwrap()
        .id;
    lab.validate_campaign_file(manager, c, file, "essayé", 1, now())
        .await
        .unwrap();
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let request = RequestInput::parse(
        "EHPAD",
        "care_home",
        "10",
        "2099-01-01",
        "Accueil",
        "Mme A",
        "0478000000",
        "",
        today,
    )
    .unwrap();
    lab.submit_request(c, &request, "10.9.9.9", now())
        .await
        .unwrap();
    let r = lab.requests(manager, c).await.unwrap()[0].id.0;
    let b = lab
        .declare_batch(manager, c, None, 5, now())
        .await
        .unwrap()
        .id
        .0;
    (c.0, b, r, file.0)
}

fn prepend(first: u16, rest: [u16; 4]) -> [u16; 5] {
    [first, rest[0], rest[1], rest[2], rest[3]]
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let (c, _) = app.signed_in("nadia", Role::Manager).await;
    let response = c
        .post(app.url("/admin/machines/new"))
        .form(&[
            ("name", "Sneaky"),
            ("kind", "other"),
            ("connection", "manual"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Le formulaire a expiré")
    );
    let response = c
        .post(app.url("/admin/machines/new"))
        .form(&[
            ("name", "Sneaky"),
            ("kind", "other"),
            ("connection", "manual"),
            ("csrf_token", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // A JSON API call with a session must be JSON: a cross-site form cannot send that.
    let response = c
        .post(app.url("/api/v1/machines"))
        .body(machine_body("Sneaky").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(app.lab.machines().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let app = spawn_app_small_bodies().await;
    let (c, _) = app.signed_in("nadia", Role::Manager).await;
    let users_before = app.lab.store().count_users().await.unwrap();

    // Oversized body.
    let huge = json!({"username": "x".repeat(40_000), "role": "member", "credential_kind": "pin", "secret": "123456"});
    let (status, body) = client_post_json(&c, &app, "/api/v1/members", &huge).await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (413, "payload_too_large")
    );

    // Wrong types and unknown fields.
    let (status, body) = client_post_json(
        &c,
        &app,
        "/api/v1/members",
        &json!({"username": 5, "role": "member"}),
    )
    .await;
    assert_eq!((status.as_u16(), error_code(&body)), (422, "invalid_input"));
    let (status, body) = client_post_json(
        &c,
        &app,
        "/api/v1/machines",
        &json!({"name": "A", "kind": "other", "connection": {"kind": "manual"}, "colour": "red"}),
    )
    .await;
    assert_eq!((status.as_u16(), error_code(&body)), (422, "invalid_input"));
    let response = c
        .post(app.url("/api/v1/members"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!((status.as_u16(), error_code(&body)), (400, "bad_request"));

    // Values that parse but break a rule name the field.
    let (status, body) = client_post_json(&c, &app, "/api/v1/members", &json!({"username": "ok-name", "role": "member", "credential_kind": "pin", "secret": "12ab56"})).await;
    assert_eq!((status.as_u16(), error_code(&body)), (422, "invalid_input"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chiffres"),
        "{body}"
    );
    let (status, _) = client_post_json(&c, &app, "/api/v1/members", &json!({"username": "ok-name", "role": "emperor", "credential_kind": "pin", "secret": "123456"})).await;
    assert_eq!(status, 422);

    // Injection-looking strings are refused where they are not allowed, stored as text elsewhere.
    let (status, body) = client_post_json(&c, &app, "/api/v1/members", &json!({"username": "robert'); DROP TABLE users;--", "role": "member", "credential_kind": "pin", "secret": "123456"})).await;
    assert_eq!((status.as_u16(), error_code(&body)), (422, "invalid_input"));
    assert_eq!(
        app.lab.store().count_users().await.unwrap(),
        users_before,
        "nothing written"
    );
    let (status, created) = client_post_json(&c, &app, "/api/v1/members", &json!({"username": "bobby", "display_name": "<script>alert(1)</script>' OR 1=1 --", "role": "member", "credential_kind": "pin", "secret": "123456"})).await;
    assert_eq!(status, 201);
    let html = c
        .get(app.url("/members"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("<script>alert(1)</script>"),
        "display names are escaped"
    );
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{html}"
    );
    assert_eq!(
        created["display_name"],
        "<script>alert(1)</script>' OR 1=1 --"
    );

    // Unknown ids and malformed ids.
    for path in ["/api/v1/machines/999999", "/api/v1/members/999999"] {
        let (status, body) = json_of(c.get(app.url(path)).send().await.unwrap()).await;
        assert_eq!(
            (status.as_u16(), error_code(&body)),
            (404, "not_found"),
            "{path}"
        );
    }
    let (status, body) =
        json_of(c.get(app.url("/api/v1/machines/abc")).send().await.unwrap()).await;
    assert_eq!((status.as_u16(), error_code(&body)), (400, "bad_request"));
    let response = c.get(app.url("/machines/999999")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(unescaped(&response.text().await.unwrap()).contains("n'existe pas"));
    let (status, _) = json_of(c.get(app.url("/api/v1/nowhere")).send().await.unwrap()).await;
    assert_eq!(status, 404);

    // A refused form is shown again with what was typed.
    let token = app.page_csrf(&c, "/admin/machines/new").await;
    let response = c
        .post(app.url("/admin/machines/new"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("name", "Ma laser"),
            ("kind", "laser_cutter"),
            ("connection", "serial_grbl"),
            ("serial_port", ""),
            ("work_x", "abc"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("value=\"Ma laser\""), "typed values kept");
    assert!(html.contains("Port série"), "the field is named");
    assert!(app.lab.machines().await.unwrap().is_empty());
}

async fn spawn_app_small_bodies() -> TestApp {
    common::spawn_app_with(Layer {
        max_body_kb: Some(16),
        ..Layer::default()
    })
    .await
}

#[tokio::test]
async fn login_is_throttled_after_five_failures() {
    let app = spawn_app().await;
    app.add_user("amina", Role::Member).await;
    let c = client();
    for _ in 0..5 {
        assert_eq!(app.login(&c, "amina", "wrong password").await.status(), 401);
    }
    let response = app.login(&c, "amina", PASSWORD).await;
    assert_eq!(response.status(), 429);
    assert!(response.text().await.unwrap().contains("Trop d"));
}

#[tokio::test]
async fn pin_accounts_for_members_without_email() {
    let app = spawn_app().await;
    let (manager, _) = app.signed_in("nadia", Role::Manager).await;
    let (status, body) = client_post_json(&manager, &app, "/api/v1/members", &json!({
        "username": "josette", "display_name": "Josette", "role": "member", "credential_kind": "pin", "secret": "482913"
    }))
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["credential_kind"], "pin");
    assert_eq!(body["email"], Value::Null);
    let c = client();
    assert_eq!(app.login(&c, "josette", "482913").await.status(), 303);
    let (_, me) = json_of(c.get(app.url("/api/v1/me")).send().await.unwrap()).await;
    assert_eq!(me["username"], "josette");
    // A PIN shorter than six digits is refused by the manager's form.
    let token = app.page_csrf(&manager, "/members/new").await;
    let response = manager
        .post(app.url("/members/new"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", "marcel"),
            ("role", "member"),
            ("lang", "fr"),
            ("credential_kind", "pin"),
            ("secret", "1234"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("6 à 12 chiffres"));
}

#[tokio::test]
async fn sessions_cookies_are_http_only_lax_and_secure_behind_https() {
    let app = spawn_app().await;
    app.add_user("amina", Role::Member).await;
    let response = client()
        .post(app.url("/api/v1/login"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"username": "amina", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("fabrique_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let c = client();
    let response = app.login(&c, "amina", PASSWORD).await;
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on the LAN: {cookie}"
    );

    // Logging out ends the session.
    let token = app.page_csrf(&c, "/account").await;
    assert_eq!(
        c.post(app.url("/logout"))
            .form(&[("csrf_token", token)])
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    assert_eq!(
        c.get(app.url("/api/v1/me")).send().await.unwrap().status(),
        401
    );
}

#[tokio::test]
async fn api_keys_authenticate_and_are_shown_once() {
    let app = spawn_app().await;
    let (c, _) = app.signed_in("amina", Role::Member).await;
    let token = app.page_csrf(&c, "/account").await;
    let html = c
        .post(app.url("/account/api-keys"))
        .form(&[("csrf_token", token.as_str()), ("label", "PrusaSlicer")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = html.find("class=\"secret-once\">").unwrap() + 20;
    let key = html[start..].split('<').next().unwrap().to_string();
    assert!(key.starts_with("fab_"));
    let html = c
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains(&key), "the key is shown only once");
    assert!(html.contains("PrusaSlicer"));

    let (status, me) = json_of(
        client()
            .get(app.url("/api/v1/me"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), me["username"].as_str()),
        (200, Some("amina"))
    );
    // With an API key, no CSRF token is needed and no cookie is set.
    let response = client()
        .patch(app.url("/api/v1/me"))
        .header("x-api-key", &key)
        .json(&json!({"lang": "en"}))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("set-cookie").is_none());
    assert_eq!(response.status(), 200);
    let (status, body) = json_of(
        client()
            .get(app.url("/api/v1/me"))
            .header("x-api-key", "fab_wrong")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), error_code(&body)), (401, "bad_api_key"));
    assert_eq!(
        body["error"]["message"],
        "Cette clé d'API n'est pas valide ou a été supprimée."
    );
}

#[tokio::test]
async fn the_octoprint_api_key_is_never_shown_back() {
    let app = spawn_app().await;
    let (c, _) = app.signed_in("nadia", Role::Manager).await;
    let secret_key = "E0A1B2C3D4SECRET";
    let body = json!({"name": "Octo", "kind": "fdm_printer", "connection": {"kind": "octoprint", "url": "http://octopi.local", "api_key": secret_key}});
    let (status, machine) = client_post_json(&c, &app, "/api/v1/machines", &body).await;
    assert_eq!(status, 201);
    assert!(!machine.to_string().contains(secret_key));
    assert_eq!(machine["connection"]["has_api_key"], true);
    let id = machine["id"].as_i64().unwrap();
    for path in [
        format!("/admin/machines/{id}"),
        format!("/machines/{id}"),
        "/admin/machines".to_string(),
    ] {
        let html = c
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!html.contains(secret_key), "{path} shows the key");
    }
    // Saving the form with the key field empty keeps the stored key.
    let token = app.page_csrf(&c, &format!("/admin/machines/{id}")).await;
    let response = c
        .post(app.url(&format!("/admin/machines/{id}")))
        .form(&[
            ("csrf_token", token.as_str()),
            ("name", "Octo 2"),
            ("kind", "fdm_printer"),
            ("connection", "octoprint"),
            ("url", "http://octopi.local"),
            ("api_key", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let stored = app
        .lab
        .machine(fabrique_controller::domain::MachineId(id))
        .await
        .unwrap();
    match stored.connection {
        fabrique_controller::domain::Connection::OctoPrint { api_key, .. } => {
            assert_eq!(api_key.expose(), secret_key)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn language_follows_the_choice_then_the_browser() {
    let app = spawn_app().await;
    let c = client();
    let html = c
        .get(app.url("/login"))
        .header("accept-language", "en-US,en;q=0.8")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<html lang=\"en\">") && html.contains("Log in"));
    let html = c
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<html lang=\"fr\">") && html.contains("Se connecter"));
    let token = csrf_in(&html);
    let response = c
        .post(app.url("/lang"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("lang", "en"),
            ("next", "/login"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let html = c
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<html lang=\"en\">"),
        "the cookie wins over Accept-Language"
    );
    // Signed in, the account's language applies; the header's switch changes this browser
    // only (a shared workshop PC), never the account.
    let (m, user) = app.signed_in("amina", Role::Member).await;
    let token = app.page_csrf(&m, "/").await;
    m.post(app.url("/lang"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("lang", "en"),
            ("next", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    let stored = app.lab.store().user(user.id).await.unwrap();
    assert_eq!(stored.lang.as_str(), "fr", "the account keeps its language");
    let html = m
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(unescaped(&html).contains("The fablab's machines"), "{html}");
    // The next login on this browser (logout, then someone logs in) is in the account's
    // language again.
    let token = app.page_csrf(&m, "/").await;
    let response = m
        .post(app.url("/logout"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(app.login(&m, "amina", PASSWORD).await.status(), 303);
    let html = m
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Les machines du fablab"), "{html}");
    // Chosen on the account page, it is the account's.
    let token = app.page_csrf(&m, "/account").await;
    let response = m
        .post(app.url("/account"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("display_name", "Amina"),
            ("email", ""),
            ("lang", "en"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let stored = app.lab.store().user(user.id).await.unwrap();
    assert_eq!(stored.lang.as_str(), "en");
    let html = m
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<html lang=\"en\">") && html.contains("Changes saved."),
        "{html}"
    );
}

#[tokio::test]
async fn members_edit_their_profile_and_change_their_password() {
    let app = spawn_app().await;
    let (c, user) = app.signed_in("amina", Role::Member).await;
    let token = app.page_csrf(&c, "/account").await;
    let response = c
        .post(app.url("/account"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("display_name", "Amina K."),
            ("email", "amina@centre.fr"),
            ("lang", "fr"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let stored = app.lab.store().user(user.id).await.unwrap();
    assert_eq!(
        (stored.display_name.as_str(), stored.email.as_deref()),
        ("Amina K.", Some("amina@centre.fr"))
    );
    let response = c
        .post(app.url("/account/secret"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("current", "not it"),
            ("new_secret", "a brand new password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let response = c
        .post(app.url("/account/secret"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("current", PASSWORD),
            ("new_secret", "a brand new password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        app.login(&client(), "amina", "a brand new password")
            .await
            .status(),
        303
    );
    // A member cannot make themselves a manager.
    let (status, _) = json_of(
        c.patch(app.url("/api/v1/me"))
            .json(&json!({"role": "manager"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(status == 401 || status == 403, "{status}");
}

#[tokio::test]
async fn managers_disable_members() {
    let app = spawn_app().await;
    let (manager, _) = app.signed_in("nadia", Role::Manager).await;
    let (member, user) = app.signed_in("josette", Role::Member).await;
    let token = app
        .page_csrf(&manager, &format!("/members/{}", user.id))
        .await;
    let response = manager
        .post(app.url(&format!("/members/{}", user.id)))
        .form(&[
            ("csrf_token", token.as_str()),
            ("display_name", "Josette"),
            ("email", ""),
            ("role", "member"),
            ("lang", "fr"),
            ("credential_kind", "password"),
            ("secret", ""),
            ("disabled", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        member
            .get(app.url("/api/v1/me"))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "session ended"
    );
    let response = app.login(&client(), "josette", PASSWORD).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("désactivé"));
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1() {
    let app = spawn_app().await;
    let text = client()
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/login",
        "/api/v1/members",
        "/api/v1/machines/{id}",
        "/api/v1/campaigns",
        "/api/v1/campaigns/{id}",
        "/api/v1/campaigns/{id}/requests",
        "/api/v1/campaigns/{id}/pledges",
        "/api/v1/campaigns/{id}/batches",
        "/api/v1/campaigns/{id}/batches/{batch}/drop",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    // An independent validator (PyPI openapi-spec-validator) checks the whole document.
    let file = app.dir.path().join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; from openapi_spec_validator import validate; from openapi_spec_validator.readers import read_from_filename; validate(read_from_filename(sys.argv[1])[0]); print('valid')"])
        .arg(&file)
        .output()
        .expect("python3 is needed: install it and `pip install -r .ci/requirements.txt`");
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document (or is not installed: pip install -r .ci/requirements.txt):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let (status, body) = json_of(client().get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ok"))
    );
}
