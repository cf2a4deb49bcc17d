//! Password hashing (argon2id) and random tokens for sessions, CSRF and API keys.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("could not hash the credential: {0}")]
pub struct HashError(String);

impl HashError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

/// Hashes a password or PIN with argon2id and a random salt (PHC string format).
pub fn hash_secret(secret: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HashError(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Checks a typed secret against a stored hash; an unreadable hash never matches.
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &hash)
            .is_ok()
    })
}

/// 32 random bytes, URL-safe base64: for session cookies, CSRF tokens and API keys.
pub fn random_token() -> Result<String, HashError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| HashError(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 in hex. Session tokens and API keys are stored this way: they are long random
/// values, so a fast hash is enough and a stolen database holds nothing usable.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two strings in time independent of where they differ (CSRF tokens).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_secret_verifies_and_a_wrong_one_does_not() {
        let hash = hash_secret("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_secret("correct horse battery", &hash));
        assert!(!verify_secret("wrong horse battery", &hash));
        assert!(!verify_secret("anything", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let a = random_token().unwrap();
        assert_ne!(a, random_token().unwrap());
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash("abc"), token_hash("abc"));
        assert_eq!(token_hash("abc").len(), 64);
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
