//! The lab's badge signing keys, and badges signed as VC-JWT (EdDSA over Ed25519).
//!
//! Why a JWT and not an embedded `eddsa-rdfc-2022` proof: that cryptosuite signs the RDF
//! canonical form of the credential, which needs a JSON-LD processor with the VC and Open
//! Badges contexts bundled offline and an RDFC-1.0 implementation; a JWT signs the bytes it
//! carries, and any JOSE library checks it. Open Badges 3.0 allows both (docs/badges.md).
//!
//! The keys live in one file, `keys/badge-signing.json` in the data folder, readable by the
//! owner only (mode 0600), copied by backups with the rest of `keys/`. One key is current
//! and signs; a rotation retires it: its private half is erased, its public half stays
//! published so that the badges it signed keep verifying.
//!
//! The file is read again at each use: a rotation made by `fabrique badge-key rotate`
//! while the server runs takes effect at once, without a restart.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::path::{Path, PathBuf};

/// The file's name under the data folder.
pub const KEY_FILE: &str = "keys/badge-signing.json";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{what} {path}: {error}")]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a badge key file: {detail}")]
    Unreadable { path: PathBuf, detail: String },
    #[error("no random source: {0}")]
    Random(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + use<> {
    let path = path.to_path_buf();
    move |error| KeyError::Io { what, path, error }
}

/// One key as the file keeps it. A retired key has no `secret`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StoredKey {
    kid: String,
    created_at: i64,
    #[serde(default)]
    retired_at: Option<i64>,
    /// The Ed25519 public key, base64url.
    public: String,
    /// The 32-byte seed, base64url; only for the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

/// A published key: what verifiers get from the DID document and the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key's RFC 7638 thumbprint: the fragment of the verification method. Derived from
    /// the key itself, an id is never given to two keys, even if the key file is lost and
    /// a new one made: a badge of a lost key then names a key the lab does not have, rather
    /// than one whose signature fails.
    pub kid: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub key: VerifyingKey,
}

impl PublicKey {
    /// The key as a JWK (RFC 8037: `OKP`, `Ed25519`) named `kid` (the full verification
    /// method id, as JWT headers name it).
    pub fn jwk(&self, kid: &str) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.key.as_bytes()),
            "alg": "EdDSA",
            "use": "sig",
            "kid": kid,
        })
    }
}

/// The lab's keys: the current one (which signs) and the retired ones (which only verify).
pub struct KeyRing {
    current: (String, SigningKey),
    keys: Vec<PublicKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.0)
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn new_signing_key() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The JWK thumbprint (RFC 7638): SHA-256 of the required members in lexicographic order,
/// without spaces, base64url.
pub fn thumbprint(key: &VerifyingKey) -> String {
    use sha2::Digest;
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(key.as_bytes())
    );
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

fn stored(key: &SigningKey, now: i64) -> StoredKey {
    StoredKey {
        kid: thumbprint(&key.verifying_key()),
        created_at: now,
        retired_at: None,
        public: URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        secret: Some(URL_SAFE_NO_PAD.encode(key.to_bytes())),
    }
}

fn decode_32(text: &str) -> Option<[u8; 32]> {
    URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()
}

fn read_file(path: &Path) -> Result<KeyFile, KeyError> {
    let text = std::fs::read_to_string(path).map_err(io("cannot read", path))?;
    serde_json::from_str(&text).map_err(|e| KeyError::Unreadable {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Writes the file whole (a temporary file renamed over it), owner-only from its creation.
fn write_file(path: &Path, file: &KeyFile) -> Result<(), KeyError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    #[cfg(unix)]
    {
        // The folder of the lab's keys is the owner's alone too.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("cannot restrict", dir))?;
    }
    let partial = path.with_extension("json.partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let text = serde_json::to_string_pretty(file).unwrap_or_default();
    let mut out = options
        .open(&partial)
        .map_err(io("cannot write", &partial))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(io("cannot write", &partial))?;
    owner_only(&partial)?;
    std::fs::rename(&partial, path).map_err(io("cannot rename", &partial))
}

/// Mode 0600: a key file copied in by hand or restored keeps no wider rights.
fn owner_only(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(io("cannot read", path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io("cannot restrict", path))?;
        }
    }
    Ok(())
}

impl KeyRing {
    /// The keys of the lab whose data folder is `data_dir`, the first one made if there is
    /// no key file yet.
    pub fn load_or_create(data_dir: &Path, now: i64) -> Result<Self, KeyError> {
        let path = data_dir.join(KEY_FILE);
        if !path.exists() {
            let key = new_signing_key()?;
            write_file(
                &path,
                &KeyFile {
                    keys: vec![stored(&key, now)],
                },
            )?;
        }
        Self::load(&path)
    }

    fn load(path: &Path) -> Result<Self, KeyError> {
        owner_only(path)?;
        let file = read_file(path)?;
        let bad = |detail: String| KeyError::Unreadable {
            path: path.to_path_buf(),
            detail,
        };
        let mut keys = Vec::new();
        let mut current = None;
        for k in &file.keys {
            let public = decode_32(&k.public)
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or_else(|| bad(format!("the public key of {} is not Ed25519", k.kid)))?;
            if let (None, Some(secret)) = (k.retired_at, &k.secret) {
                let seed = decode_32(secret)
                    .ok_or_else(|| bad(format!("the private key of {} is damaged", k.kid)))?;
                let signing = SigningKey::from_bytes(&seed);
                if signing.verifying_key() != public {
                    return Err(bad(format!("the two halves of {} do not match", k.kid)));
                }
                current = Some((k.kid.clone(), signing));
            }
            keys.push(PublicKey {
                kid: k.kid.clone(),
                created_at: k.created_at,
                retired_at: k.retired_at,
                key: public,
            });
        }
        let current = current.ok_or_else(|| bad("no current key".into()))?;
        Ok(Self { current, keys })
    }

    /// Makes a new current key; the one before is retired (its private half erased, its
    /// public half kept for the badges it signed). Returns the new key's id.
    pub fn rotate(data_dir: &Path, now: i64) -> Result<String, KeyError> {
        Self::load_or_create(data_dir, now)?;
        let path = data_dir.join(KEY_FILE);
        let mut file = read_file(&path)?;
        for k in &mut file.keys {
            if k.retired_at.is_none() {
                k.retired_at = Some(now);
            }
            k.secret = None;
        }
        let key = stored(&new_signing_key()?, now);
        let kid = key.kid.clone();
        file.keys.push(key);
        write_file(&path, &file)?;
        Ok(kid)
    }

    /// The id of the key that signs.
    pub fn current_kid(&self) -> &str {
        &self.current.0
    }

    /// Every key, current and retired, oldest first.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    pub fn key(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// A compact JWS over `payload` with the current key. `kid_prefix` is what comes before
    /// `#<key id>` in the header's `kid` (the lab's `did:web`).
    pub fn sign_jwt(&self, kid_prefix: &str, typ: &str, payload: &serde_json::Value) -> String {
        let header = serde_json::json!({
            "alg": "EdDSA",
            "typ": typ,
            "kid": format!("{kid_prefix}#{}", self.current.0),
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = self.current.1.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// Why a compact JWT could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts with a JSON header and payload.
    Malformed,
    /// `alg` is not `EdDSA` (the only one this lab signs with).
    Algorithm,
}

/// A compact JWT read but not yet verified.
#[derive(Debug, Clone)]
pub struct Jwt {
    pub header: serde_json::Value,
    pub payload: serde_json::Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    pub fn parse(compact: &str) -> Result<Self, JwtError> {
        let compact = compact.trim();
        let mut parts = compact.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let json = |part: &str| -> Result<serde_json::Value, JwtError> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JwtError::Malformed)?;
            match serde_json::from_slice(&bytes) {
                Ok(v @ serde_json::Value::Object(_)) => Ok(v),
                _ => Err(JwtError::Malformed),
            }
        };
        let header = json(h)?;
        let payload = json(p)?;
        let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        if header["alg"] != "EdDSA" {
            return Err(JwtError::Algorithm);
        }
        Ok(Self {
            header,
            payload,
            signing_input: format!("{h}.{p}"),
            signature,
        })
    }

    /// The fragment of the header's `kid` (`abc` of `did:web:lab.example#abc`).
    pub fn key_fragment(&self) -> Option<&str> {
        let kid = self.header["kid"].as_str()?;
        Some(kid.rsplit_once('#').map_or(kid, |(_, f)| f))
    }

    /// Whether `key` made the signature.
    pub fn verifies_with(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(self.signature.as_slice()) else {
            return false;
        };
        // Strict: a signature that is not in its one canonical form, or a weak key, is
        // refused rather than taken (RFC 8032's checks, not only the equation).
        key.verify_strict(
            self.signing_input.as_bytes(),
            &Signature::from_bytes(&bytes),
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_jwt_verifies_and_a_changed_payload_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_create(dir.path(), 1).unwrap();
        let jwt = ring.sign_jwt("did:web:lab", "vc+jwt", &serde_json::json!({"a": 1}));
        let read = Jwt::parse(&jwt).unwrap();
        let kid = ring.current_kid();
        assert_eq!(read.key_fragment(), Some(kid));
        assert!(read.verifies_with(&ring.key(kid).unwrap().key));

        let parts: Vec<&str> = jwt.split('.').collect();
        let other = URL_SAFE_NO_PAD.encode(r#"{"a":2}"#);
        let tampered = Jwt::parse(&format!("{}.{other}.{}", parts[0], parts[2])).unwrap();
        assert!(!tampered.verifies_with(&ring.key(kid).unwrap().key));
    }

    #[test]
    fn a_rotation_keeps_the_old_public_key_and_erases_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyRing::load_or_create(dir.path(), 1).unwrap();
        let old = first.sign_jwt("did:web:lab", "vc+jwt", &serde_json::json!({}));
        let old_kid = first.current_kid().to_string();
        let new_kid = KeyRing::rotate(dir.path(), 2).unwrap();
        assert_ne!(new_kid, old_kid);
        let ring = KeyRing::load_or_create(dir.path(), 3).unwrap();
        assert_eq!(ring.current_kid(), new_kid);
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.key(&old_kid).unwrap().retired_at, Some(2));
        assert!(
            Jwt::parse(&old)
                .unwrap()
                .verifies_with(&ring.key(&old_kid).unwrap().key)
        );
        let text = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(text.matches("\"secret\"").count(), 1, "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        KeyRing::load_or_create(dir.path(), 1).unwrap();
        let path = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let folder = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(folder.permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        KeyRing::load_or_create(dir.path(), 1).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "tightened when found wider");
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_read_or_refused_without_a_panic(text in "[A-Za-z0-9_.=-]{0,120}|.{0,60}") {
            if let Ok(jwt) = Jwt::parse(&text) {
                let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
                proptest::prop_assert!(!jwt.verifies_with(&key));
            }
        }
    }

    #[test]
    fn the_key_id_is_the_rfc_7638_thumbprint() {
        // RFC 8037, appendix A.3: the thumbprint of the example Ed25519 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            thumbprint(&key),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn garbage_is_refused_without_a_panic() {
        for bad in ["", "a.b", "a.b.c", "e30.e30.", "e30.e30.e30.e30"] {
            assert!(Jwt::parse(bad).is_err(), "{bad}");
        }
        // `{"alg":"none"}`
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        assert_eq!(
            Jwt::parse(&format!("{none}.e30.")).unwrap_err(),
            JwtError::Algorithm
        );
    }
}
