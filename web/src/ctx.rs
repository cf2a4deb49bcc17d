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
/// A confirmation carried across a redirect ("Réservation enregistrée"), shown once by the
/// next page and then cleared by the `context` middleware.
pub const NOTICE_COOKIE: &str = "fabrique_notice";

#[derive(Debug, Clone)]
pub struct Ctx {
    pub user: Option<User>,
    pub tr: Tr,
    pub csrf: String,
    /// Whether cookies set now must carry `Secure`.
    pub secure: bool,
    /// Whether the account came from an API key (then no cookie, no CSRF).
    pub by_api_key: bool,
    /// The confirmation of the action that led here, already in the reader's language.
    pub notice: Option<String>,
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

/// A confirmation to show on the next page: a `notice.*` key of the catalogue and the
/// values of its placeholders. It travels in a cookie as a query string and is translated
/// when shown, so a language switch in between still gives the reader's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub key: String,
    pub args: Vec<(String, String)>,
}

impl Notice {
    pub fn new(key: &str, args: &[(&str, &str)]) -> Self {
        Self {
            key: key.to_string(),
            args: args
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    /// The cookie's value: `k=notice.booked&machine=...`, percent-encoded.
    pub fn encode(&self) -> String {
        let mut pairs = vec![("k", self.key.as_str())];
        pairs.extend(self.args.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    /// Reads a cookie's value back; anything but a `notice.*` key with at most eight short
    /// values is dropped (the cookie comes from the browser, so it is not trusted).
    pub fn decode(raw: &str) -> Option<Self> {
        let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).ok()?;
        if pairs.is_empty() || pairs.len() > 9 || pairs.iter().any(|(_, v)| v.len() > 300) {
            return None;
        }
        let (k, key) = pairs.remove(0);
        (k == "k" && key.starts_with("notice.")).then_some(Self { key, args: pairs })
    }

    /// The sentence in the reader's language, or `None` for a key the catalogue lacks.
    pub fn text(&self, tr: &Tr) -> Option<String> {
        let args: Vec<(&str, &str)> = self
            .args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        tr.has(&self.key).then(|| tr.f(&self.key, &args))
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

/// A path to go back to after logging in or switching language: only a path of this site,
/// else `/`. The one check of every `next` (login, `/lang`, the forms that send people
/// back where they were).
///
/// Accepted: a single `/` then anything but a second `/` or a `\`; no backslash, control
/// character or whitespace anywhere, typed or percent-encoded. Browsers drop tabs and line
/// breaks from a `Location` and read `\` as `/`, so `/%09/evil.example` or `/\evil.example`
/// would leave the site (`//evil.example` is a host).
pub fn safe_next(next: &str) -> &str {
    if is_local_path(next) { next } else { "/" }
}

fn is_local_path(next: &str) -> bool {
    fn clean(path: &[u8]) -> bool {
        path.first() == Some(&b'/')
            && !matches!(path.get(1), Some(b'/' | b'\\'))
            && !path.iter().any(|&b| b == b'\\' || b.is_ascii_control())
    }
    let raw = next.as_bytes();
    if !clean(raw) || next.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    clean(&percent_decoded(raw))
}

/// `%XX` sequences replaced by their byte; anything else kept as it is.
fn percent_decoded(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Notice, safe_next};

    #[test]
    fn a_notice_survives_its_cookie_and_a_forged_one_is_dropped() {
        let notice = Notice::new(
            "notice.booked",
            &[("machine", "Prusa; « MK3 » & co"), ("when", "mardi, 14:00")],
        );
        let raw = notice.encode();
        assert!(
            !raw.contains([';', ' ', ',', '"']),
            "a valid cookie value: {raw}"
        );
        assert_eq!(Notice::decode(&raw), Some(notice));
        for forged in [
            "",
            "k=login.title",
            "x=notice.booked",
            "machine=a&k=notice.booked",
            "%%%",
        ] {
            assert_eq!(Notice::decode(forged), None, "{forged:?}");
        }
        let long = format!("k=notice.booked&machine={}", "a".repeat(301));
        assert_eq!(Notice::decode(&long), None);
    }

    #[test]
    fn only_paths_of_this_site_are_followed() {
        for ok in [
            "/",
            "/account",
            "/bookings?week=2026-12-07",
            "/jobs/3#x",
            "/a%20b",
            "/caf%C3%A9",
        ] {
            assert_eq!(safe_next(ok), ok);
        }
        for bad in [
            "",
            "account",
            "//evil.example",
            "/\\evil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/%2F/evil.example",
            "/%2f/evil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/%0a/evil.example",
            "/%0D/evil.example",
            "/\r\n/evil.example",
            "/\u{0}",
            "/%00",
            "/%7F",
            "/ /evil.example",
            "/\u{2028}/evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "\\\\evil.example",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }
}
