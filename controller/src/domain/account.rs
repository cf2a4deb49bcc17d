//! Members and their credentials.

use super::{Invalid, text_enum};
use std::fmt;

text_enum! {
    /// What a person may do. Each role can do everything the previous one can.
    Role { Member = "member", Trainer = "trainer", Manager = "manager", Admin = "admin" }
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Member => 0,
            Role::Trainer => 1,
            Role::Manager => 2,
            Role::Admin => 3,
        }
    }

    /// Whether this role includes everything `other` may do.
    pub fn at_least(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }

    /// Managers run the lab's members; only an admin creates or edits managers and admins.
    pub fn can_manage(self, target: Role) -> bool {
        match self {
            Role::Admin => true,
            Role::Manager => matches!(target, Role::Member | Role::Trainer),
            Role::Member | Role::Trainer => false,
        }
    }
}

text_enum! {
    /// The language pages and messages are shown in. French first.
    Lang { Fr = "fr", En = "en" }
}

impl Lang {
    /// Picks the first supported language of an `Accept-Language` header, honouring q-values.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let Ok(lang) = primary.parse::<Lang>() else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, lang)| lang)
    }
}

text_enum! {
    /// A password, or a PIN of digits for members without e-mail (set by a manager).
    CredentialKind { Password = "password", Pin = "pin" }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A login name: 3 to 32 characters among lowercase letters, digits, `.`, `_` and `-`.
/// Stored lowercase so that "Amina" and "amina" are one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim().to_lowercase();
        if name.chars().count() < 3 || name.chars().count() > 32 {
            return Err(Invalid::new("username", "username_length"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        {
            return Err(Invalid::new("username", "username_chars"));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password or PIN in clear, as typed. Never printed: `Debug` shows a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the strength rules of a new credential: passwords of at least 10 characters,
    /// PINs of at least 6 digits and nothing else.
    pub fn validate(&self, kind: CredentialKind) -> Result<(), Invalid> {
        match kind {
            CredentialKind::Password if self.0.chars().count() < 10 => {
                Err(Invalid::new("secret", "password_too_short"))
            }
            CredentialKind::Password if self.0.len() > 1024 => {
                Err(Invalid::new("secret", "password_too_long"))
            }
            CredentialKind::Pin if self.0.len() < 6 || self.0.len() > 12 => {
                Err(Invalid::new("secret", "pin_length"))
            }
            CredentialKind::Pin if !self.0.chars().all(|c| c.is_ascii_digit()) => {
                Err(Invalid::new("secret", "pin_digits"))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A display name or other short free text: trimmed, not empty, at most `max` characters,
/// without control characters.
pub fn parse_text(field: &'static str, raw: &str, max: usize) -> Result<String, Invalid> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(Invalid::new(field, "required"));
    }
    if text.chars().count() > max {
        return Err(Invalid::new(field, "too_long"));
    }
    if text.chars().any(char::is_control) {
        return Err(Invalid::new(field, "control_chars"));
    }
    Ok(text.to_string())
}

/// An optional e-mail address: empty means none; otherwise one `@` with text on each side
/// and a dot in the domain. Deliverability is not checked.
pub fn parse_email(raw: &str) -> Result<Option<String>, Invalid> {
    let email = raw.trim();
    if email.is_empty() {
        return Ok(None);
    }
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if valid {
        Ok(Some(email.to_string()))
    } else {
        Err(Invalid::new("email", "email"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub lang: Lang,
    pub credential_kind: CredentialKind,
    pub disabled: bool,
}

/// A new account, already validated.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub lang: Lang,
    pub credential_kind: CredentialKind,
    pub secret: Secret,
}

impl NewUser {
    pub fn parse(
        username: &str,
        display_name: &str,
        email: &str,
        role: Role,
        lang: Lang,
        credential_kind: CredentialKind,
        secret: Secret,
    ) -> Result<Self, Invalid> {
        let username = Username::parse(username)?;
        let display_name = if display_name.trim().is_empty() {
            username.as_str().to_string()
        } else {
            parse_text("display_name", display_name, 80)?
        };
        let email = parse_email(email)?;
        secret.validate(credential_kind)?;
        Ok(Self {
            username,
            display_name,
            email,
            role,
            lang,
            credential_kind,
            secret,
        })
    }
}

/// A change to an account: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub email: Option<Option<String>>,
    pub role: Option<Role>,
    pub lang: Option<Lang>,
    pub disabled: Option<bool>,
    pub credential: Option<(CredentialKind, Secret)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_limited_to_safe_characters() {
        assert_eq!(Username::parse(" Amina ").unwrap().as_str(), "amina");
        assert_eq!(Username::parse("ab").unwrap_err().code, "username_length");
        assert_eq!(
            Username::parse("robert'); drop table").unwrap_err().code,
            "username_chars"
        );
    }

    #[test]
    fn pins_are_six_digits_or_more_and_passwords_ten_characters() {
        assert!(Secret::new("123456").validate(CredentialKind::Pin).is_ok());
        assert_eq!(
            Secret::new("12345")
                .validate(CredentialKind::Pin)
                .unwrap_err()
                .code,
            "pin_length"
        );
        assert_eq!(
            Secret::new("12a456")
                .validate(CredentialKind::Pin)
                .unwrap_err()
                .code,
            "pin_digits"
        );
        assert_eq!(
            Secret::new("short")
                .validate(CredentialKind::Password)
                .unwrap_err()
                .code,
            "password_too_short"
        );
    }

    #[test]
    fn a_secret_is_never_printed_by_debug() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2hunter2")),
            "Secret(***)"
        );
    }

    #[test]
    fn accept_language_prefers_the_highest_quality_supported_language() {
        assert_eq!(
            Lang::from_accept_language("en-GB,en;q=0.9,fr;q=0.8"),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_accept_language("de-DE,fr;q=0.5,en;q=0.4"),
            Some(Lang::Fr)
        );
        assert_eq!(Lang::from_accept_language("de-DE"), None);
        assert_eq!(Lang::from_accept_language("en;q=0"), None);
    }

    #[test]
    fn managers_manage_members_and_trainers_but_not_other_managers() {
        assert!(Role::Manager.can_manage(Role::Trainer));
        assert!(!Role::Manager.can_manage(Role::Admin));
        assert!(!Role::Manager.can_manage(Role::Manager));
        assert!(Role::Admin.can_manage(Role::Admin));
        assert!(!Role::Trainer.can_manage(Role::Member));
    }

    #[test]
    fn email_is_optional_but_checked_when_given() {
        assert_eq!(parse_email("  ").unwrap(), None);
        assert!(parse_email("amina@centre.fr").unwrap().is_some());
        assert_eq!(parse_email("amina@").unwrap_err().code, "email");
    }
}
