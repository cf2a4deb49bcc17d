//! Trainings, their sessions, and the badges they lead to. A badge is awarded by a trainer
//! or a manager after a session (never by attendance alone), lasts a number of months, may
//! lapse after months without use, and can be revoked with a reason.

use super::account::parse_text;
use super::{Invalid, MachineId, UserId, text_enum};
use jiff::{Timestamp, ToSpan, Zoned};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TrainingId(pub i64);

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Training {
    pub id: TrainingId,
    pub name: String,
    pub description: String,
    pub validity_months: u32,
    /// The badge lapses after this many months without using any of the machines.
    pub lapse_months: Option<u32>,
    pub machines: Vec<MachineId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainingInput {
    pub name: String,
    pub description: String,
    pub validity_months: u32,
    pub lapse_months: Option<u32>,
    pub machines: Vec<MachineId>,
}

impl TrainingInput {
    pub fn parse(
        name: &str,
        description: &str,
        validity: &str,
        lapse: &str,
        machines: Vec<MachineId>,
    ) -> Result<Self, Invalid> {
        let months = |field, raw: &str| -> Result<u32, Invalid> {
            match raw.trim().parse::<u32>() {
                Ok(n) if (1..=120).contains(&n) => Ok(n),
                _ => Err(Invalid::new(field, "months")),
            }
        };
        Ok(Self {
            name: parse_text("name", name, 80)?,
            description: if description.trim().is_empty() {
                String::new()
            } else {
                parse_text("description", description, 1000)?
            },
            validity_months: months("validity_months", validity)?,
            lapse_months: if lapse.trim().is_empty() {
                None
            } else {
                Some(months("lapse_months", lapse)?)
            },
            machines,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct SessionId(pub i64);

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainingSession {
    pub id: SessionId,
    pub training: TrainingId,
    pub training_name: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub trainer: UserId,
    pub trainer_name: String,
    pub capacity: u32,
    pub location: String,
    pub enrolled: u32,
    pub waiting: u32,
}

text_enum! {
    /// A place in a session, or on its waiting list.
    EnrolmentStatus { Enrolled = "enrolled", Waiting = "waiting", Cancelled = "cancelled" }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Enrolment {
    pub session: SessionId,
    pub user: UserId,
    pub display_name: String,
    pub status: EnrolmentStatus,
    pub attended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct BadgeId(pub i64);

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Badge {
    pub id: BadgeId,
    pub user: UserId,
    pub holder_name: String,
    pub training: TrainingId,
    pub training_name: String,
    pub training_description: String,
    pub awarded_by_name: String,
    pub awarded_at: Timestamp,
    pub expires_at: Timestamp,
    pub lapse_months: Option<u32>,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoke_reason: Option<String>,
    /// The unguessable part of the badge's public URL.
    pub public_token: String,
    /// The badge's bit in the lab's revocation list (see [`super::status_list`]).
    pub status_index: u64,
}

text_enum! {
    /// Where a badge stands today.
    BadgeStatus { Valid = "valid", ExpiringSoon = "expiring_soon", Expired = "expired", Lapsed = "lapsed", Revoked = "revoked" }
}

/// Days before expiry when the member's page starts warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Adds months in the lab's calendar (the 31st becomes the last day of a short month).
pub fn add_months(at: Timestamp, months: u32) -> Timestamp {
    let zoned: Zoned = at.to_zoned(jiff::tz::TimeZone::UTC);
    zoned
        .checked_add(i64::from(months).months())
        .map(|z| z.timestamp())
        .unwrap_or(at)
}

impl Badge {
    /// When the badge lapses for lack of use, if its training says so.
    pub fn lapses_at(&self) -> Option<Timestamp> {
        self.lapse_months
            .map(|m| add_months(self.last_used_at.unwrap_or(self.awarded_at), m))
    }

    /// The end of validity: expiry or lapse, whichever comes first.
    pub fn valid_until(&self) -> Timestamp {
        self.lapses_at()
            .map_or(self.expires_at, |lapse| lapse.min(self.expires_at))
    }

    pub fn status(&self, now: Timestamp) -> BadgeStatus {
        if self.revoked_at.is_some() {
            return BadgeStatus::Revoked;
        }
        if now >= self.expires_at {
            return BadgeStatus::Expired;
        }
        if self.lapses_at().is_some_and(|lapse| now >= lapse) {
            return BadgeStatus::Lapsed;
        }
        if self.valid_until().as_second() - now.as_second() <= EXPIRY_WARNING_DAYS * 86_400 {
            return BadgeStatus::ExpiringSoon;
        }
        BadgeStatus::Valid
    }

    pub fn is_valid(&self, now: Timestamp) -> bool {
        matches!(
            self.status(now),
            BadgeStatus::Valid | BadgeStatus::ExpiringSoon
        )
    }

    /// The badge as an Open Badges 3.0 credential (a W3C Verifiable Credential 2.0 of type
    /// `OpenBadgeCredential`), issued by the lab. `base_url` is the lab's public address.
    /// The holder is named by their display name in an `IdentityObject`, as the badge page
    /// shows; no e-mail or account id leaves the lab.
    /// It names its place in the lab's revocation list (`credentialStatus`).
    pub fn open_badge(&self, base_url: &str, lab_name: &str) -> serde_json::Value {
        let url = format!("{base_url}/badges/{}", self.public_token);
        let (list, index) = super::status_list::place(self.status_index);
        let list_url = format!("{base_url}/badges/status/{list}");
        serde_json::json!({
            "@context": [
                "https://www.w3.org/ns/credentials/v2",
                "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
            ],
            "id": format!("{url}/credential.json"),
            "type": ["VerifiableCredential", "OpenBadgeCredential"],
            "name": self.training_name,
            "issuer": {
                "id": format!("{base_url}/"),
                "type": ["Profile"],
                "name": lab_name,
                "url": format!("{base_url}/")
            },
            "validFrom": self.awarded_at.to_string(),
            "validUntil": self.expires_at.to_string(),
            "awardedDate": self.awarded_at.to_string(),
            "credentialStatus": {
                "id": format!("{list_url}#{index}"),
                "type": "BitstringStatusListEntry",
                "statusPurpose": "revocation",
                "statusListIndex": index.to_string(),
                "statusListCredential": list_url
            },
            "credentialSubject": {
                "type": ["AchievementSubject"],
                "identifier": [{
                    "type": "IdentityObject",
                    "identityType": "name",
                    "hashed": false,
                    "identityHash": self.holder_name
                }],
                "achievement": {
                    "id": format!("{base_url}/trainings/{}", self.training.0),
                    "type": ["Achievement"],
                    "achievementType": "License",
                    "name": self.training_name,
                    "description": if self.training_description.is_empty() {
                        format!("Formation « {} » suivie au fablab, badge remis par {}.", self.training_name, self.awarded_by_name)
                    } else {
                        self.training_description.clone()
                    },
                    "criteria": {
                        "narrative": format!(
                            "A suivi la formation « {} » et a été jugé(e) autonome sur la machine par {}.",
                            self.training_name, self.awarded_by_name
                        )
                    }
                }
            }
        })
    }
}

/// The claims of a VC-JWT (VC-JOSE-COSE, Open Badges 3.0 §8.2): the payload is the
/// credential itself, with the registered claims taken from it: `iss` (the issuer's id),
/// `jti` (the credential's id), `nbf` (`validFrom`), `exp` (`validUntil`) and `sub` when the
/// subject has an id (a lab's badge names its holder by an identifier instead).
pub fn jwt_claims(credential: &serde_json::Value) -> serde_json::Value {
    let seconds = |field: &str| {
        credential[field]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.as_second())
    };
    let mut claims = credential.clone();
    if let Some(map) = claims.as_object_mut() {
        let issuer = credential["issuer"]["id"]
            .as_str()
            .or(credential["issuer"].as_str());
        map.insert("iss".into(), issuer.into());
        map.insert("jti".into(), credential["id"].clone());
        map.insert("nbf".into(), seconds("validFrom").into());
        if let Some(exp) = seconds("validUntil") {
            map.insert("exp".into(), exp.into());
        }
        if let Some(sub) = credential["credentialSubject"]["id"].as_str() {
            map.insert("sub".into(), sub.into());
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn badge(awarded: i64, expires: i64, lapse: Option<u32>, used: Option<i64>) -> Badge {
        Badge {
            id: BadgeId(1),
            user: UserId(1),
            holder_name: "Josette".into(),
            training: TrainingId(1),
            training_name: "Découpe laser".into(),
            training_description: String::new(),
            awarded_by_name: "Karim".into(),
            awarded_at: Timestamp::from_second(awarded).unwrap(),
            expires_at: Timestamp::from_second(expires).unwrap(),
            lapse_months: lapse,
            last_used_at: used.map(|u| Timestamp::from_second(u).unwrap()),
            revoked_at: None,
            revoke_reason: None,
            status_index: 1,
            public_token: "t".into(),
        }
    }

    const DAY: i64 = 86_400;

    #[test]
    fn a_badge_warns_thirty_days_before_it_expires() {
        let b = badge(0, 365 * DAY, None, None);
        let at = |d| Timestamp::from_second(d * DAY).unwrap();
        assert_eq!(b.status(at(300)), BadgeStatus::Valid);
        assert_eq!(b.status(at(340)), BadgeStatus::ExpiringSoon);
        assert_eq!(b.status(at(365)), BadgeStatus::Expired);
        assert!(b.is_valid(at(340)) && !b.is_valid(at(365)));
    }

    #[test]
    fn a_badge_lapses_without_use_and_use_renews_it() {
        let unused = badge(0, 1000 * DAY, Some(3), None);
        assert_eq!(
            unused.status(Timestamp::from_second(100 * DAY).unwrap()),
            BadgeStatus::Lapsed
        );
        let used = badge(0, 1000 * DAY, Some(3), Some(80 * DAY));
        assert_eq!(
            used.status(Timestamp::from_second(100 * DAY).unwrap()),
            BadgeStatus::Valid
        );
    }

    #[test]
    fn a_revoked_badge_is_not_valid() {
        let mut b = badge(0, 1000 * DAY, None, None);
        b.revoked_at = Some(Timestamp::from_second(DAY).unwrap());
        assert_eq!(
            b.status(Timestamp::from_second(2 * DAY).unwrap()),
            BadgeStatus::Revoked
        );
    }

    #[test]
    fn the_jwt_claims_are_the_credential_with_its_registered_claims() {
        let mut b = badge(0, 1000 * DAY, None, None);
        b.status_index = ENTRIES_PLUS_TWO;
        let vc = b.open_badge("https://lab.example", "Lab");
        assert_eq!(vc["credentialStatus"]["statusListIndex"], "2");
        assert_eq!(
            vc["credentialStatus"]["statusListCredential"],
            "https://lab.example/badges/status/2"
        );
        let claims = jwt_claims(&vc);
        assert_eq!(claims["iss"], "https://lab.example/");
        assert_eq!(claims["jti"], vc["id"]);
        assert_eq!(claims["nbf"], 0);
        assert_eq!(claims["exp"], 1000 * DAY);
        assert!(
            claims.get("sub").is_none(),
            "the holder has no id, only an identifier"
        );
        assert_eq!(claims["credentialSubject"], vc["credentialSubject"]);
    }

    const ENTRIES_PLUS_TWO: u64 = crate::domain::status_list::ENTRIES + 2;

    #[test]
    fn months_are_added_in_the_calendar() {
        let jan31 = "2026-01-31T10:00:00Z".parse::<Timestamp>().unwrap();
        assert_eq!(add_months(jan31, 1).to_string(), "2026-02-28T10:00:00Z");
        assert_eq!(add_months(jan31, 12).to_string(), "2027-01-31T10:00:00Z");
    }

    #[test]
    fn training_input_checks_months() {
        assert!(TrainingInput::parse("Laser", "", "12", "", vec![]).is_ok());
        assert_eq!(
            TrainingInput::parse("Laser", "", "0", "", vec![])
                .unwrap_err()
                .field,
            "validity_months"
        );
        assert_eq!(
            TrainingInput::parse("Laser", "", "12", "x", vec![])
                .unwrap_err()
                .field,
            "lapse_months"
        );
    }
}
