//! Signed badges and their checks: the lab's keys (a `did:web` document and a JWKS), each
//! badge as a VC-JWT and as a PNG with the credential baked in, the revocation list
//! (W3C Bitstring Status List), and `/badges/verify`, where anyone pastes or uploads a badge
//! and reads who issued it, to whom, when, and whether it holds.

use super::{Page, base_url, render};
use crate::app::AppState;
use crate::baking;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fabrique_controller::badge_keys::{Jwt, JwtError, KeyRing};
use fabrique_controller::domain::status_list::{self, ENTRIES};
use fabrique_controller::domain::training::{Badge, jwt_claims};
use fabrique_controller::lab::now;
use jiff::Timestamp;

/// The media type of a VC-JWT (VC-JOSE-COSE).
const VC_JWT: &str = "application/vc+jwt";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/did.json", get(did_document))
        .route("/did.json", get(did_document))
        .route("/badges/keys.json", get(jwks))
        .route("/badges/status/{list}", get(status_list_credential))
        .route("/badges/{token}/credential.jwt", get(credential_jwt))
        .route("/badges/{token}/badge.png", get(baked_png))
        .route(
            "/badges/verify",
            get(verify_form)
                .post(verify)
                .layer(DefaultBodyLimit::max(baking::MAX_PNG + 64 * 1024)),
        )
}

/// The lab's `did:web`, from its public address: `https://lab.example/x` is
/// `did:web:lab.example:x`, a port's colon written `%3A` (did:web method, §3.1).
pub fn did_web(base_url: &str) -> String {
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest)
        .trim_end_matches('/');
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut did = format!("did:web:{}", host.replace(':', "%3A"));
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        did.push(':');
        did.push_str(segment);
    }
    did
}

/// The key file, read (or made, on a lab's first badge) off the async threads.
pub async fn key_ring(state: &AppState) -> AppResult<KeyRing> {
    let dir = state.config.data_dir.clone();
    tokio::task::spawn_blocking(move || KeyRing::load_or_create(&dir, now()))
        .await
        .map_err(|e| AppError::internal("badge keys", &e))?
        .map_err(|e| AppError::internal("badge keys", &e))
}

/// The credential of a badge, as the lab publishes it.
pub fn credential_of(state: &AppState, badge: &Badge) -> serde_json::Value {
    badge.open_badge(&base_url(state), &state.config.lab_name)
}

/// The badge signed as a compact VC-JWT.
pub fn sign(state: &AppState, ring: &KeyRing, credential: &serde_json::Value) -> String {
    ring.sign_jwt(
        &did_web(&base_url(state)),
        "vc+jwt",
        &jwt_claims(credential),
    )
}

/// Every key, current and retired: the badges a retired key signed still verify.
async fn did_document(State(state): State<AppState>) -> AppResult<Response> {
    let ring = key_ring(&state).await?;
    let did = did_web(&base_url(&state));
    let methods: Vec<serde_json::Value> = ring
        .keys()
        .iter()
        .map(|k| {
            serde_json::json!({
                "id": format!("{did}#{}", k.kid),
                "type": "JsonWebKey",
                "controller": did,
                "publicKeyJwk": k.jwk(&format!("{did}#{}", k.kid)),
            })
        })
        .collect();
    let ids: Vec<String> = ring
        .keys()
        .iter()
        .map(|k| format!("{did}#{}", k.kid))
        .collect();
    let document = serde_json::json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://www.w3.org/ns/cid/v1"],
        "id": did,
        "alsoKnownAs": [format!("{}/", base_url(&state))],
        "verificationMethod": methods,
        "assertionMethod": ids,
    });
    Ok((
        [(header::CONTENT_TYPE, "application/did+json")],
        document.to_string(),
    )
        .into_response())
}

/// The same keys as a JWK Set, for JOSE libraries; each `kid` is the one in JWT headers.
async fn jwks(State(state): State<AppState>) -> AppResult<Response> {
    let ring = key_ring(&state).await?;
    let did = did_web(&base_url(&state));
    let keys: Vec<serde_json::Value> = ring
        .keys()
        .iter()
        .map(|k| k.jwk(&format!("{did}#{}", k.kid)))
        .collect();
    Ok(Json(serde_json::json!({ "keys": keys })).into_response())
}

/// A revocation list, signed: list 1 holds the status indexes 0 to 131,071, list 2 the
/// next ones. A list no badge has reached yet is all zeros.
async fn status_list_credential(
    State(state): State<AppState>,
    Path(list): Path<String>,
) -> AppResult<Response> {
    let list: u64 = match list.parse() {
        Ok(n) if (1..=u64::from(u32::MAX)).contains(&n) => n,
        _ => return Err(AppError::not_found()),
    };
    let revoked = state.lab.revoked_status_indexes().await?;
    let bits = revoked
        .into_iter()
        .map(status_list::place)
        .filter(|(l, _)| *l == list)
        .map(|(_, index)| index);
    let base = base_url(&state);
    let url = format!("{base}/badges/status/{list}");
    let credential = serde_json::json!({
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": format!("{base}/"),
        "validFrom": Timestamp::now().to_string(),
        "credentialSubject": {
            "id": format!("{url}#list"),
            "type": "BitstringStatusList",
            "statusPurpose": "revocation",
            "encodedList": status_list::encode(bits),
        }
    });
    let ring = key_ring(&state).await?;
    Ok((
        [
            (header::CONTENT_TYPE, VC_JWT),
            // Verifiers may keep it a little; a revocation shows within five minutes.
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        sign(&state, &ring, &credential),
    )
        .into_response())
}

/// A badge still standing, by its public token (a withdrawn one answers 410 Gone, as its
/// JSON does: whoever holds a copy learns of the withdrawal from the status list).
async fn standing_badge(state: &AppState, token: &str) -> AppResult<Badge> {
    let badge = state.lab.public_badge(token).await?;
    if badge.revoked_at.is_some() {
        return Err(AppError::new(StatusCode::GONE, "revoked", "badge.revoked"));
    }
    Ok(badge)
}

async fn credential_jwt(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> AppResult<Response> {
    let badge = standing_badge(&state, &token).await?;
    let ring = key_ring(&state).await?;
    let jwt = sign(&state, &ring, &credential_of(&state, &badge));
    Ok(([(header::CONTENT_TYPE, VC_JWT)], jwt).into_response())
}

async fn baked_png(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> AppResult<Response> {
    let badge = standing_badge(&state, &token).await?;
    let ring = key_ring(&state).await?;
    let jwt = sign(&state, &ring, &credential_of(&state, &badge));
    let file = format!(
        "attachment; filename=\"badge-{}.png\"",
        badge
            .training_name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (header::CONTENT_DISPOSITION, file),
        ],
        baking::bake(&jwt),
    )
        .into_response())
}

// --- Verification ------------------------------------------------------------------------

/// What the verification page found, each line a plain sentence.
#[derive(Debug, Default)]
struct Report {
    /// `ok` (signed by this lab, standing), `warning` (signed but revoked, expired or not
    /// yet valid), `bad` (a signature that fails, or not checkable here).
    tone: &'static str,
    headline: String,
    facts: Vec<(String, String)>,
    findings: Vec<String>,
}

#[derive(Template)]
#[template(path = "badge_verify.html")]
struct VerifyPage {
    p: Page,
    error: Option<String>,
    pasted: String,
    report: Option<Report>,
}

fn verify_page(ctx: &Ctx) -> Page {
    Page::new(ctx, "verify.title", "", "/badges/verify")
}

async fn verify_form(ctx: Ctx) -> AppResult<Response> {
    let page = VerifyPage {
        p: verify_page(&ctx),
        error: None,
        pasted: String::new(),
        report: None,
    };
    Ok(render(&page)?.into_response())
}

/// What was sent: the pasted text and the uploaded file's bytes.
async fn read_form(mut multipart: Multipart) -> Result<(String, Vec<u8>), AppError> {
    let broken = || AppError::new(StatusCode::BAD_REQUEST, "bad_upload", "upload.broken");
    let (mut pasted, mut file) = (String::new(), Vec::new());
    while let Some(field) = multipart.next_field().await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                "upload.too_large",
            )
            .arg("mb", baking::MAX_PNG / 1_048_576)
        } else {
            broken()
        }
    })? {
        match field.name() {
            Some("credential") => pasted = field.text().await.map_err(|_| broken())?,
            Some("file") => file = field.bytes().await.map_err(|_| broken())?.to_vec(),
            _ => {}
        }
    }
    Ok((pasted, file))
}

/// Why a submission holds no credential to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unreadable {
    Empty,
    NotPng,
    NoCredential,
    NotACredential,
}

impl Unreadable {
    fn key(self) -> &'static str {
        match self {
            Self::Empty => "verify.empty",
            Self::NotPng => "verify.not_png",
            Self::NoCredential => "verify.no_credential",
            Self::NotACredential => "verify.not_a_credential",
        }
    }
}

/// What a submission carries: a compact JWT, a credential with an embedded proof (Data
/// Integrity, which this lab does not issue and this page does not check), or a credential
/// with no signature.
enum Submitted {
    Jwt(String),
    EmbeddedProof(serde_json::Value),
    Unsigned(serde_json::Value),
}

/// Finds the credential in what was sent: a PNG with it baked in, a compact JWT, an
/// `EnvelopedVerifiableCredential` (the JWT in a `data:` URL), a JSON holding the JWT, or a
/// bare JSON credential (which proves nothing: anyone can write one).
fn submitted(pasted: &str, file: &[u8]) -> Result<Submitted, Unreadable> {
    let text = if file.starts_with(b"\x89PNG") {
        baking::unbake(file).map_err(|e| match e {
            baking::Unbaked::NotPng => Unreadable::NotPng,
            baking::Unbaked::NoCredential => Unreadable::NoCredential,
        })?
    } else if !file.is_empty() {
        String::from_utf8(file.to_vec()).map_err(|_| Unreadable::NotACredential)?
    } else {
        pasted.to_string()
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(Unreadable::Empty);
    }
    if !text.starts_with('{') {
        return Ok(Submitted::Jwt(text.to_string()));
    }
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|_| Unreadable::NotACredential)?;
    let enveloped = json["id"]
        .as_str()
        .and_then(|id| id.strip_prefix("data:application/vc+jwt,"));
    if let Some(jwt) = enveloped.or(json["jwt"].as_str()) {
        return Ok(Submitted::Jwt(jwt.to_string()));
    }
    if json["type"].is_array() || json["type"].is_string() {
        if json.get("proof").is_some() {
            return Ok(Submitted::EmbeddedProof(json));
        }
        return Ok(Submitted::Unsigned(json));
    }
    Err(Unreadable::NotACredential)
}

fn date_words(tr: &Tr, at: Timestamp) -> String {
    super::calendar::date_text(tr, at)
}

fn timestamp(credential: &serde_json::Value, field: &str) -> Option<Timestamp> {
    credential[field].as_str()?.parse().ok()
}

/// The facts a credential states, signed or not.
fn facts(tr: &Tr, credential: &serde_json::Value) -> Vec<(String, String)> {
    let unknown = || tr.t("verify.unknown").to_string();
    let issuer = credential["issuer"]["name"]
        .as_str()
        .or(credential["issuer"]["id"].as_str())
        .or(credential["issuer"].as_str())
        .map_or_else(unknown, str::to_string);
    let subject = &credential["credentialSubject"];
    let holder = subject["identifier"][0]["identityHash"]
        .as_str()
        .filter(|_| subject["identifier"][0]["hashed"] == false)
        .or(subject["name"].as_str())
        .or(subject["id"].as_str())
        .map_or_else(unknown, str::to_string);
    let achievement = subject["achievement"]["name"]
        .as_str()
        .or(credential["name"].as_str())
        .map_or_else(unknown, str::to_string);
    let mut facts = vec![
        (tr.t("verify.issuer").to_string(), issuer),
        (tr.t("verify.holder").to_string(), holder),
        (tr.t("verify.achievement").to_string(), achievement),
    ];
    if let Some(from) = timestamp(credential, "validFrom") {
        facts.push((tr.t("verify.issued").to_string(), date_words(tr, from)));
    }
    if let Some(until) = timestamp(credential, "validUntil") {
        facts.push((tr.t("verify.until").to_string(), date_words(tr, until)));
    }
    facts
}

/// Checks a compact JWT against this lab's keys and revocation list.
async fn check_jwt(
    state: &AppState,
    tr: &Tr,
    compact: &str,
) -> AppResult<Result<Report, Unreadable>> {
    let jwt = match Jwt::parse(compact) {
        Ok(jwt) => jwt,
        Err(JwtError::Malformed) => return Ok(Err(Unreadable::NotACredential)),
        Err(JwtError::Algorithm) => {
            return Ok(Ok(Report {
                tone: "bad",
                headline: tr.t("verify.headline.unchecked").to_string(),
                facts: facts(tr, &jwt_payload_of(compact)),
                findings: vec![tr.t("verify.algorithm").to_string()],
            }));
        }
    };
    let credential = &jwt.payload;
    let base = base_url(state);
    let did = did_web(&base);
    let ours_issuer = credential["iss"].as_str() == Some(&format!("{base}/"))
        || credential["issuer"]["id"].as_str() == Some(&format!("{base}/"));
    let ours_key = jwt.header["kid"]
        .as_str()
        .is_some_and(|kid| kid.starts_with(&format!("{did}#")));
    let mut report = Report {
        facts: facts(tr, credential),
        ..Report::default()
    };
    if !(ours_issuer && ours_key) {
        report.tone = "bad";
        report.headline = tr.t("verify.headline.unchecked").to_string();
        report.findings.push(tr.t("verify.not_ours").to_string());
        return Ok(Ok(report));
    }
    let ring = key_ring(state).await?;
    let key = jwt.key_fragment().and_then(|kid| ring.key(kid));
    match key {
        Some(key) if jwt.verifies_with(&key.key) => {
            let made = Timestamp::from_second(key.created_at).unwrap_or_default();
            let made = date_words(tr, made);
            report.findings.push(if key.retired_at.is_some() {
                tr.f("verify.signature_ok_retired", &[("made", &made)])
            } else {
                tr.f("verify.signature_ok", &[("made", &made)])
            });
        }
        Some(_) => {
            report.tone = "bad";
            report.headline = tr.t("verify.headline.forged").to_string();
            report
                .findings
                .push(tr.t("verify.signature_bad").to_string());
            return Ok(Ok(report));
        }
        None => {
            report.tone = "bad";
            report.headline = tr.t("verify.headline.forged").to_string();
            report.findings.push(tr.t("verify.unknown_key").to_string());
            return Ok(Ok(report));
        }
    }
    // The signature holds: what it says can be trusted from here on.
    let mut standing = true;
    if let Some(reason) = revocation(state, &base, credential).await? {
        standing = false;
        report.findings.push(if reason.is_empty() {
            tr.t("verify.revoked").to_string()
        } else {
            tr.f("verify.revoked_because", &[("reason", &reason)])
        });
    } else {
        report.findings.push(tr.t("verify.not_revoked").to_string());
    }
    let now = Timestamp::now();
    if let Some(until) = timestamp(credential, "validUntil").filter(|u| *u <= now) {
        standing = false;
        report
            .findings
            .push(tr.f("verify.expired", &[("date", &date_words(tr, until))]));
    }
    if let Some(from) = timestamp(credential, "validFrom").filter(|f| *f > now) {
        standing = false;
        report
            .findings
            .push(tr.f("verify.not_yet", &[("date", &date_words(tr, from))]));
    }
    (report.tone, report.headline) = if standing {
        ("ok", tr.t("verify.headline.ok").to_string())
    } else {
        ("warning", tr.t("verify.headline.not_standing").to_string())
    };
    Ok(Ok(report))
}

/// The payload of a JWT refused for its algorithm, only to say what it claims.
fn jwt_payload_of(compact: &str) -> serde_json::Value {
    use base64::Engine;
    compact
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// `Some(reason)` when the badge's bit is set in this lab's revocation list. The list is
/// built from the badges table, so the badge found at the index gives the reason.
async fn revocation(
    state: &AppState,
    base: &str,
    credential: &serde_json::Value,
) -> AppResult<Option<String>> {
    let status = &credential["credentialStatus"];
    let list = status["statusListCredential"]
        .as_str()
        .and_then(|url| url.strip_prefix(&format!("{base}/badges/status/")))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n >= 1);
    let index = status["statusListIndex"]
        .as_str()
        .and_then(|i| i.parse::<u64>().ok())
        .filter(|i| *i < ENTRIES);
    let (Some(list), Some(index)) = (list, index) else {
        return Ok(None);
    };
    let Some(absolute) = (list - 1)
        .checked_mul(ENTRIES)
        .and_then(|start| start.checked_add(index))
    else {
        return Ok(None);
    };
    match state.lab.badge_at_status_index(absolute).await {
        Ok(badge) if badge.revoked_at.is_some() => {
            Ok(Some(badge.revoke_reason.unwrap_or_default()))
        }
        Ok(_) => Ok(None),
        Err(fabrique_controller::LabError::Store(fabrique_controller::StoreError::NotFound)) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn verify(
    State(state): State<AppState>,
    ctx: Ctx,
    multipart: Multipart,
) -> AppResult<Response> {
    let (pasted, file) = read_form(multipart).await?;
    let outcome = match submitted(&pasted, &file) {
        Ok(Submitted::Jwt(jwt)) => check_jwt(&state, &ctx.tr, &jwt).await?,
        Ok(Submitted::EmbeddedProof(credential)) => Ok(Report {
            tone: "bad",
            headline: ctx.tr.t("verify.headline.unchecked").to_string(),
            facts: facts(&ctx.tr, &credential),
            findings: vec![ctx.tr.t("verify.embedded_proof").to_string()],
        }),
        Ok(Submitted::Unsigned(credential)) => Ok(Report {
            tone: "bad",
            headline: ctx.tr.t("verify.headline.unsigned").to_string(),
            facts: facts(&ctx.tr, &credential),
            findings: vec![ctx.tr.t("verify.unsigned").to_string()],
        }),
        Err(e) => Err(e),
    };
    let (status, error, report) = match outcome {
        Ok(report) => (StatusCode::OK, None, Some(report)),
        Err(why) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(ctx.tr.t(why.key()).to_string()),
            None,
        ),
    };
    let page = VerifyPage {
        p: verify_page(&ctx),
        error,
        // A long paste is not sent back: the report says what was read.
        pasted: if pasted.len() <= 20_000 {
            pasted
        } else {
            String::new()
        },
        report,
    };
    Ok((status, render(&page)?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_did_web_follows_the_public_address() {
        assert_eq!(
            did_web("https://lab.example.org"),
            "did:web:lab.example.org"
        );
        assert_eq!(
            did_web("http://127.0.0.1:8080/"),
            "did:web:127.0.0.1%3A8080"
        );
        assert_eq!(
            did_web("https://example.org/labs/nord"),
            "did:web:example.org:labs:nord"
        );
    }

    #[test]
    fn a_submission_is_found_in_each_form() {
        let jwt = "aGVhZA.cGF5bG9hZA.c2ln";
        assert!(matches!(submitted(jwt, b""), Ok(Submitted::Jwt(j)) if j == jwt));
        let enveloped = format!(
            r#"{{"@context":["https://www.w3.org/ns/credentials/v2"],"type":"EnvelopedVerifiableCredential","id":"data:application/vc+jwt,{jwt}"}}"#
        );
        assert!(matches!(submitted(&enveloped, b""), Ok(Submitted::Jwt(j)) if j == jwt));
        assert!(matches!(submitted("", &baking::bake(jwt)), Ok(Submitted::Jwt(j)) if j == jwt));
        assert!(matches!(
            submitted(r#"{"type":["VerifiableCredential"]}"#, b""),
            Ok(Submitted::Unsigned(_))
        ));
        assert!(matches!(
            submitted(
                r#"{"type":["VerifiableCredential"],"proof":{"type":"DataIntegrityProof"}}"#,
                b""
            ),
            Ok(Submitted::EmbeddedProof(_))
        ));
        assert!(matches!(submitted("  ", b""), Err(Unreadable::Empty)));
        assert!(matches!(
            submitted("{nope", b""),
            Err(Unreadable::NotACredential)
        ));
        assert!(matches!(
            submitted("", b"\x89PNG\r\n\x1a\nxx"),
            Err(Unreadable::NotPng)
        ));
        assert!(matches!(
            submitted("", &[0xff, 0xfe]),
            Err(Unreadable::NotACredential)
        ));
    }
}
