//! What every request knows about its sender: the signed-in account (by session cookie or
//! `X-Api-Key`), the language, and the CSRF token. Built once by the `context` middleware.

use crate::error::AppError;
use crate::i18n::Tr;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use fabrique_controller::domain::{Role, User};

pub const SESSION_COOKIE: &str = "fabrique_session";
pub const CSRF_COOKIE: &str = "fabrique_csrf";
pub const LANG_COOKIE: &str = "fabrique_lang";

#[derive(Debug, Clone)]
pub struct Ctx {
    pub user: Option<User>,
    pub tr: Tr,
    pub csrf: String,
    /// Whether cookies set now must carry `Secure`.
    pub secure: bool,
    /// Whether the account came from an API key (then no cookie, no CSRF).
    pub by_api_key: bool,
}

impl Ctx {
    pub fn user(&self) -> Result<&User, AppError> {
        self.user.as_ref().ok_or_else(AppError::unauthorized)
    }

    /// The signed-in account if it has at least `role`: 401 when nobody is signed in, 403
    /// when the role is too low.
    pub fn require(&self, role: Role) -> Result<&User, AppError> {
        let user = self.user()?;
        if user.role.at_least(role) {
            Ok(user)
        } else {
            Err(AppError::forbidden())
        }
    }

    /// A `Set-Cookie` value with the attributes every Fabrique cookie has.
    pub fn cookie(&self, name: &str, value: &str, max_age_s: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        parts.extensions.get::<Ctx>().cloned().ok_or_else(|| {
            AppError::internal(
                "context",
                &std::io::Error::other("context middleware missing"),
            )
        })
    }
}

/// The value of one cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A path to go back to after logging in or switching language: only paths of this site.
pub fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}
