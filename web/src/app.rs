//! The application: shared state, the router, and the `context` middleware that resolves who
//! is asking, checks CSRF, and renders errors in the person's language.

use crate::config::Config;
use crate::ctx::{CSRF_COOKIE, Ctx, LANG_COOKIE, NOTICE_COOKIE, Notice, SESSION_COOKIE, cookie};
use crate::error::AppError;
use crate::i18n::{Catalog, Tr};
use crate::{api, pages};
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use fabrique_controller::Lab;
use fabrique_controller::domain::Lang;
use fabrique_controller::lab::now;
use fabrique_controller::secrets::{constant_time_eq, random_token};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub lab: Lab,
    pub runtime: fabrique_controller::runtime::Runtime,
    pub catalog: Arc<Catalog>,
    pub config: Arc<Config>,
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_kb * 1024;
    let max_upload = usize::try_from(state.config.max_upload_mb * 1_048_576).unwrap_or(usize::MAX);
    Router::new()
        .merge(pages::router(max_upload))
        .nest("/api/v1", api::router(max_upload))
        .merge(api::octoprint::router(max_upload))
        .route("/healthz", get(healthz))
        .route("/static/app.css", get(stylesheet))
        .route(
            "/static/board.js",
            get(|| script(include_str!("../static/board.js"))),
        )
        .route(
            "/static/job.js",
            get(|| script(include_str!("../static/job.js"))),
        )
        .route(
            "/static/panel.js",
            get(|| script(include_str!("../static/panel.js"))),
        )
        .route("/static/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
        .fallback(|| async { AppError::not_found() })
        .layer(middleware::from_fn_with_state(state.clone(), context))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    state
        .lab
        .store()
        .ping()
        .await
        .map_err(|e| AppError::internal("healthz", &e))?;
    Ok(Json(serde_json::json!({ "status": "ok" })))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/app.css"),
    )
}

/// The icon of the lab's tabs and bookmarks: an "F", drawn in SVG (browsers that ask for
/// `/favicon.ico` get it too).
async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../static/favicon.svg"),
    )
}

/// One of the pages' scripts (each page works without it).
async fn script(text: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        text,
    )
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/healthz" || api::octoprint::is_octoprint_path(path)
}

/// Runs around every request:
/// 1. finds the account (API key first, then session cookie) and the language;
/// 2. checks the CSRF token of every state-changing request made with a session: the
///    `csrf_token` field of a form (double-submit against the `fabrique_csrf` cookie), or, on
///    the API, a JSON body (which a foreign site cannot send without CORS) or the
///    `X-CSRF-Token` header;
/// 3. renders any error the handlers returned, or that an extractor or limit answered with a
///    bare status, as JSON under `/api` and as a page elsewhere.
async fn context(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let api = is_api(&path);
    let at = now();
    let secure = state.config.secure_cookies()
        || parts
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes() == b"https");

    let accept_lang = || {
        parts
            .headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(Lang::from_accept_language)
    };
    // The header's switch (a cookie, for this browser until logout) wins; then the
    // account's language; then the browser's.
    let chosen = cookie(&parts.headers, LANG_COOKIE).and_then(|l| l.parse::<Lang>().ok());
    let mut lang = chosen.or_else(accept_lang).unwrap_or(Lang::Fr);
    let tr = |lang| Tr::new(lang, state.catalog.clone());

    let api_key = parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let session = cookie(&parts.headers, SESSION_COOKIE).map(str::to_string);
    let user = match (&api_key, &session) {
        (Some(key), _) => match state.lab.user_by_api_key(key, at).await {
            Ok(Some(user)) => Some(user),
            Ok(None) => {
                let error =
                    AppError::new(StatusCode::UNAUTHORIZED, "bad_api_key", "error.bad_api_key");
                return render_error(&state, &tr(lang), api, &path, error);
            }
            Err(e) => return render_error(&state, &tr(lang), api, &path, e.into()),
        },
        (None, Some(token)) => match state.lab.user_by_session(token, at).await {
            Ok(user) => user,
            Err(e) => return render_error(&state, &tr(lang), api, &path, e.into()),
        },
        (None, None) => None,
    };
    if let Some(user) = &user
        && chosen.is_none()
    {
        lang = user.lang;
    }
    let existing_csrf = cookie(&parts.headers, CSRF_COOKIE).map(str::to_string);
    let csrf = match &existing_csrf {
        Some(token) => token.clone(),
        None => match random_token() {
            Ok(token) => token,
            Err(e) => {
                return render_error(
                    &state,
                    &tr(lang),
                    api,
                    &path,
                    AppError::internal("csrf", &e),
                );
            }
        },
    };
    let had_notice = cookie(&parts.headers, NOTICE_COOKIE).is_some();
    let notice = cookie(&parts.headers, NOTICE_COOKIE)
        .and_then(Notice::decode)
        .and_then(|n| n.text(&tr(lang)));
    let ctx = Ctx {
        user,
        tr: tr(lang),
        csrf: csrf.clone(),
        secure,
        by_api_key: api_key.is_some(),
        notice,
    };

    let mut body = body;
    let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && api_key.is_none() {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let header_token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok());
        let header_ok = header_token
            .zip(existing_csrf.as_deref())
            .is_some_and(|(sent, cookie)| constant_time_eq(sent, cookie));
        let ok = if header_ok {
            true
        } else if api {
            content_type.starts_with("application/json")
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            let limit = state.config.max_body_kb * 1024;
            let bytes = match to_bytes(body, limit).await {
                Ok(bytes) => bytes,
                Err(_) => {
                    let error = AppError::from_status(StatusCode::PAYLOAD_TOO_LARGE);
                    return render_error(&state, &ctx.tr, api, &path, error);
                }
            };
            let sent = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .and_then(|fields| {
                    fields
                        .into_iter()
                        .find(|(k, _)| k == "csrf_token")
                        .map(|(_, v)| v)
                });
            body = Body::from(bytes);
            sent.zip(existing_csrf.as_deref())
                .is_some_and(|(sent, cookie)| constant_time_eq(&sent, cookie))
        } else {
            // Multipart forms carry the token in the query string of their action.
            let sent = parts.uri.query().and_then(|q| {
                serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                    .ok()?
                    .into_iter()
                    .find(|(k, _)| k == "csrf_token")
                    .map(|(_, v)| v)
            });
            sent.zip(existing_csrf.as_deref())
                .is_some_and(|(sent, cookie)| constant_time_eq(&sent, cookie))
        };
        if !ok {
            let error = AppError::new(StatusCode::FORBIDDEN, "csrf", "error.csrf");
            return render_error(&state, &ctx.tr, api, &path, error);
        }
    }

    parts.extensions.insert(ctx.clone());
    let mut response = next.run(Request::from_parts(parts, body)).await;

    let error = response.extensions_mut().remove::<AppError>().or_else(|| {
        {
            let status = response.status();
            let rendered = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| {
                    v.to_str().is_ok_and(|v| {
                        v.starts_with("text/html") || v.starts_with("application/json")
                    })
                });
            (status.is_client_error() || status.is_server_error()) && !rendered
        }
        .then(|| AppError::from_status(response.status()))
    });
    if let Some(error) = error {
        response = render_error(&state, &ctx.tr, api, &path, error);
    }
    // No page of Fabrique is ever shown inside another site's frame (clickjacking a
    // "Démarrer" or a badge award); no response is sniffed as another type; secret links
    // (a request's follow page, a calendar feed) are not sent on as a referrer.
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("frame-ancestors 'none'"));
    headers
        .entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    // A notice is shown once: the first page that renders clears it, unless that answer
    // carries a new one (a redirect after another action).
    let html_page = response.status().is_success()
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let sets_notice = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| {
            v.as_bytes()
                .starts_with(format!("{NOTICE_COOKIE}=").as_bytes())
        });
    if had_notice
        && html_page
        && !sets_notice
        && let Ok(value) = HeaderValue::from_str(&ctx.cookie(NOTICE_COOKIE, "", 0))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    if existing_csrf.is_none()
        && !ctx.by_api_key
        && let Ok(value) = HeaderValue::from_str(&ctx.cookie(CSRF_COOKIE, &csrf, 400 * 86_400))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn render_error(state: &AppState, tr: &Tr, api: bool, path: &str, error: AppError) -> Response {
    let message = error.text(tr);
    let mut response = if api::octoprint::is_octoprint_path(path) {
        // OctoPrint's own shape, which its clients show as they get it.
        let body = serde_json::json!({ "error": message });
        (error.status, Json(body)).into_response()
    } else if api {
        let body = serde_json::json!({ "error": { "code": error.code, "message": message } });
        (error.status, Json(body)).into_response()
    } else if error.status == StatusCode::UNAUTHORIZED {
        let target = format!("/login?next={}", urlencode(path));
        return Redirect::to(&target).into_response();
    } else {
        pages::error_page(state, tr, error.status, &message)
    };
    error.add_headers(&mut response);
    response
}

/// A `Content-Disposition` for a download named by a person: an ASCII `filename` for old
/// clients and the exact name (accents kept) as RFC 6266 / RFC 5987 `filename*`.
pub fn attachment(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = percent_encoded(name, b"!#$&+-.^_`|~");
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}")
}

/// `text` as UTF-8 bytes, each `%XX` but ASCII letters, digits and the bytes in `keep`.
pub fn percent_encoded(text: &str, keep: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || keep.contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_download_keeps_a_persons_file_name_and_stays_a_safe_header() {
        assert_eq!(
            super::attachment("visière 2 \"EHPAD\".gcode"),
            "attachment; filename=\"visi_re 2 _EHPAD_.gcode\"; \
             filename*=UTF-8''visi%C3%A8re%202%20%22EHPAD%22.gcode"
        );
    }
}
