//! Solidarity campaigns over HTTP: the whole chain from a care home's request on the public
//! form to a delivery, traced back to the batch and the maker; lab prints planned as
//! campaign work; no recipient's contact outside the managers' pages; two managers
//! delivering the same items at once never allocate one twice; the public form's limits;
//! two labs on one database; CSV exports read by an independent parser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, client, csrf_in, spawn_app, spawn_second_node, unescaped};
use fabrique_controller::domain::campaign::{
    CampaignId, CampaignInput, CampaignState, DeliveryInput, ItemName, RequestInput,
};
use fabrique_controller::domain::job::JobState;
use fabrique_controller::domain::{Role, User};
use fabrique_controller::lab::now;
use fabrique_web::config::Layer;
use reqwest::Client;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

const KEYCHAIN: &[u8] = include_bytes!("data/mk3_keychain.gcode");

/// The contact of the care home in these tests: it must appear on managers' pages only.
const CONTACT_NAME: &str = "Mme Solange Verdier-Contact";
const CONTACT_PHONE: &str = "04 78 99 12 34";
const CONTACT_EMAIL: &str = "direction.tilleuls@ehpad-exemple.fr";

fn tomorrow() -> String {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Europe/Paris").unwrap())
        .date()
        .tomorrow()
        .unwrap()
        .to_string()
}

async fn text(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, unescaped(&response.text().await.unwrap()))
}

/// Posts a form with the client's CSRF token (read from `page`).
async fn post_form(
    app: &TestApp,
    c: &Client,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = app.page_csrf(c, page).await;
    let mut fields: Vec<(&str, &str)> = fields.to_vec();
    fields.push(("csrf_token", &token));
    c.post(app.url(action)).form(&fields).send().await.unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

/// A campaign with a validated model file and a bill of materials, opened: made by a
/// manager through the forms.
async fn open_campaign(app: &TestApp, manager: &Client) -> i64 {
    let response = post_form(
        app,
        manager,
        "/campaigns/new",
        "/campaigns/new",
        &[
            ("title", "Visières pour l'EHPAD"),
            ("item", "visière"),
            ("item_plural", ""),
            ("item_gender", "feminine"),
            (
                "description",
                "Des visières pour les soignants.\nMerci à tous !",
            ),
            ("profile", "PETG, couche 0,3 mm, 2 périmètres"),
            ("target_quantity", "200"),
            (
                "collection_points",
                "Accueil du centre social\nPharmacie du marché",
            ),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    let target = location(&response);
    let id: i64 = target
        .trim_start_matches("/campaigns/")
        .trim_end_matches("/manage")
        .parse()
        .unwrap();
    let materials = format!("/campaigns/{id}/materials");
    for (name, unit, per_item) in [("feuille PET", "pièce", "1"), ("élastique", "cm", "30")] {
        let response = post_form(
            app,
            manager,
            &materials,
            &materials,
            &[("name", name), ("unit", unit), ("per_item", per_item)],
        )
        .await;
        assert_eq!(response.status(), 303, "material {name}");
    }
    // The model file through the upload path, then validated after the prototype's trial.
    let token = app
        .page_csrf(manager, &format!("/campaigns/{id}/manage"))
        .await;
    let form = Form::new().part(
        "file",
        Part::bytes(KEYCHAIN.to_vec())
            .file_name("bandeau-visiere.gcode")
            .mime_str("application/octet-stream")
            .unwrap(),
    );
    let response = manager
        .post(app.url(&format!("/campaigns/{id}/files?csrf_token={token}")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let files = app
        .lab
        .store()
        .campaign_files(CampaignId(id))
        .await
        .unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].size_bytes, KEYCHAIN.len() as i64);
    let response = post_form(
        app,
        manager,
        &format!("/campaigns/{id}/manage"),
        &format!("/campaigns/{id}/files/{}/validate", files[0].id.0),
        &[
            ("note", "essayé par l'équipe soignante de l'EHPAD"),
            ("parts_per_print", "2"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    let response = post_form(
        app,
        manager,
        &format!("/campaigns/{id}/manage"),
        &format!("/campaigns/{id}/state"),
        &[("state", "open")],
    )
    .await;
    assert_eq!(response.status(), 303);
    id
}

/// The care home's request through the public form, by someone without an account.
/// Returns the follow link.
async fn ask(app: &TestApp, id: i64, organisation: &str, quantity: &str) -> String {
    let visitor = client();
    let (status, html) = text(
        visitor
            .get(app.url(&format!("/campaigns/{id}/request")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let token = csrf_in(&html);
    let needed = tomorrow();
    let response = visitor
        .post(app.url(&format!("/campaigns/{id}/request")))
        .form(&[
            ("csrf_token", token.as_str()),
            ("organisation", organisation),
            ("kind", "care_home"),
            ("quantity", quantity),
            ("needed_by", needed.as_str()),
            ("delivery_place", "12 rue des Lilas, accueil"),
            ("contact_name", CONTACT_NAME),
            ("contact_phone", CONTACT_PHONE),
            ("contact_email", CONTACT_EMAIL),
        ])
        .send()
        .await
        .unwrap();
    let (status, html) = text(response).await;
    assert_eq!(status, 201, "{html}");
    assert!(html.contains("Demande envoyée"));
    assert!(!html.contains(CONTACT_PHONE) && !html.contains(CONTACT_EMAIL));
    let start = html.find("/requests/").unwrap();
    html[start..].split('"').next().unwrap().to_string()
}

async fn api(c: &Client, app: &TestApp, path: &str) -> (u16, Value) {
    let response = c.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_whole_flow_from_a_care_homes_request_to_its_delivery() {
    let app = spawn_app().await;
    let (manager, _) = app.signed_in("nadia", Role::Manager).await;
    let (maker, maker_user) = app.signed_in("amina", Role::Member).await;
    let id = open_campaign(&app, &manager).await;
    let follow = ask(&app, id, "EHPAD Les Tilleuls", "20").await;

    // The organisation follows its request by its link, without an account.
    let (status, html) = text(client().get(app.url(&follow)).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("EHPAD Les Tilleuls") && html.contains("À examiner"),
        "{html}"
    );

    // The manager sees it with its contact and accepts it.
    let requests = format!("/campaigns/{id}/requests");
    let (_, html) = text(manager.get(app.url(&requests)).send().await.unwrap()).await;
    assert!(html.contains(CONTACT_PHONE) && html.contains(CONTACT_EMAIL));
    let request = app
        .lab
        .requests(&user(&app, "nadia").await, CampaignId(id))
        .await
        .unwrap()[0]
        .id
        .0;
    let response = post_form(
        &app,
        &manager,
        &requests,
        &format!("{requests}/{request}/accept"),
        &[],
    )
    .await;
    assert_eq!(response.status(), 303);

    // A maker downloads the validated file, pledges, declares a batch and drops it.
    let contribute = format!("/campaigns/{id}/contribute");
    let (status, html) = text(maker.get(app.url(&contribute)).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("bandeau-visiere.gcode") && html.contains("essayé par l'équipe soignante")
    );
    let file = app
        .lab
        .store()
        .campaign_files(CampaignId(id))
        .await
        .unwrap()[0]
        .id
        .0;
    let download = maker
        .get(app.url(&format!("/campaigns/{id}/files/{file}")))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().as_ref(), KEYCHAIN);
    let due = tomorrow();
    let response = post_form(
        &app,
        &maker,
        &contribute,
        &format!("/campaigns/{id}/pledges"),
        &[
            ("quantity", "25"),
            ("due_by", due.as_str()),
            ("place", "home"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    let response = post_form(
        &app,
        &maker,
        &contribute,
        &format!("/campaigns/{id}/batches"),
        &[("quantity", "22")],
    )
    .await;
    assert_eq!(response.status(), 303);
    let batch = app
        .lab
        .my_batches(&maker_user, CampaignId(id))
        .await
        .unwrap()[0]
        .id
        .0;
    let response = post_form(
        &app,
        &maker,
        &contribute,
        &format!("/campaigns/{id}/batches/{batch}/drop"),
        &[("collection_point", "Pharmacie du marché")],
    )
    .await;
    assert_eq!(response.status(), 303);

    // The manager counts 21 parts, rejects one with a reason, and records donations.
    let batches = format!("/campaigns/{id}/batches");
    let response = post_form(
        &app,
        &manager,
        &batches,
        &format!("{batches}/{batch}/receive"),
        &[("quantity", "21")],
    )
    .await;
    assert_eq!(response.status(), 303);
    let response = post_form(
        &app,
        &manager,
        &batches,
        &format!("{batches}/{batch}/check"),
        &[("accepted", "20")],
    )
    .await;
    assert_eq!(response.status(), 422, "a rejected part needs a reason");
    let response = post_form(
        &app,
        &manager,
        &batches,
        &format!("{batches}/{batch}/check"),
        &[("accepted", "20"), ("reason", "bandeau fendu")],
    )
    .await;
    assert_eq!(response.status(), 303);
    let materials = format!("/campaigns/{id}/materials");
    let bom = app
        .lab
        .materials(&user(&app, "nadia").await, CampaignId(id))
        .await
        .unwrap();
    for (material, quantity) in [(bom[0].id.0, "100"), (bom[1].id.0, "300")] {
        let response = post_form(
            &app,
            &manager,
            &materials,
            &format!("/campaigns/{id}/donations"),
            &[
                ("material", &material.to_string()),
                ("donor", "Pharmacie du marché"),
                ("quantity", quantity),
            ],
        )
        .await;
        assert_eq!(response.status(), 303);
    }
    let (_, html) = text(manager.get(app.url(&materials)).send().await.unwrap()).await;
    assert!(
        html.contains("on peut encore assembler 10 visières"),
        "300 cm of elastic at 30 cm each: {html}"
    );

    // Assembly takes the bill of materials; more than the stock allows is refused.
    let response = post_form(
        &app,
        &manager,
        &batches,
        &format!("/campaigns/{id}/assemblies"),
        &[("quantity", "12")],
    )
    .await;
    let (status, html) = text(response).await;
    assert_eq!(status, 409);
    assert!(
        html.contains("Stock insuffisant de «\u{202f}élastique\u{202f}»\u{a0}: il en manque 60 cm"),
        "{html}"
    );
    let response = post_form(
        &app,
        &manager,
        &batches,
        &format!("/campaigns/{id}/assemblies"),
        &[("quantity", "10")],
    )
    .await;
    assert_eq!(response.status(), 303);

    // Deliveries: more than assembled is refused; then 10 of the 20 asked.
    let deliveries = format!("/campaigns/{id}/deliveries");
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let response = post_form(
        &app,
        &manager,
        &deliveries,
        &deliveries,
        &[
            ("request", &request.to_string()),
            ("quantity", "11"),
            ("delivered_on", &today),
            ("delivered_by", "Karim"),
        ],
    )
    .await;
    let (status, html) = text(response).await;
    assert_eq!(status, 409);
    assert!(html.contains("il en reste 10"), "{html}");
    let response = post_form(
        &app,
        &manager,
        &deliveries,
        &deliveries,
        &[
            ("request", &request.to_string()),
            ("quantity", "10"),
            ("delivered_on", &today),
            ("delivered_by", "Karim"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);

    // The counts, derived from the records, on the API and the public page.
    let (status, body) = api(&client(), &app, &format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(status, 200);
    let counts = &body["counts"];
    for (name, want) in [
        ("requested", 20),
        ("pledged", 25),
        ("produced", 22),
        ("received", 21),
        ("accepted", 20),
        ("rejected", 1),
        ("assembled", 10),
        ("delivered", 10),
    ] {
        assert_eq!(counts[name], want, "{name} in {body}");
    }
    let (_, html) = text(
        client()
            .get(app.url(&format!("/campaigns/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        html.contains("<progress aria-labelledby=\"bar-delivered\" max=\"200\" value=\"10\">")
            && html.contains("Objectif\u{a0}: 200 visières")
            && html.contains("Demander des visières"),
        "{html}"
    );
    // The item's name counted and agreed with, on the list and on the lab's public face.
    for page in ["/campaigns", "/"] {
        let (_, html) = text(client().get(app.url(page)).send().await.unwrap()).await;
        assert!(
            html.contains("10 visières livrées sur 200"),
            "{page}: {html}"
        );
    }
    assert_eq!(
        (&body["item"], &body["item_plural"], &body["item_gender"]),
        (&json!("visière"), &json!("visières"), &json!("feminine"))
    );

    // The maker sees their own figures.
    let (_, mine) = text(maker.get(app.url(&contribute)).send().await.unwrap()).await;
    assert!(mine.contains("bandeau fendu"));
    let counts = app
        .lab
        .my_counts(&maker_user, CampaignId(id))
        .await
        .unwrap();
    assert_eq!(
        (
            counts.pledged,
            counts.declared,
            counts.received,
            counts.accepted,
            counts.rejected
        ),
        (25, 22, 21, 20, 1)
    );

    // The organisation sees 10 of 20 delivered; the rest is still to come.
    let (_, html) = text(client().get(app.url(&follow)).send().await.unwrap()).await;
    assert!(
        html.contains("10 sur 20") && html.contains("Acceptée"),
        "{html}"
    );

    // Recall: the batch's page lists the delivery and whom to call.
    let (status, html) = text(
        manager
            .get(app.url(&format!("{batches}/{batch}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("EHPAD Les Tilleuls") && html.contains(CONTACT_PHONE),
        "{html}"
    );
    assert!(html.contains("amina"), "the maker of the batch: {html}");

    // The last ten: the request is then fulfilled.
    let user = user(&app, "nadia").await;
    // No elastic left: an assembly waits for a donation.
    app.lab
        .assemble(&user, CampaignId(id), 5, now())
        .await
        .unwrap_err();
    let bom = app.lab.materials(&user, CampaignId(id)).await.unwrap();
    app.lab
        .record_donation(&user, CampaignId(id), bom[1].id, "Mercerie", 600, now())
        .await
        .unwrap();
    app.lab
        .assemble(&user, CampaignId(id), 10, now())
        .await
        .unwrap();
    let input = DeliveryInput::parse(
        fabrique_controller::domain::campaign::RequestId(request),
        "10",
        &today,
        "Karim",
    )
    .unwrap();
    app.lab
        .deliver(&user, CampaignId(id), &input, now())
        .await
        .unwrap();
    let (_, html) = text(client().get(app.url(&follow)).send().await.unwrap()).await;
    assert!(
        html.contains("20 sur 20") && html.contains("Livrée en totalité"),
        "{html}"
    );
    let (_, body) = api(&manager, &app, &format!("/api/v1/campaigns/{id}/requests")).await;
    assert_eq!(body[0]["fulfilled"], true);
    assert_eq!(body[0]["contact"]["phone"], CONTACT_PHONE);
}

async fn user(app: &TestApp, username: &str) -> User {
    app.lab
        .store()
        .user_by_username(&fabrique_controller::domain::Username::parse(username).unwrap())
        .await
        .unwrap()
}

/// A campaign set up through the use cases, for the tests that look at one thing.
async fn quick_campaign(app: &TestApp, manager: &User) -> CampaignId {
    let input = CampaignInput::parse(
        "Visières",
        ItemName::parse("visière", "", "feminine").unwrap(),
        "",
        "",
        "100",
        "Accueil",
    )
    .unwrap();
    let c = app
        .lab
        .create_campaign(manager, &input, now())
        .await
        .unwrap();
    app.lab
        .set_campaign_state(manager, c.id, CampaignState::Open, now())
        .await
        .unwrap();
    c.id
}

fn request_input(organisation: &str, quantity: i64) -> RequestInput {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    RequestInput::parse(
        organisation,
        "care_home",
        &quantity.to_string(),
        &today.tomorrow().unwrap().to_string(),
        "12 rue des Lilas",
        CONTACT_NAME,
        CONTACT_PHONE,
        CONTACT_EMAIL,
        today,
    )
    .unwrap()
}

/// `quantity` accepted parts in the campaign, from one maker's batch.
async fn accepted_parts(
    app: &TestApp,
    manager: &User,
    maker: &User,
    id: CampaignId,
    quantity: i64,
) {
    let b = app
        .lab
        .declare_batch(maker, id, None, quantity, now())
        .await
        .unwrap();
    app.lab
        .receive_batch(manager, id, b.id, quantity, now())
        .await
        .unwrap();
    app.lab
        .check_batch(manager, id, b.id, quantity, "", now())
        .await
        .unwrap();
}

#[tokio::test]
async fn no_public_page_maker_view_or_api_answer_shows_a_recipients_contact() {
    let app = spawn_app().await;
    let (manager_client, _) = app.signed_in("nadia", Role::Manager).await;
    let (member, maker) = app.signed_in("amina", Role::Member).await;
    let manager = user(&app, "nadia").await;
    let id = quick_campaign(&app, &manager).await;
    let follow_token = app
        .lab
        .submit_request(
            id,
            &request_input("EHPAD Les Tilleuls", 30),
            "10.1.2.3",
            now(),
        )
        .await
        .unwrap();
    let request = app.lab.requests(&manager, id).await.unwrap()[0].id;
    app.lab
        .accept_request(&manager, id, request, now())
        .await
        .unwrap();
    accepted_parts(&app, &manager, &maker, id, 5).await;
    app.lab.assemble(&manager, id, 5, now()).await.unwrap();
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let input = DeliveryInput::parse(request, "5", &today, "Karim").unwrap();
    app.lab.deliver(&manager, id, &input, now()).await.unwrap();
    let batch = app.lab.my_batches(&maker, id).await.unwrap()[0].id.0;
    let c = id.0;
    let anonymous = client();
    let paths = [
        "/campaigns".to_string(),
        format!("/campaigns/{c}"),
        format!("/campaigns/{c}/request"),
        format!("/requests/{follow_token}"),
        "/api/v1/campaigns".to_string(),
        format!("/api/v1/campaigns/{c}"),
        format!("/api/v1/campaigns/{c}/requests"),
        format!("/campaigns/{c}/requests"),
        format!("/campaigns/{c}/deliveries"),
        format!("/campaigns/{c}/batches/{batch}"),
        format!("/campaigns/{c}/export/deliveries.csv"),
        format!("/campaigns/{c}/contribute"),
        format!("/api/v1/campaigns/{c}/pledges"),
        format!("/api/v1/campaigns/{c}/batches"),
    ];
    let mut seen = 0;
    for (who, c) in [("anonymous", &anonymous), ("member", &member)] {
        for path in &paths {
            let (status, body) = text(c.get(app.url(path)).send().await.unwrap()).await;
            assert!(status < 500, "{who} {path}: {status}");
            if status == 200 {
                seen += 1;
            }
            for secret in [CONTACT_NAME, CONTACT_PHONE, CONTACT_EMAIL] {
                assert!(!body.contains(secret), "{who} sees a contact on {path}");
            }
        }
    }
    assert!(seen >= 12, "the public and maker pages answered: {seen}");
    // The managers' pages do show it: the check above looks for the right strings.
    for path in [
        format!("/campaigns/{c}/requests"),
        format!("/campaigns/{c}/batches/{batch}"),
        format!("/api/v1/campaigns/{c}/requests"),
    ] {
        let (status, body) = text(manager_client.get(app.url(&path)).send().await.unwrap()).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            body.contains(CONTACT_PHONE),
            "{path} shows the contact to managers"
        );
    }
}

/// Two managers deliver at the same moment, 30 deliveries of one item between them, to
/// three requests of five, with ten items assembled: exactly ten succeed, and no item is
/// allocated twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_managers_delivering_the_same_items_at_once_never_allocate_one_twice() {
    let app = spawn_app().await;
    let (first, _) = app.signed_in("nadia", Role::Manager).await;
    let (second, _) = app.signed_in("sami", Role::Manager).await;
    let manager = user(&app, "nadia").await;
    let maker = app.add_user("amina", Role::Member).await;
    let id = quick_campaign(&app, &manager).await;
    let mut requests = Vec::new();
    for i in 0..3 {
        app.lab
            .submit_request(
                id,
                &request_input(&format!("Structure {i}"), 5),
                &format!("10.0.0.{i}"),
                now(),
            )
            .await
            .unwrap();
    }
    for r in app.lab.requests(&manager, id).await.unwrap() {
        app.lab
            .accept_request(&manager, id, r.id, now())
            .await
            .unwrap();
        requests.push(r.id.0);
    }
    // Ten items in three assemblies, so that deliveries draw across them.
    accepted_parts(&app, &manager, &maker, id, 10).await;
    for n in [3, 3, 4] {
        app.lab.assemble(&manager, id, n, now()).await.unwrap();
    }
    let path = format!("/campaigns/{}/deliveries", id.0);
    let tokens = [
        app.page_csrf(&first, &path).await,
        app.page_csrf(&second, &path).await,
    ];
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(30));
    let mut tasks = Vec::new();
    for i in 0..30usize {
        let c = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let token = tokens[i % 2].clone();
        let (url, barrier, today) = (app.url(&path), barrier.clone(), today.clone());
        let request = requests[i % 3].to_string();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let response = c
                .post(url)
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("request", request.as_str()),
                    ("quantity", "1"),
                    ("delivered_on", today.as_str()),
                    ("delivered_by", "Karim"),
                ])
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }));
    }
    let mut done = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            303 => done += 1,
            409 | 422 => refused += 1,
            other => panic!("unexpected answer {other}"),
        }
    }
    assert_eq!((done, refused), (10, 20));
    let (counts, _) = app.lab.campaign_counts(None, id).await.unwrap();
    assert_eq!((counts.assembled, counts.delivered), (10, 10));
    assert_eq!(
        app.lab
            .store()
            .items_available(id, app.lab.lab_id())
            .await
            .unwrap(),
        0
    );
    for (quantity, left, delivered) in app.lab.store().assembly_ledger(id).await.unwrap() {
        assert_eq!(
            (left, delivered),
            (0, quantity),
            "every item of every assembly delivered once"
        );
    }
    for r in app.lab.requests(&manager, id).await.unwrap() {
        assert!(r.delivered <= r.quantity, "{r:?}");
    }
    // Two managers assembling the last parts at once: one gets them.
    accepted_parts(&app, &manager, &maker, id, 4).await;
    let path = format!("/campaigns/{}/batches", id.0);
    let send = |c: Client, token: String| {
        let url = app.url(&format!("/campaigns/{}/assemblies", id.0));
        async move {
            c.post(url)
                .form(&[("csrf_token", token.as_str()), ("quantity", "4")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let tokens = [
        app.page_csrf(&first, &path).await,
        app.page_csrf(&second, &path).await,
    ];
    let (a, b) = tokio::join!(
        send(first.clone(), tokens[0].clone()),
        send(second.clone(), tokens[1].clone())
    );
    let mut answers = [a, b];
    answers.sort_unstable();
    assert_eq!(answers, [303, 409]);
    let (counts, _) = app.lab.campaign_counts(None, id).await.unwrap();
    assert_eq!(counts.assembled, 14);
}

#[tokio::test]
async fn lab_prints_are_campaign_work_after_members_jobs_and_never_across_a_booking() {
    let app = spawn_app().await;
    let (manager_client, _) = app.signed_in("nadia", Role::Manager).await;
    let manager = user(&app, "nadia").await;
    let member = app.add_user("josette", Role::Member).await;
    let id = open_campaign(&app, &manager_client).await;
    app.let_printers_run_unattended(&manager).await;
    let profile = fabrique_controller::domain::MachineProfile::parse(
        ["250", "210", "210"],
        "300",
        "120",
        "",
        "",
        "",
    )
    .unwrap();
    let input = fabrique_controller::domain::MachineInput::new(
        "Prusa MK3S",
        fabrique_controller::domain::MachineKind::FdmPrinter,
        fabrique_controller::domain::Connection::Manual,
        profile,
        "Atelier",
        "",
    )
    .unwrap();
    let printer = app
        .lab
        .create_machine(&manager, &input, now())
        .await
        .unwrap();
    app.runtime.refresh(printer.id).await;
    // A member's booking in an hour and a half, and a member's job queued.
    let at = |s: i64| jiff::Timestamp::from_second(s).unwrap();
    let booked = (now() + 5400, now() + 9000);
    app.lab
        .book(
            &manager,
            printer.id,
            member.id,
            at(booked.0),
            at(booked.1),
            false,
            "",
            now(),
        )
        .await
        .unwrap();
    let job = app
        .submit_file(&member, None, "porte-cles.gcode", KEYCHAIN)
        .await;
    assert_eq!(job.state, JobState::Queued, "{job:?}");
    // The manager queues two lab prints.
    let file = app
        .lab
        .store()
        .campaign_files(CampaignId(id))
        .await
        .unwrap()[0]
        .id
        .0;
    let manage = format!("/campaigns/{id}/manage");
    let response = post_form(
        &app,
        &manager_client,
        &manage,
        &format!("/campaigns/{id}/prints"),
        &[("file", &file.to_string()), ("count", "2")],
    )
    .await;
    assert_eq!(response.status(), 303);
    let jobs: Vec<_> = app
        .lab
        .jobs_for(&manager)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.campaign == Some(CampaignId(id)))
        .collect();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.state == JobState::Queued), "{jobs:?}");
    // Each print has its own file, linked to the model.
    for j in &jobs {
        let path = app.dir.path().join("jobs").join(&j.stored_name);
        assert_eq!(std::fs::read(&path).unwrap(), KEYCHAIN);
    }
    let (_, body) = api(
        &manager_client,
        &app,
        &format!("/api/v1/jobs/{}", jobs[0].id.0),
    )
    .await;
    assert_eq!(body["campaign_id"], id);

    let planned = app.runtime.plan().await.unwrap();
    let place = |job: i64| {
        planned
            .plan
            .placements
            .iter()
            .find(|p| p.job == job)
            .unwrap_or_else(|| panic!("job {job} not planned: {:?}", planned.plan))
    };
    let first_print = jobs.iter().map(|j| place(j.id.0).start).min().unwrap();
    assert!(
        place(job.id.0).start <= first_print,
        "the member's job goes first"
    );
    for p in &planned.plan.placements {
        assert!(
            p.end.as_second() <= booked.0 || p.start.as_second() >= booked.1,
            "a job across the booking: {p:?}"
        );
    }

    // Done prints count as produced in the lab, then as received and accepted only
    // through a lab batch's reception and check.
    for j in &jobs {
        let store = app.lab.store();
        store
            .change_job_state(j.id, JobState::Queued, JobState::Running, None, "", now())
            .await
            .unwrap();
        store
            .change_job_state(j.id, JobState::Running, JobState::Done, None, "", now())
            .await
            .unwrap();
    }
    let (counts, _) = app.lab.campaign_counts(None, CampaignId(id)).await.unwrap();
    assert_eq!(
        (counts.produced, counts.received, counts.accepted),
        (4, 0, 0)
    );
    let batches = format!("/campaigns/{id}/batches");
    let response = post_form(
        &app,
        &manager_client,
        &batches,
        &format!("/campaigns/{id}/lab-batch"),
        &[],
    )
    .await;
    assert_eq!(response.status(), 303);
    let response = post_form(
        &app,
        &manager_client,
        &batches,
        &format!("/campaigns/{id}/lab-batch"),
        &[],
    )
    .await;
    assert_eq!(response.status(), 422, "nothing left to collect");
    let batch = app.lab.batches(&manager, CampaignId(id)).await.unwrap()[0].clone();
    assert_eq!((batch.quantity, batch.maker), (4, None));
    app.lab
        .receive_batch(&manager, CampaignId(id), batch.id, 4, now())
        .await
        .unwrap();
    app.lab
        .check_batch(&manager, CampaignId(id), batch.id, 3, "warping", now())
        .await
        .unwrap();
    let (counts, _) = app.lab.campaign_counts(None, CampaignId(id)).await.unwrap();
    assert_eq!(
        (
            counts.produced,
            counts.received,
            counts.accepted,
            counts.rejected
        ),
        (4, 4, 3, 1)
    );

    // Pausing the campaign cancels the prints that have not started.
    let response = post_form(
        &app,
        &manager_client,
        &manage,
        &format!("/campaigns/{id}/prints"),
        &[("file", &file.to_string()), ("count", "1")],
    )
    .await;
    assert_eq!(response.status(), 303);
    let response = post_form(
        &app,
        &manager_client,
        &manage,
        &format!("/campaigns/{id}/state"),
        &[("state", "paused")],
    )
    .await;
    assert_eq!(response.status(), 303);
    let waiting = app
        .lab
        .jobs_for(&manager)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.campaign.is_some() && j.state == JobState::Queued)
        .count();
    assert_eq!(waiting, 0);
    let (status, html) = text(
        post_form(
            &app,
            &manager_client,
            &manage,
            &format!("/campaigns/{id}/prints"),
            &[("file", &file.to_string()), ("count", "1")],
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains("pas ouverte"), "{html}");
}

#[tokio::test]
async fn the_public_form_is_bounded_and_rate_limited_per_address() {
    let app = common::spawn_app_with(Layer {
        max_body_kb: Some(16),
        ..Layer::default()
    })
    .await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let id = quick_campaign(&app, &manager).await.0;
    let visitor = client();
    let token = app.csrf(&visitor).await;
    let needed = tomorrow();
    let send = |organisation: String, phone: &'static str| {
        let visitor = visitor.clone();
        let (token, needed, url) = (
            token.clone(),
            needed.clone(),
            app.url(&format!("/campaigns/{id}/request")),
        );
        async move {
            let response = visitor
                .post(url)
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("organisation", organisation.as_str()),
                    ("kind", "shop"),
                    ("quantity", "10"),
                    ("needed_by", needed.as_str()),
                    ("delivery_place", "Place du marché"),
                    ("contact_name", "M. Durand"),
                    ("contact_phone", phone),
                ])
                .send()
                .await
                .unwrap();
            text(response).await
        }
    };
    // Without the CSRF token: refused, nothing written.
    let response = client()
        .post(app.url(&format!("/campaigns/{id}/request")))
        .form(&[
            ("organisation", "Boulangerie"),
            ("kind", "shop"),
            ("quantity", "10"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Too long, a wrong phone, no way to reach anyone: refused with the field named.
    let (status, html) = send("B".repeat(121), "04 78 12 34 56").await;
    assert_eq!(status, 422);
    assert!(
        html.contains("Nom de la structure — le texte est trop long"),
        "{html}"
    );
    let (status, html) = send("Boulangerie".into(), "appelez-moi").await;
    assert_eq!(status, 422);
    assert!(html.contains("Téléphone"), "{html}");
    assert!(
        html.contains("value=\"Boulangerie\""),
        "what was typed is kept"
    );
    let (status, _) = send("x".repeat(20_000), "0478123456").await;
    assert_eq!(status, 413, "the body limit");
    assert!(
        app.lab
            .requests(&manager, CampaignId(id))
            .await
            .unwrap()
            .is_empty()
    );
    // Five requests an hour from one address; the sixth waits.
    for i in 0..5 {
        let (status, _) = send(format!("Commerce {i}"), "0478123456").await;
        assert_eq!(status, 201);
    }
    let (status, html) = send("Commerce 6".into(), "0478123456").await;
    assert_eq!(status, 429);
    assert!(
        html.contains("Trop de demandes envoyées depuis cette adresse"),
        "{html}"
    );
    assert_eq!(
        app.lab
            .requests(&manager, CampaignId(id))
            .await
            .unwrap()
            .len(),
        5
    );
    // A paused campaign takes no request.
    app.lab
        .set_campaign_state(&manager, CampaignId(id), CampaignState::Paused, now())
        .await
        .unwrap();
    let requester = client();
    let token = app.csrf(&requester).await;
    let response = requester
        .post(app.url(&format!("/campaigns/{id}/request")))
        .form(&[
            ("csrf_token", token.as_str()),
            ("organisation", "Ecole"),
            ("kind", "school"),
            ("quantity", "3"),
            ("needed_by", needed.as_str()),
            ("delivery_place", "Cour"),
            ("contact_name", "Mme B"),
            ("contact_email", "ecole@exemple.fr"),
        ])
        .send()
        .await
        .unwrap();
    let (status, _) = text(response).await;
    assert_eq!(status, 422);
    // A draft does not exist for the public.
    let draft = app
        .lab
        .create_campaign(
            &manager,
            &CampaignInput::parse(
                "Brouillon",
                ItemName::parse("objet", "", "").unwrap(),
                "",
                "",
                "5",
                "",
            )
            .unwrap(),
            now(),
        )
        .await
        .unwrap();
    for path in [
        format!("/campaigns/{}", draft.id.0),
        format!("/api/v1/campaigns/{}", draft.id.0),
    ] {
        assert_eq!(
            client().get(app.url(&path)).send().await.unwrap().status(),
            404,
            "{path}"
        );
    }
}

#[tokio::test]
async fn managers_accept_prioritise_split_and_refuse_requests() {
    let app = spawn_app().await;
    let (c, _) = app.signed_in("nadia", Role::Manager).await;
    let manager = user(&app, "nadia").await;
    let id = quick_campaign(&app, &manager).await;
    let follow = app
        .lab
        .submit_request(id, &request_input("Hôpital Nord", 100), "10.0.0.1", now())
        .await
        .unwrap();
    app.lab
        .submit_request(id, &request_input("Supérette", 10), "10.0.0.2", now())
        .await
        .unwrap();
    let all = app.lab.requests(&manager, id).await.unwrap();
    let hospital = all
        .iter()
        .find(|r| r.organisation == "Hôpital Nord")
        .unwrap()
        .id
        .0;
    let shop = all
        .iter()
        .find(|r| r.organisation == "Supérette")
        .unwrap()
        .id
        .0;
    let page = format!("/campaigns/{}/requests", id.0);
    let act = |request: i64, action: &str| format!("{page}/{request}/{action}");
    assert_eq!(
        post_form(
            &app,
            &c,
            &page,
            &act(shop, "priority"),
            &[("priority", "5")]
        )
        .await
        .status(),
        303
    );
    assert_eq!(
        post_form(&app, &c, &page, &act(hospital, "accept"), &[])
            .await
            .status(),
        303
    );
    // A split keeps 1 to 99 in the first part.
    let (status, html) = text(
        post_form(
            &app,
            &c,
            &page,
            &act(hospital, "split"),
            &[("first", "100")],
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains("de 1 à 99"), "{html}");
    assert_eq!(
        post_form(&app, &c, &page, &act(hospital, "split"), &[("first", "60")])
            .await
            .status(),
        303
    );
    let all = app.lab.requests(&manager, id).await.unwrap();
    let parts: Vec<_> = all
        .iter()
        .filter(|r| r.parent.map(|p| p.0) == Some(hospital))
        .collect();
    assert_eq!(parts.iter().map(|r| r.quantity).sum::<i64>(), 100);
    assert!(
        parts
            .iter()
            .all(|r| r.status.as_str() == "accepted" && r.contact.phone == CONTACT_PHONE)
    );
    let (counts, _) = app.lab.campaign_counts(None, id).await.unwrap();
    assert_eq!(
        counts.requested, 110,
        "a split request counts once, through its parts"
    );
    // A refusal needs a reason, which the organisation reads.
    assert_eq!(
        post_form(
            &app,
            &c,
            &page,
            &act(parts[1].id.0, "refuse"),
            &[("reason", "")]
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        post_form(
            &app,
            &c,
            &page,
            &act(parts[1].id.0, "refuse"),
            &[("reason", "un autre fablab s'en occupe")]
        )
        .await
        .status(),
        303
    );
    let (counts, _) = app.lab.campaign_counts(None, id).await.unwrap();
    assert_eq!(counts.requested, 70);
    let (_, html) = text(
        client()
            .get(app.url(&format!("/requests/{follow}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        html.contains("un autre fablab s'en occupe") && html.contains("Acceptée"),
        "{html}"
    );
    // Decided requests cannot be decided again; the list puts the higher priority first.
    let (status, _) = text(post_form(&app, &c, &page, &act(hospital, "accept"), &[]).await).await;
    assert_eq!(status, 409);
    let (_, html) = text(c.get(app.url(&page)).send().await.unwrap()).await;
    assert!(html.find("Supérette").unwrap() < html.find("Hôpital Nord").unwrap());
    // Changing the state: an impossible step is refused, closing is final.
    let manage = format!("/campaigns/{}/manage", id.0);
    assert_eq!(
        post_form(
            &app,
            &c,
            &manage,
            &format!("/campaigns/{}/state", id.0),
            &[("state", "draft")]
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        post_form(
            &app,
            &c,
            &manage,
            &format!("/campaigns/{}/state", id.0),
            &[("state", "closed")]
        )
        .await
        .status(),
        303
    );
    assert_eq!(
        post_form(&app, &c, &page, &act(shop, "accept"), &[])
            .await
            .status(),
        422,
        "a closed campaign is read-only"
    );
}

#[tokio::test]
async fn two_labs_on_one_database_run_one_campaign_together() {
    let main = spawn_app().await;
    let north = spawn_second_node(
        &main,
        Layer {
            lab_name: Some("Fablab Nord".into()),
            ..Layer::default()
        },
    )
    .await;
    assert_ne!(main.lab.lab_id(), north.lab.lab_id());
    let (main_manager, _) = main.signed_in("nadia", Role::Manager).await;
    let north_manager = client();
    assert_eq!(
        north
            .login(&north_manager, "nadia", common::PASSWORD)
            .await
            .status(),
        303,
        "one database, one account"
    );
    let maker = main.add_user("amina", Role::Member).await;
    let id = open_campaign(&main, &main_manager).await;
    let manager = user(&main, "nadia").await;
    let c = CampaignId(id);
    // A maker's batch is received in the north lab: its parts are there, not in the main one.
    let b = main
        .lab
        .declare_batch(&maker, c, None, 6, now())
        .await
        .unwrap();
    let batches = format!("/campaigns/{id}/batches");
    let response = post_form(
        &north,
        &north_manager,
        &batches,
        &format!("{batches}/{}/receive", b.id.0),
        &[("quantity", "6")],
    )
    .await;
    assert_eq!(response.status(), 303);
    north
        .lab
        .check_batch(&manager, c, b.id, 6, "", now())
        .await
        .unwrap();
    for (lab, material, quantity) in [(&north.lab, 0, 6), (&north.lab, 1, 180), (&main.lab, 0, 50)]
    {
        let bom = lab.materials(&manager, c).await.unwrap();
        lab.record_donation(&manager, c, bom[material].id, "Mairie", quantity, now())
            .await
            .unwrap();
    }
    let err = main.lab.assemble(&manager, c, 1, now()).await.unwrap_err();
    assert!(format!("{err:?}").contains("NotEnoughParts"), "{err:?}");
    north.lab.assemble(&manager, c, 6, now()).await.unwrap();
    // The north lab prints too: the model file comes from the database into its own folder.
    let file = main.lab.store().campaign_files(c).await.unwrap()[0].id;
    let jobs = north
        .lab
        .queue_campaign_prints(&manager, c, file, 1, &north.dir.path().join("jobs"), now())
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let job = north.lab.store().job(jobs[0]).await.unwrap();
    assert_eq!(
        std::fs::read(north.dir.path().join("jobs").join(&job.stored_name)).unwrap(),
        KEYCHAIN
    );
    // Each lab's figures on the dashboard, and the campaign's in total.
    let (_, html) = text(
        main_manager
            .get(main.url(&format!("/campaigns/{id}/manage")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(html.contains("<th scope=\"row\">Fablab Nord</th><td>0</td><td>6</td><td>6</td><td>6</td><td>0</td><td>6</td>"), "{html}");
    assert!(html.contains("<th scope=\"row\">Fablab</th>"), "{html}");
    let (_, body) = api(&client(), &main, &format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(body["counts"]["assembled"], 6);
    let labs = body["labs"].as_array().unwrap();
    let nord = labs.iter().find(|l| l["lab"] == "Fablab Nord").unwrap();
    assert_eq!(
        (
            nord["counts"]["assembled"].as_i64(),
            nord["items_available"].as_i64()
        ),
        (Some(6), Some(6))
    );
    let fablab = labs.iter().find(|l| l["lab"] == "Fablab").unwrap();
    assert_eq!(
        fablab["materials_allow"], 0,
        "PET sheets but no elastic in the main lab"
    );
}

#[tokio::test]
async fn csv_exports_are_rfc_4180_and_neutralise_formulas() {
    let app = spawn_app().await;
    let (c, _) = app.signed_in("nadia", Role::Manager).await;
    let manager = user(&app, "nadia").await;
    let maker = app.add_user("amina", Role::Member).await;
    let id = quick_campaign(&app, &manager).await;
    let organisation = "=HYPERLINK(\"http://evil.example\";\"clic\"), \"EHPAD\"";
    app.lab
        .submit_request(id, &request_input(organisation, 3), "10.0.0.1", now())
        .await
        .unwrap();
    let request = app.lab.requests(&manager, id).await.unwrap()[0].id;
    app.lab
        .accept_request(&manager, id, request, now())
        .await
        .unwrap();
    let b = app
        .lab
        .declare_batch(&maker, id, None, 4, now())
        .await
        .unwrap();
    app.lab
        .receive_batch(&manager, id, b.id, 4, now())
        .await
        .unwrap();
    app.lab
        .check_batch(
            &manager,
            id,
            b.id,
            3,
            "@bavure, \"fil\"\nsur le bord",
            now(),
        )
        .await
        .unwrap_err();
    app.lab
        .check_batch(&manager, id, b.id, 3, "-bavure, \"fil\" sur le bord", now())
        .await
        .unwrap();
    app.lab.assemble(&manager, id, 3, now()).await.unwrap();
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    app.lab
        .deliver(
            &manager,
            id,
            &DeliveryInput::parse(request, "3", &today, "Karim").unwrap(),
            now(),
        )
        .await
        .unwrap();
    let mut files = Vec::new();
    for name in ["batches.csv", "deliveries.csv"] {
        let response = c
            .get(app.url(&format!("/campaigns/{}/export/{name}", id.0)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/csv; charset=utf-8"
        );
        let body = response.text().await.unwrap();
        assert!(body.ends_with("\r\n"));
        let path = app.dir.path().join(name);
        std::fs::write(&path, &body).unwrap();
        files.push(path);
    }
    // Python's csv module, an independent RFC 4180 reader, reads back every cell.
    let script = "import sys, csv, json\nprint(json.dumps([list(csv.reader(open(p, encoding='utf-8-sig', newline=''))) for p in sys.argv[1:]]))";
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .args(&files)
        .output()
        .expect("python3 is needed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tables: Vec<Vec<Vec<String>>> = serde_json::from_slice(&output.stdout).unwrap();
    let (batches, deliveries) = (&tables[0], &tables[1]);
    assert_eq!(batches[0][0], "lot");
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1][2], "amina");
    assert_eq!(
        batches[1][10], "'-bavure, \"fil\" sur le bord",
        "a leading minus is neutralised"
    );
    assert_eq!(deliveries.len(), 2);
    assert_eq!(
        deliveries[1][2],
        format!("'{organisation}"),
        "a formula is shown as text"
    );
    assert_eq!(
        deliveries[1][9], "amina",
        "the delivery traces back to the maker"
    );
    // Members may not export.
    let (member, _) = app.signed_in("josette", Role::Member).await;
    assert_eq!(
        member
            .get(app.url(&format!("/campaigns/{}/export/batches.csv", id.0)))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn the_campaign_api_lists_counts_and_a_makers_own_pledges_and_batches() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let id = quick_campaign(&app, &manager).await.0;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app
        .lab
        .create_api_key(&maker, "script", now())
        .await
        .unwrap();
    let other = app.add_user("karim", Role::Member).await;
    let other_key = app
        .lab
        .create_api_key(&other, "script", now())
        .await
        .unwrap();
    let call = |method: reqwest::Method, path: String, key: &str, body: Option<Value>| {
        let mut request = client()
            .request(method, app.url(&path))
            .header("x-api-key", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let due = tomorrow();
    let (status, pledge) = call(
        reqwest::Method::POST,
        format!("/api/v1/campaigns/{id}/pledges"),
        &key,
        Some(serde_json::json!({"quantity": 12, "due_by": due, "place": "lab"})),
    )
    .await;
    assert_eq!(status, 201, "{pledge}");
    assert_eq!(pledge["place"], "lab");
    let (status, body) = call(
        reqwest::Method::POST,
        format!("/api/v1/campaigns/{id}/pledges"),
        &key,
        Some(serde_json::json!({"quantity": 0, "due_by": due, "place": "lab"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_input"))
    );
    let (status, batch) = call(
        reqwest::Method::POST,
        format!("/api/v1/campaigns/{id}/batches"),
        &key,
        Some(serde_json::json!({"quantity": 12, "pledge_id": pledge["id"]})),
    )
    .await;
    assert_eq!(status, 201, "{batch}");
    let batch_id = batch["id"].as_i64().unwrap();
    let drop = format!("/api/v1/campaigns/{id}/batches/{batch_id}/drop");
    let (status, body) = call(
        reqwest::Method::POST,
        drop.clone(),
        &key,
        Some(serde_json::json!({"collection_point": "Ailleurs"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("unknown_collection_point"))
    );
    let (status, body) = call(
        reqwest::Method::POST,
        drop.clone(),
        &other_key,
        Some(serde_json::json!({"collection_point": "Accueil"})),
    )
    .await;
    assert_eq!(status, 403, "another maker's batch: {body}");
    let (status, body) = call(
        reqwest::Method::POST,
        drop,
        &key,
        Some(serde_json::json!({"collection_point": "Accueil"})),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("dropped")));
    // Each maker sees their own.
    let (_, mine) = call(
        reqwest::Method::GET,
        format!("/api/v1/campaigns/{id}/batches"),
        &key,
        None,
    )
    .await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    let (_, theirs) = call(
        reqwest::Method::GET,
        format!("/api/v1/campaigns/{id}/batches"),
        &other_key,
        None,
    )
    .await;
    assert!(theirs.as_array().unwrap().is_empty());
    let (_, pledges) = call(
        reqwest::Method::GET,
        format!("/api/v1/campaigns/{id}/pledges"),
        &other_key,
        None,
    )
    .await;
    assert!(pledges.as_array().unwrap().is_empty());
    // The campaign, with its counts, for anyone.
    let (status, list) = api(&client(), &app, "/api/v1/campaigns").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["counts"]["pledged"], 12);
    assert_eq!(list[0]["counts"]["produced"], 12);
    let (status, body) = call(
        reqwest::Method::GET,
        format!("/api/v1/campaigns/{id}/requests"),
        &key,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
}

#[tokio::test]
async fn campaign_pages_answer_in_english_too() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let id = quick_campaign(&app, &manager).await.0;
    let (_, html) = text(
        client()
            .get(app.url(&format!("/campaigns/{id}")))
            .header("accept-language", "en-GB")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        html.contains("<html lang=\"en\">")
            && html.contains("Where are we?")
            && html.contains("Ask for visières"),
        "{html}"
    );
}
