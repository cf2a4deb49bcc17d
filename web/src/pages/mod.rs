//! Server-rendered pages. Every form works without JavaScript; every string comes from the
//! catalogue; a refused form is shown again with what was typed and the reason.

pub(crate) mod account;
mod board;
mod calendar;
mod campaigns;
mod credentials;
mod jobs;
mod machines;
mod panel;
pub use panel::state_words as panel_state_words;
mod members;
mod public;

use crate::app::AppState;
use crate::ctx::{Ctx, LANG_COOKIE, SESSION_COOKIE, safe_next};
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use fabrique_controller::domain::{Lang, Role, Secret, User};
use fabrique_controller::lab::now;
use std::net::SocketAddr;

pub use machines::{MachineFields, MachineView, links_to_hide, without_any_links, without_links};

pub fn router(max_upload: usize) -> Router<AppState> {
    Router::new()
        .route("/", get(machines::home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/lang", post(switch_lang))
        .merge(machines::router())
        .merge(panel::router())
        .merge(members::router())
        .merge(account::router())
        .merge(calendar::router())
        .merge(credentials::router())
        .merge(board::router())
        .merge(jobs::router(max_upload))
        .merge(campaigns::router())
}

/// What the layout needs on every page.
pub struct Page {
    pub tr: Tr,
    pub user: Option<User>,
    pub csrf: String,
    pub title: String,
    /// The navigation entry to mark as current.
    pub current: &'static str,
    pub path: String,
    pub notice: Option<String>,
}

impl Page {
    pub fn new(ctx: &Ctx, title_key: &str, current: &'static str, path: &str) -> Self {
        Self {
            tr: ctx.tr.clone(),
            user: ctx.user.clone(),
            csrf: ctx.csrf.clone(),
            title: ctx.tr.t(title_key).to_string(),
            current,
            path: path.to_string(),
            notice: ctx.notice.clone(),
        }
    }

    pub fn is_trainer(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.role.at_least(Role::Trainer))
    }

    pub fn is_manager(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.role.at_least(Role::Manager))
    }
}

pub fn render(template: &impl Template) -> AppResult<Html<String>> {
    template
        .render()
        .map(Html)
        .map_err(|e| AppError::internal("template", &e))
}

pub fn render_with_status(status: StatusCode, template: &impl Template) -> Response {
    match render(template) {
        Ok(html) => (status, html).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    p: Page,
    message: String,
}

/// An error as a page. Rendered by the middleware, which knows the language but not always
/// the account, so the page offers only the way home.
pub fn error_page(_: &AppState, tr: &Tr, status: StatusCode, message: &str) -> Response {
    let title = tr.t(if status.is_server_error() {
        "error.title_server"
    } else {
        "error.title"
    });
    let p = Page {
        tr: tr.clone(),
        user: None,
        csrf: String::new(),
        title: title.to_string(),
        current: "",
        path: String::from("/"),
        notice: None,
    };
    let page = ErrorPage {
        p,
        message: message.to_string(),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_string()).into_response(),
    }
}

/// The answer to an action done: back to `to`, with `notice` (a `notice.*` key and its
/// values) shown once there, without JavaScript.
pub fn done(ctx: &Ctx, to: &str, key: &str, args: &[(&str, &str)]) -> Response {
    let notice = crate::ctx::Notice::new(key, args).encode();
    redirect_with_cookie(to, &ctx.cookie(crate::ctx::NOTICE_COOKIE, &notice, 300))
}

/// A redirect that also sets a cookie.
fn redirect_with_cookie(to: &str, cookie: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    add_cookie(&mut response, cookie);
    response
}

/// One more `Set-Cookie` on a response.
pub fn add_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    p: Page,
    error: Option<String>,
    username: String,
    next: String,
}

#[derive(serde::Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

async fn login_page(ctx: Ctx, Query(q): Query<NextQuery>) -> AppResult<Response> {
    if ctx.user.is_some() {
        return Ok(Redirect::to(safe_next(&q.next)).into_response());
    }
    let p = Page::new(&ctx, "login.title", "login", "/login");
    Ok(render(&LoginPage {
        p,
        error: None,
        username: String::new(),
        next: q.next,
    })?
    .into_response())
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ctx: Ctx,
    Form(form): Form<LoginForm>,
) -> Response {
    match state
        .lab
        .login(
            &form.username,
            &Secret::new(form.secret),
            &peer.ip().to_string(),
            now(),
        )
        .await
    {
        Ok(session) => {
            let max_age = session.expires_at - now();
            let cookie = ctx.cookie(SESSION_COOKIE, &session.token, max_age);
            // Whoever used the switch before on this browser: the account's language now.
            let mut response = redirect_with_cookie(safe_next(&form.next), &cookie);
            add_cookie(&mut response, &ctx.cookie(LANG_COOKIE, "", 0));
            response
        }
        Err(e) => {
            let error = AppError::from(e);
            if error.status.is_server_error() {
                return error.into_response();
            }
            let args: Vec<(&str, &str)> = error
                .args
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let message = ctx.tr.f(&error.key, &args);
            let p = Page::new(&ctx, "login.title", "login", "/login");
            let page = LoginPage {
                p,
                error: Some(message),
                username: form.username,
                next: form.next,
            };
            let mut response = render_with_status(error.status, &page);
            error.add_headers(&mut response);
            response
        }
    }
}

async fn logout(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
) -> AppResult<Response> {
    if let Some(token) = crate::ctx::cookie(&headers, SESSION_COOKIE) {
        state.lab.logout(token).await?;
    }
    let mut response = redirect_with_cookie("/login", &ctx.cookie(SESSION_COOKIE, "", 0));
    add_cookie(&mut response, &ctx.cookie(LANG_COOKIE, "", 0));
    Ok(response)
}

#[derive(serde::Deserialize)]
struct LangForm {
    lang: String,
    #[serde(default)]
    next: String,
}

/// Switches the language of this browser (a cookie, until logout), never the account's: on
/// a shared workshop PC the next person keeps theirs. The account's language is chosen on
/// the account page.
async fn switch_lang(ctx: Ctx, Form(form): Form<LangForm>) -> AppResult<Response> {
    let lang: Lang = form
        .lang
        .parse()
        .map_err(|()| AppError::from_status(StatusCode::UNPROCESSABLE_ENTITY))?;
    Ok(redirect_with_cookie(
        safe_next(&form.next),
        &ctx.cookie(LANG_COOKIE, lang.as_str(), 400 * 86_400),
    ))
}

/// The translated labels of a closed set of words, for a `<select>`.
pub fn options<T: Copy + std::fmt::Display>(
    tr: &Tr,
    group: &str,
    values: &[T],
) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| (v.to_string(), tr.word(group, &v.to_string())))
        .collect()
}

/// The message of an error, translated, for showing again a refused form.
pub fn message(tr: &Tr, error: &AppError) -> String {
    let mut text = error.text(tr);
    if let Some((_, field)) = error.args.iter().find(|(k, _)| k == "field") {
        text = format!("{} — {}", tr.word("field", field), text);
    }
    text
}

/// The address people reach Fabrique at, for links sent elsewhere: `public_url`, never the
/// request's `Host` header ([`crate::config::Config::public_base`]).
pub fn base_url(state: &AppState) -> String {
    state.config.public_base()
}
