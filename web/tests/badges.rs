//! Signed badges over HTTP: the VC-JWT a badge page offers is checked by code nobody here
//! wrote (web/tests/badge_check.py, PyPI `cryptography`), a changed one fails, a withdrawal
//! sets its bit in the signed status list and the verification page gives the reason, an
//! expired badge says so, the baked PNG carries the credential, a key rotation keeps old
//! badges verifying, and the key file is owner-only and in backups.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{TestApp, client, csrf_in, spawn_app, unescaped};
use fabrique_controller::backup;
use fabrique_controller::badge_keys::{KEY_FILE, KeyRing};
use fabrique_controller::domain::training::{Badge, TrainingInput};
use fabrique_controller::domain::{Role, User};
use fabrique_controller::lab::now;
use fabrique_controller::testing::fresh_database_url;
use serde_json::Value;

struct Lab {
    app: TestApp,
    manager: User,
}

async fn lab() -> Lab {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    Lab { app, manager }
}

impl Lab {
    /// A badge of a new training for a new member, awarded at `at` (unix seconds).
    async fn badge(&self, member: &str, training: &str, months: &str, at: i64) -> Badge {
        let user = self.app.add_user(member, Role::Member).await;
        let input = TrainingInput::parse(training, "", months, "", vec![]).unwrap();
        let training = self
            .app
            .lab
            .save_training(&self.manager, None, &input, now())
            .await
            .unwrap();
        self.app
            .lab
            .award_badge(&self.manager, user.id, training.id, None, at)
            .await
            .unwrap()
    }

    /// The signed credential, at the address the API gives for it.
    async fn jwt(&self, badge: &Badge) -> String {
        let key = self
            .app
            .lab
            .create_api_key(&self.manager, "test", now())
            .await
            .unwrap();
        let listed: Value = client()
            .get(
                self.app
                    .url(&format!("/api/v1/badges?member_id={}", badge.user.0)),
            )
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entry = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == badge.id.0)
            .unwrap_or_else(|| panic!("{listed}"));
        assert_eq!(
            entry["signed_credential_url"],
            self.app
                .url(&format!("/badges/{}/credential.jwt", badge.public_token))
        );
        assert_eq!(
            entry["baked_png_url"],
            self.app
                .url(&format!("/badges/{}/badge.png", badge.public_token))
        );
        let response = client()
            .get(
                self.app
                    .url(&format!("/badges/{}/credential.jwt", badge.public_token)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/vc+jwt");
        response.text().await.unwrap()
    }

    /// What web/tests/badge_check.py finds of `jwt` (run while the server answers it).
    async fn python_check(&self, jwt: &str) -> Value {
        let file = self.app.dir.path().join(format!("{}.jwt", now_nanos()));
        std::fs::write(&file, jwt).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/badge_check.py");
        let output = tokio::process::Command::new("python3")
            .arg(script)
            .arg(&self.app.base)
            .arg(&file)
            .output()
            .await
            .expect("python3 is needed");
        assert!(
            output.status.success(),
            "badge_check.py failed (is `cryptography` installed? pip install -r .ci/requirements.txt): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// The verification page's answer to a pasted text or an uploaded file.
    async fn verify(&self, pasted: &str, file: Option<(&str, Vec<u8>)>) -> (u16, String) {
        let browser = client();
        let form_page = browser
            .get(self.app.url("/badges/verify"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = csrf_in(&form_page);
        let mut form = reqwest::multipart::Form::new().text("credential", pasted.to_string());
        if let Some((name, bytes)) = file {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
            );
        }
        let response = browser
            .post(self.app.url(&format!("/badges/verify?csrf_token={csrf}")))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, unescaped(&response.text().await.unwrap()))
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The JWT with its payload changed by `change`, the signature kept.
fn tampered(jwt: &str, change: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    change(&mut payload);
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    )
}

#[tokio::test]
async fn a_signed_badge_verifies_with_independent_code_and_a_changed_one_does_not() {
    let lab = lab().await;
    let badge = lab.badge("josette", "Découpe laser", "24", now()).await;
    let jwt = lab.jwt(&badge).await;

    let found = lab.python_check(&jwt).await;
    assert_eq!(found["signature"], "valid", "{found}");
    assert_eq!(found["pyjwt"], "valid", "{found}");
    assert_eq!(found["typ"], "vc+jwt");
    assert!(found["kid_is_thumbprint"] == true, "{found}");
    assert!(
        found["did"]
            .as_str()
            .unwrap()
            .starts_with("did:web:127.0.0.1%3A")
    );
    assert_eq!(found["iss"], format!("{}/", lab.app.base));
    assert_eq!(found["iss"], found["issuer"]);
    assert_eq!(found["holder"], "josette");
    assert_eq!(found["list_signature"], "valid", "{found}");
    assert_eq!(found["list_content_type"], "application/vc+jwt");
    assert_eq!(found["list_purpose"], "revocation");
    assert_eq!(found["list_bytes"], 16_384, "131,072 entries");
    assert_eq!(found["revoked"], false);
    assert_eq!(found["bits_set"], 0);

    // The page says it in words.
    let (status, html) = lab.verify(&jwt, None).await;
    assert_eq!(status, 200);
    assert!(html.contains("Badge authentique et valable"), "{html}");
    assert!(html.contains("Titulaire</dt><dd>josette"), "{html}");
    assert!(html.contains("Découpe laser"));
    assert!(html.contains("Il n'a pas été retiré."));
    assert!(html.contains("La signature est bonne"));

    // Another holder's name, the signature kept: both checkers refuse it.
    let forged = tampered(&jwt, |p| {
        p["credentialSubject"]["identifier"][0]["identityHash"] = "mallory".into();
    });
    let found = lab.python_check(&forged).await;
    assert_eq!(found["signature"], "invalid", "{found}");
    assert_eq!(found["pyjwt"], "invalid signature", "{found}");
    assert_eq!(found["holder"], "mallory");
    let (status, html) = lab.verify(&forged, None).await;
    assert_eq!(status, 200);
    assert!(html.contains("Signature fausse"), "{html}");
    assert!(!html.contains("Badge authentique"));

    // Longer validity, the signature kept: refused too.
    let longer = tampered(&jwt, |p| {
        p["validUntil"] = "2099-01-01T00:00:00Z".into();
    });
    assert_eq!(lab.python_check(&longer).await["signature"], "invalid");
    assert!(
        lab.verify(&longer, None)
            .await
            .1
            .contains("Signature fausse")
    );

    // The enveloped form (a JSON naming the JWT) is read as well.
    let enveloped = serde_json::json!({
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "type": "EnvelopedVerifiableCredential",
        "id": format!("data:application/vc+jwt,{jwt}"),
    });
    let (_, html) = lab.verify(&enveloped.to_string(), None).await;
    assert!(html.contains("Badge authentique et valable"), "{html}");
}

#[tokio::test]
async fn a_withdrawn_badge_is_set_in_the_status_list_and_reported_with_its_reason() {
    let lab = lab().await;
    let kept = lab.badge("josette", "Découpe laser", "24", now()).await;
    let badge = lab.badge("marcel", "Impression 3D", "24", now()).await;
    assert_ne!(kept.status_index, badge.status_index);
    let jwt = lab.jwt(&badge).await;
    let kept_jwt = lab.jwt(&kept).await;
    lab.app
        .lab
        .revoke_badge(
            &lab.manager,
            badge.id,
            "Consignes de sécurité ignorées",
            now(),
        )
        .await
        .unwrap();

    let found = lab.python_check(&jwt).await;
    assert_eq!(found["signature"], "valid", "{found}");
    assert_eq!(found["list_signature"], "valid");
    assert_eq!(found["revoked"], true, "{found}");
    assert_eq!(found["bits_set"], 1);
    assert_eq!(found["index"], badge.status_index);
    assert_eq!(lab.python_check(&kept_jwt).await["revoked"], false);

    let (_, html) = lab.verify(&jwt, None).await;
    assert!(
        html.contains("Badge authentique, mais il ne vaut plus"),
        "{html}"
    );
    assert!(
        html.contains("Il a été retiré par le lab\u{a0}: Consignes de sécurité ignorées"),
        "{html}"
    );
    assert!(
        lab.verify(&kept_jwt, None)
            .await
            .1
            .contains("Badge authentique et valable")
    );

    // The badge's page says so, and offers no file any more.
    let page = unescaped(
        &client()
            .get(lab.app.url(&format!("/badges/{}", badge.public_token)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(page.contains("retiré"), "{page}");
    assert!(page.contains("Consignes de sécurité ignorées"), "{page}");
    assert!(!page.contains("badge.png"));
    for file in ["credential.jwt", "badge.png"] {
        let response = client()
            .get(
                lab.app
                    .url(&format!("/badges/{}/{file}", badge.public_token)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 410, "{file}");
    }
}

#[tokio::test]
async fn an_expired_badge_is_genuine_but_reported_expired() {
    let lab = lab().await;
    let three_years_ago = now() - 3 * 365 * 86_400;
    let badge = lab
        .badge("josette", "Découpe laser", "12", three_years_ago)
        .await;
    let jwt = lab.jwt(&badge).await;
    let found = lab.python_check(&jwt).await;
    assert_eq!(found["signature"], "valid", "{found}");
    assert_eq!(found["pyjwt"], "expired", "a JOSE library reads `exp` too");
    let (_, html) = lab.verify(&jwt, None).await;
    assert!(
        html.contains("Badge authentique, mais il ne vaut plus"),
        "{html}"
    );
    assert!(html.contains("Il a expiré le"), "{html}");
    assert!(html.contains("Il n'a pas été retiré."));
}

#[tokio::test]
async fn the_baked_png_carries_the_credential_to_the_verify_page() {
    let lab = lab().await;
    let badge = lab.badge("josette", "Découpe laser", "24", now()).await;
    let page = client()
        .get(lab.app.url(&format!("/badges/{}", badge.public_token)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Télécharger le badge (PNG)"), "{page}");
    let response = client()
        .get(
            lab.app
                .url(&format!("/badges/{}/badge.png", badge.public_token)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let png = response.bytes().await.unwrap().to_vec();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    // The chunk is uncompressed text: the JWT is there as is.
    let jwt = lab.jwt(&badge).await;
    assert!(
        png.windows(jwt.len()).any(|w| w == jwt.as_bytes()),
        "the JWT is in the PNG"
    );
    let keyword = b"iTXtopenbadgecredential\0\0\0\0\0";
    assert!(png.windows(keyword.len()).any(|w| w == keyword));

    let (status, html) = lab.verify("", Some(("badge.png", png.clone()))).await;
    assert_eq!(status, 200);
    assert!(html.contains("Badge authentique et valable"), "{html}");

    // A PNG with a letter of the credential changed fails its chunk's CRC.
    let mut damaged = png.clone();
    let at = damaged
        .windows(jwt.len())
        .position(|w| w == jwt.as_bytes())
        .unwrap()
        + 10;
    damaged[at] ^= 0x01;
    let (status, html) = lab.verify("", Some(("badge.png", damaged))).await;
    assert_eq!(status, 422);
    assert!(html.contains("Ce fichier PNG est abîmé"), "{html}");

    // A PNG with no credential in it.
    let mut plain = png[..33].to_vec();
    plain.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]);
    let (status, html) = lab.verify("", Some(("photo.png", plain))).await;
    assert_eq!(status, 422);
    assert!(
        html.contains("Cette image ne contient pas de badge numérique"),
        "{html}"
    );
}

#[tokio::test]
async fn a_key_rotation_keeps_the_badges_the_old_key_signed_verifying() {
    let lab = lab().await;
    let badge = lab.badge("josette", "Découpe laser", "24", now()).await;
    let old = lab.jwt(&badge).await;
    // `fabrique badge-key rotate` on the data folder of the running server.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fabrique"))
        .arg("--data-dir")
        .arg(lab.app.dir.path())
        .args(["badge-key", "rotate"])
        .env_remove("FABRIQUE_CONFIG")
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ring = KeyRing::load_or_create(lab.app.dir.path(), now()).unwrap();
    let (old_kid, new_kid) = (&ring.keys()[0].kid, ring.current_kid());
    assert_ne!(old_kid, new_kid);
    assert!(said.contains(&format!("new key: {new_kid}")), "{said}");
    assert!(
        said.contains(old_kid.as_str()) && said.contains("verifies only"),
        "{said}"
    );

    let new = lab.jwt(&badge).await;
    assert_ne!(old, new);
    let found_new = lab.python_check(&new).await;
    assert!(
        found_new["kid"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#{new_kid}"))
    );
    assert_eq!(found_new["kid_is_thumbprint"], true);
    assert_eq!(found_new["signature"], "valid");
    let found_old = lab.python_check(&old).await;
    assert_eq!(found_old["keys"], 2, "both keys published");
    assert!(
        found_old["kid"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#{old_kid}"))
    );
    assert_eq!(found_old["signature"], "valid", "{found_old}");
    assert_eq!(
        found_old["pyjwt"], "valid",
        "the retired key is in the JWK Set"
    );

    let (_, html) = lab.verify(&old, None).await;
    assert!(html.contains("Badge authentique et valable"), "{html}");
    assert!(html.contains("remplacée depuis"), "{html}");

    let jwks: Value = client()
        .get(lab.app.url("/badges/keys.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert!(kids.iter().all(|k| k.starts_with("did:web:")), "{kids:?}");
    assert!(
        jwks.to_string().matches("\"d\"").count() == 0,
        "no private part"
    );
}

#[tokio::test]
async fn another_issuer_an_unsigned_json_and_garbage_are_told_apart() {
    let lab = lab().await;
    let badge = lab.badge("josette", "Découpe laser", "24", now()).await;

    // The same badge signed by another lab's key, under that lab's name.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = KeyRing::load_or_create(elsewhere.path(), now()).unwrap();
    let credential = badge.open_badge("https://autre-lab.example", "Autre lab");
    let claims = fabrique_controller::domain::training::jwt_claims(&credential);
    let foreign = other.sign_jwt("did:web:autre-lab.example", "vc+jwt", &claims);
    let (status, html) = lab.verify(&foreign, None).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Ce badge ne peut pas être vérifié ici"),
        "{html}"
    );
    assert!(html.contains("Il n'a pas été remis par ce lab"), "{html}");
    assert!(html.contains("Autre lab"));

    // Signed elsewhere but claiming this lab: the key is not this lab's.
    let ours = badge.open_badge(&lab.app.base, "Fablab");
    let did = lab.python_check(&lab.jwt(&badge).await).await["did"]
        .as_str()
        .unwrap()
        .to_string();
    let impostor = other.sign_jwt(
        &did,
        "vc+jwt",
        &fabrique_controller::domain::training::jwt_claims(&ours),
    );
    assert_eq!(lab.python_check(&impostor).await["signature"], "invalid");
    assert!(
        lab.verify(&impostor, None)
            .await
            .1
            .contains("Signature fausse")
    );

    // The unsigned JSON proves nothing, and says so.
    let json = client()
        .get(
            lab.app
                .url(&format!("/badges/{}/credential.json", badge.public_token)),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (status, html) = lab
        .verify("", Some(("badge.json", json.clone().into_bytes())))
        .await;
    assert_eq!(status, 200);
    assert!(html.contains("Badge sans signature"), "{html}");

    // One with an embedded Data Integrity proof is not called unsigned, nor checked.
    let mut with_proof: Value = serde_json::from_str(&json).unwrap();
    with_proof["proof"] = serde_json::json!({
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-rdfc-2022",
        "proofValue": "z3FXQ",
    });
    let (status, html) = lab.verify(&with_proof.to_string(), None).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Ce badge ne peut pas être vérifié ici"),
        "{html}"
    );
    assert!(html.contains("preuve intégrée"), "{html}");
    assert!(!html.contains("Badge sans signature"));

    for (garbage, message) in [
        ("", "Collez un badge ou choisissez son fichier."),
        ("bonjour", "Ce texte n'est pas un badge numérique"),
        ("{\"a\": 1}", "Ce texte n'est pas un badge numérique"),
        ("a.b.c", "Ce texte n'est pas un badge numérique"),
    ] {
        let (status, html) = lab.verify(garbage, None).await;
        assert_eq!(status, 422, "{garbage}");
        assert!(
            html.contains("error-summary") && html.contains(message),
            "{garbage}: {html}"
        );
    }

    // In English on request.
    let html = client()
        .get(lab.app.url("/badges/verify"))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Check a badge"), "{html}");
}

#[tokio::test]
async fn the_key_file_is_owner_only_and_goes_into_backups() {
    use std::os::unix::fs::PermissionsExt;
    let lab = lab().await;
    let badge = lab.badge("josette", "Découpe laser", "24", now()).await;
    let jwt = lab.jwt(&badge).await;
    // Made at the server's start.
    let key_file = lab.app.dir.path().join(KEY_FILE);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = lab.app.dir.path().join("sauvegarde");
    backup::make(
        lab.app.lab.store(),
        &lab.app.database_url,
        lab.app.dir.path(),
        &out,
        now(),
    )
    .await
    .unwrap();
    let copied = out.join(KEY_FILE);
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(&key_file).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Put back elsewhere, the lab signs with the same key: old badges stay good.
    let elsewhere = tempfile::tempdir().unwrap();
    let url = fresh_database_url(elsewhere.path()).await.unwrap();
    backup::restore(&out, &url, elsewhere.path(), false, now())
        .await
        .unwrap();
    let restored = KeyRing::load_or_create(elsewhere.path(), now()).unwrap();
    let original = KeyRing::load_or_create(lab.app.dir.path(), now()).unwrap();
    assert_eq!(restored.keys(), original.keys());
    let read = fabrique_controller::badge_keys::Jwt::parse(&jwt).unwrap();
    assert!(read.verifies_with(&restored.key(original.current_kid()).unwrap().key));
    assert_eq!(
        std::fs::metadata(elsewhere.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[tokio::test]
async fn the_did_document_and_the_status_list_are_public_and_well_formed() {
    let lab = lab().await;
    let response = client()
        .get(lab.app.url("/.well-known/did.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/did+json");
    let did: Value = response.json().await.unwrap();
    let id = did["id"].as_str().unwrap();
    let method = &did["verificationMethod"][0];
    assert_eq!(method["controller"], id);
    let kid = KeyRing::load_or_create(lab.app.dir.path(), now())
        .unwrap()
        .current_kid()
        .to_string();
    assert_eq!(method["id"], format!("{id}#{kid}"));
    assert_eq!(did["assertionMethod"][0], method["id"]);
    assert_eq!(method["publicKeyJwk"]["crv"], "Ed25519");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(method["publicKeyJwk"]["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    for bad in ["0", "x", "-1", "99999999999999999999"] {
        let response = client()
            .get(lab.app.url(&format!("/badges/status/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badges_awarded_at_once_get_distinct_places_in_the_status_list() {
    let lab = lab().await;
    let input = TrainingInput::parse("Découpe laser", "", "24", "", vec![]).unwrap();
    let training = lab
        .app
        .lab
        .save_training(&lab.manager, None, &input, now())
        .await
        .unwrap();
    let mut members = Vec::new();
    for n in 0..8 {
        members.push(lab.app.add_user(&format!("membre{n}"), Role::Member).await);
    }
    let awards = members.iter().map(|m| {
        lab.app
            .lab
            .award_badge(&lab.manager, m.id, training.id, None, now())
    });
    let badges: Vec<Badge> = futures_util::future::join_all(awards)
        .await
        .into_iter()
        .map(|b| b.unwrap())
        .collect();
    let mut indexes: Vec<u64> = badges.iter().map(|b| b.status_index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), badges.len(), "{indexes:?}");
}
