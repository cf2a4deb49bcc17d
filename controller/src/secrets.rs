//! Password hashing (argon2id) and random tokens for sessions, CSRF and API keys.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("could not hash the credential: {0}")]
pub struct HashError(String);

/// Hashes a password or PIN with argon2id and a random salt (PHC string format).
pub fn hash_secret(secret: &str) -> Result<String, HashError> {
    hash_in(secret, &mut Vec::new())
}

/// Checks a typed secret against a stored hash; an unreadable hash never matches.
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    verify_in(secret, stored, &mut Vec::new())
}

/// The most memory a stored hash may ask for (256 MiB); more is an unreadable hash.
const MAX_BLOCKS: usize = 256 * 1024;

/// The argon2 work area of `count` blocks of 1 KiB: `kept` when it is large enough (grown
/// to the default size at most, then reused by every check of its thread), a fresh one
/// for a larger hash.
fn work_area(kept: &mut Vec<Block>, count: usize) -> Option<WorkArea<'_>> {
    if count > MAX_BLOCKS {
        return None;
    }
    if kept.len() < count && count <= Params::DEFAULT_M_COST as usize {
        kept.resize(count, Block::default());
    }
    if kept.len() >= count {
        Some(WorkArea::Kept(&mut kept[..count]))
    } else {
        Some(WorkArea::Fresh(vec![Block::default(); count]))
    }
}

enum WorkArea<'a> {
    Kept(&'a mut [Block]),
    Fresh(Vec<Block>),
}

impl AsMut<[Block]> for WorkArea<'_> {
    fn as_mut(&mut self) -> &mut [Block] {
        match self {
            WorkArea::Kept(blocks) => blocks,
            WorkArea::Fresh(blocks) => blocks,
        }
    }
}

/// [`hash_secret`] in the work area `blocks`.
fn hash_in(secret: &str, blocks: &mut Vec<Block>) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HashError(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| HashError(e.to_string()))?;
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let area = work_area(blocks, params.block_count())
        .ok_or_else(|| HashError("argon2 memory too large".into()))?;
    argon2
        .hash_password_into_with_memory(secret.as_bytes(), salt_bytes, &mut out, area)
        .map_err(|e| HashError(e.to_string()))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| HashError(e.to_string()))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| HashError(e.to_string()))?),
    };
    Ok(hash.to_string())
}

/// [`verify_secret`] in the work area `blocks`.
fn verify_in(secret: &str, stored: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(expected), Some(salt)) = (
        Algorithm::try_from(hash.algorithm),
        Params::try_from(&hash),
        hash.hash,
        hash.salt,
    ) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let Some(area) = work_area(blocks, params.block_count()) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(secret.as_bytes(), salt_bytes, &mut out, area)
        .is_ok()
        && constant_time_eq_bytes(&out, expected.as_bytes())
}

fn constant_time_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How many argon2 computations run at once, at most. Each takes 19 MiB and one core for
/// some 50 ms: more at once would only share the cores and multiply the memory.
pub const MAX_CONCURRENT_CHECKS: usize = 2;
/// How long a login waits for a free check before being told to come back.
pub const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// All checks busy: the caller is told to come back in a second or two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksBusy;

/// The gate every argon2 computation goes through, so that a burst of logins neither takes
/// the server's memory nor leaves it held: at most `permits` run at once, each on one of as
/// many threads kept for it (a fresh blocking thread per check would leave a freed 19 MiB
/// buffer in each thread's allocator arena: 60 logins kept 1.1 GiB); a login waits up to
/// `wait` for its turn, then is refused (HTTP 429 with `Retry-After`).
#[derive(Debug, Clone)]
pub struct SecretChecks {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    size: usize,
    wait: std::time::Duration,
    workers: std::sync::Arc<Workers>,
}

type Work = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The threads argon2 runs on; they end when the last [`SecretChecks`] clone is dropped.
struct Workers {
    queue: std::sync::Mutex<std::sync::mpsc::Sender<Work>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Workers")
    }
}

impl Workers {
    fn start(count: usize) -> Self {
        let (queue, jobs) = std::sync::mpsc::channel::<Work>();
        let jobs = std::sync::Arc::new(std::sync::Mutex::new(jobs));
        for i in 0..count {
            let jobs = jobs.clone();
            let started = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    // This thread's argon2 work area, allocated at its first check and
                    // reused: memory stays at `count` areas whatever the logins.
                    let mut blocks = Vec::new();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match jobs.lock() {
                            Ok(jobs) => jobs.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut blocks),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "could not start a thread for password checks");
            }
        }
        Self {
            queue: std::sync::Mutex::new(queue),
        }
    }

    /// Runs `f` on one of the threads and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Work = Box::new(move |blocks| {
            let _ = reply.send(f(blocks));
        });
        self.queue
            .lock()
            .map_err(|_| HashError("password check threads poisoned".into()))?
            .send(job)
            .map_err(|_| HashError("password check threads stopped".into()))?;
        answer
            .await
            .map_err(|_| HashError("a password check did not answer".into()))
    }
}

impl Default for SecretChecks {
    fn default() -> Self {
        Self::new(MAX_CONCURRENT_CHECKS, CHECK_WAIT)
    }
}

impl SecretChecks {
    pub fn new(permits: usize, wait: std::time::Duration) -> Self {
        let size = permits.max(1);
        Self {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(size)),
            size,
            wait,
            workers: std::sync::Arc::new(Workers::start(size)),
        }
    }

    /// How many checks may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Checks `secret` against `stored` when a check is free within the wait.
    pub async fn verify(&self, secret: &str, stored: &str) -> Result<bool, ChecksBusy> {
        let _permit = tokio::time::timeout(self.wait, self.permits.acquire())
            .await
            .map_err(|_| ChecksBusy)?
            .map_err(|_| ChecksBusy)?;
        let (secret, stored) = (secret.to_string(), stored.to_string());
        Ok(self
            .workers
            .run(move |blocks| verify_in(&secret, &stored, blocks))
            .await
            .unwrap_or(false))
    }

    /// Hashes a new secret, waiting as long as it takes for a free check (a person setting
    /// a password is not an attack to turn away, but still shares the bound).
    pub async fn hash(&self, secret: &str) -> Result<String, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError(e.to_string()))?;
        let secret = secret.to_string();
        self.workers
            .run(move |blocks| hash_in(&secret, blocks))
            .await?
    }
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
        // Hashes made by the argon2 crate's own PHC writer verify too (older accounts).
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(verify_secret("correct horse battery", &theirs));
        assert!(!verify_secret("correct horse batter", &theirs));
        // A work area kept from an earlier check gives the same answers.
        let mut kept = Vec::new();
        assert!(verify_in("correct horse battery", &hash, &mut kept));
        assert!(verify_in("correct horse battery", &theirs, &mut kept));
        assert!(!verify_in("wrong", &theirs, &mut kept));
        assert_eq!(kept.len(), Params::DEFAULT_M_COST as usize);
    }

    #[tokio::test]
    async fn checks_past_the_bound_wait_then_are_refused() {
        let hash = hash_secret("correct horse battery").unwrap();
        let checks = SecretChecks::new(1, std::time::Duration::ZERO);
        let held = checks.permits.acquire().await.unwrap();
        assert_eq!(
            checks.verify("correct horse battery", &hash).await,
            Err(ChecksBusy)
        );
        drop(held);
        assert_eq!(
            checks.verify("correct horse battery", &hash).await,
            Ok(true)
        );
        assert_eq!(checks.verify("wrong", &hash).await, Ok(false));
        assert!(verify_secret("x", &checks.hash("x").await.unwrap()));
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
