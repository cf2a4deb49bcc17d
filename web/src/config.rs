//! Fabrique's settings, layered: built-in defaults, then `fabrique.toml`, then `FABRIQUE_*`
//! environment variables, then command-line flags. Validated once at start; a wrong setting
//! is named with where it came from and why it is wrong. Secrets are never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://...`; `None` means the SQLite file in `data_dir`. May hold a password.
    pub database_url: Option<String>,
    /// The address people reach Fabrique at, e.g. `https://fablab.example.org`. When it is
    /// HTTPS, cookies are marked `Secure`.
    pub public_url: Option<String>,
    /// Largest form or JSON body accepted, in kilobytes.
    pub max_body_kb: usize,
    /// Log filter, as for `RUST_LOG` (`info`, `fabrique=debug`...).
    pub log: String,
    /// Largest job file accepted, in megabytes.
    pub max_upload_mb: u64,
    /// Days a finished job's file is kept (to print it again).
    pub job_retention_days: u32,
    /// The name of this node's lab. Several Fabrique nodes sharing one PostgreSQL database
    /// each give their own, and every campaign record they write carries it.
    pub lab_name: String,
    /// Where `fabrique backup` and the daily backups go by default (`data_dir/backups`).
    pub backup_dir: Option<PathBuf>,
    /// Daily backups kept while the server runs; 0 makes none.
    pub daily_backups_kept: u32,
    /// The hour of the day (the lab's time zone) the daily backup is made.
    pub backup_hour: u8,
    /// Announce the lab and its printers on the network by mDNS, for slicers to find
    /// (only when listening beyond 127.0.0.1).
    pub announce: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            data_dir: PathBuf::from("fabrique-data"),
            database_url: None,
            public_url: None,
            max_body_kb: 256,
            log: String::from("info"),
            max_upload_mb: 512,
            job_retention_days: 30,
            lab_name: String::from("Fablab"),
            backup_dir: None,
            daily_backups_kept: 7,
            backup_hour: 3,
            announce: true,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("public_url", &self.public_url)
            .field("max_body_kb", &self.max_body_kb)
            .field("log", &self.log)
            .field("max_upload_mb", &self.max_upload_mb)
            .field("job_retention_days", &self.job_retention_days)
            .field("lab_name", &self.lab_name)
            .field("backup_dir", &self.backup_dir)
            .field("daily_backups_kept", &self.daily_backups_kept)
            .field("backup_hour", &self.backup_hour)
            .field("announce", &self.announce)
            .finish()
    }
}

/// Hides the password of a database URL: `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A setting that could not be used, with where it came from.
#[derive(Debug, thiserror::Error)]
#[error("setting `{name}` (from {source_name}): {reason}")]
pub struct ConfigError {
    pub name: String,
    pub source_name: String,
    pub reason: String,
}

/// Settings as given by one layer: every field optional, names as in `fabrique.toml`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub max_body_kb: Option<usize>,
    pub log: Option<String>,
    pub max_upload_mb: Option<u64>,
    pub job_retention_days: Option<u32>,
    pub lab_name: Option<String>,
    pub backup_dir: Option<PathBuf>,
    pub daily_backups_kept: Option<u32>,
    pub backup_hour: Option<u8>,
    pub announce: Option<bool>,
}

const ENV_NAMES: &[&str] = &[
    "LISTEN",
    "DATA_DIR",
    "DATABASE_URL",
    "PUBLIC_URL",
    "MAX_BODY_KB",
    "LOG",
    "MAX_UPLOAD_MB",
    "JOB_RETENTION_DAYS",
    "LAB_NAME",
    "BACKUP_DIR",
    "DAILY_BACKUPS_KEPT",
    "BACKUP_HOUR",
    "ANNOUNCE",
];

fn env_number<T: std::str::FromStr>(
    vars: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<T>, ConfigError> {
    match vars.get(name) {
        Some(v) => v.trim().parse().map(Some).map_err(|_| ConfigError {
            name: name.to_lowercase(),
            source_name: format!("FABRIQUE_{name}"),
            reason: format!("`{v}` is not a whole number"),
        }),
        None => Ok(None),
    }
}

impl Layer {
    /// Reads `fabrique.toml` (or the file given); a missing default file is an empty layer.
    pub fn from_file(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError {
            name: String::from("config"),
            source_name: path.display().to_string(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default());
            }
            Err(e) => return Err(err(format!("cannot read the file: {e}"))),
        };
        toml::from_str(&text).map_err(|e| err(e.message().to_string()))
    }

    /// Reads the `FABRIQUE_*` variables among `vars`. An unknown `FABRIQUE_` name is refused,
    /// so that a typo does not go unnoticed.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("FABRIQUE_").map(|k| (k.to_string(), v)))
            .filter(|(k, _)| !k.starts_with("TEST_") && k != "CONFIG")
            .collect();
        if let Some(unknown) = vars.keys().find(|k| !ENV_NAMES.contains(&k.as_str())) {
            return Err(ConfigError {
                name: format!("FABRIQUE_{unknown}"),
                source_name: String::from("the environment"),
                reason: format!(
                    "unknown setting; known ones are FABRIQUE_{}",
                    ENV_NAMES.join(", FABRIQUE_")
                ),
            });
        }
        Ok(Self {
            listen: vars.get("LISTEN").cloned(),
            data_dir: vars.get("DATA_DIR").map(PathBuf::from),
            database_url: vars.get("DATABASE_URL").cloned(),
            public_url: vars.get("PUBLIC_URL").cloned(),
            max_body_kb: env_number(&vars, "MAX_BODY_KB")?,
            log: vars.get("LOG").cloned(),
            max_upload_mb: env_number(&vars, "MAX_UPLOAD_MB")?,
            job_retention_days: env_number(&vars, "JOB_RETENTION_DAYS")?,
            lab_name: vars.get("LAB_NAME").cloned(),
            backup_dir: vars.get("BACKUP_DIR").map(PathBuf::from),
            daily_backups_kept: env_number(&vars, "DAILY_BACKUPS_KEPT")?,
            backup_hour: env_number(&vars, "BACKUP_HOUR")?,
            announce: match vars.get("ANNOUNCE").map(|v| v.trim().to_ascii_lowercase()) {
                None => None,
                Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Some(true),
                Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Some(false),
                Some(v) => {
                    return Err(ConfigError {
                        name: String::from("announce"),
                        source_name: String::from("FABRIQUE_ANNOUNCE"),
                        reason: format!("`{v}` is not true or false"),
                    });
                }
            },
        })
    }
}

impl Config {
    /// Applies the layers in order (later wins) over the defaults, then validates.
    pub fn build(layers: &[(&str, Layer)]) -> Result<Self, ConfigError> {
        let mut config = Config::default();
        for (source, layer) in layers {
            let err = |name: &str, reason: String| ConfigError {
                name: name.to_string(),
                source_name: source.to_string(),
                reason,
            };
            if let Some(listen) = &layer.listen {
                config.listen = listen.trim().parse().map_err(|_| {
                    err(
                        "listen",
                        format!("`{listen}` is not an address and port such as 0.0.0.0:8080"),
                    )
                })?;
            }
            if let Some(dir) = &layer.data_dir {
                if dir.as_os_str().is_empty() {
                    return Err(err("data_dir", String::from("must not be empty")));
                }
                config.data_dir = dir.clone();
            }
            if let Some(url) = &layer.database_url {
                let url = url.trim();
                if url.is_empty() {
                    config.database_url = None;
                } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    config.database_url = Some(url.to_string());
                } else {
                    return Err(err(
                        "database_url",
                        format!(
                            "`{}` is not a PostgreSQL URL (postgres://user@host/db); leave it unset to use SQLite in data_dir",
                            redact_url(url)
                        ),
                    ));
                }
            }
            if let Some(url) = &layer.public_url {
                let url = url.trim().trim_end_matches('/');
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(err(
                        "public_url",
                        format!("`{url}` must start with http:// or https://"),
                    ));
                }
                config.public_url = Some(url.to_string());
            }
            if let Some(kb) = layer.max_body_kb {
                if !(16..=1_048_576).contains(&kb) {
                    return Err(err("max_body_kb", format!("{kb} is outside 16 to 1048576")));
                }
                config.max_body_kb = kb;
            }
            if let Some(mb) = layer.max_upload_mb {
                if !(1..=10_240).contains(&mb) {
                    return Err(err("max_upload_mb", format!("{mb} is outside 1 to 10240")));
                }
                config.max_upload_mb = mb;
            }
            if let Some(days) = layer.job_retention_days {
                if !(1..=3650).contains(&days) {
                    return Err(err(
                        "job_retention_days",
                        format!("{days} is outside 1 to 3650"),
                    ));
                }
                config.job_retention_days = days;
            }
            if let Some(name) = &layer.lab_name {
                let name = name.trim();
                if name.is_empty()
                    || name.chars().count() > 80
                    || name.chars().any(char::is_control)
                {
                    return Err(err(
                        "lab_name",
                        String::from("must be a name of 1 to 80 characters, such as `Fablab Nord`"),
                    ));
                }
                config.lab_name = name.to_string();
            }
            if let Some(dir) = &layer.backup_dir {
                if dir.as_os_str().is_empty() {
                    return Err(err("backup_dir", String::from("must not be empty")));
                }
                config.backup_dir = Some(dir.clone());
            }
            if let Some(kept) = layer.daily_backups_kept {
                if kept > 365 {
                    return Err(err(
                        "daily_backups_kept",
                        format!("{kept} is outside 0 to 365"),
                    ));
                }
                config.daily_backups_kept = kept;
            }
            if let Some(hour) = layer.backup_hour {
                if hour > 23 {
                    return Err(err("backup_hour", format!("{hour} is outside 0 to 23")));
                }
                config.backup_hour = hour;
            }
            if let Some(announce) = layer.announce {
                config.announce = announce;
            }
            if let Some(log) = &layer.log {
                tracing_subscriber::EnvFilter::try_new(log)
                    .map_err(|e| err("log", format!("`{log}` is not a log filter: {e}")))?;
                config.log = log.clone();
            }
        }
        Ok(config)
    }

    /// The database to open: PostgreSQL when configured, else `fabrique.db` in `data_dir`.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("fabrique.db").display()),
        }
    }

    /// Where backups go unless told otherwise.
    pub fn backups_dir(&self) -> PathBuf {
        self.backup_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("backups"))
    }

    /// Where job files are kept.
    pub fn jobs_dir(&self) -> PathBuf {
        self.data_dir.join("jobs")
    }

    /// The address links for people elsewhere are built from (badge credentials, calendar
    /// feeds, a request's follow link, the OctoPrint `refs` a slicer keeps): `public_url`,
    /// never the request's `Host` header, which the sender chooses. Without `public_url`,
    /// `http://` and the listen address, with `localhost` for an address of every interface
    /// (`0.0.0.0`, `::`): right on the workshop PC itself, wrong anywhere else, and said
    /// at start-up.
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None if self.listen.ip().is_unspecified() => {
                format!("http://localhost:{}", self.listen.port())
            }
            None => format!("http://{}", self.listen),
        }
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_built_from_public_url_or_the_listen_address() {
        let mut config = Config::default();
        assert_eq!(config.public_base(), "http://localhost:8080");
        config.listen = "192.168.1.20:8000".parse().unwrap();
        assert_eq!(config.public_base(), "http://192.168.1.20:8000");
        config.listen = "[::]:8080".parse().unwrap();
        assert_eq!(config.public_base(), "http://localhost:8080");
        config.public_url = Some("https://fablab.example.org".into());
        assert_eq!(config.public_base(), "https://fablab.example.org");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn later_layers_win_over_earlier_ones_and_defaults() {
        let file: Layer = toml::from_str("listen = \"127.0.0.1:9000\"\nlog = \"debug\"").unwrap();
        let vars = Layer::from_env(env(&[
            ("FABRIQUE_LISTEN", "127.0.0.1:9100"),
            ("HOME", "/root"),
        ]))
        .unwrap();
        let flags = Layer {
            data_dir: Some("/tmp/x".into()),
            ..Layer::default()
        };
        let c = Config::build(&[("fabrique.toml", file), ("env", vars), ("flags", flags)]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(c.log, "debug");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.max_body_kb, 256);
        assert_eq!(c.lab_name, "Fablab");
        assert!(c.announce);
    }

    #[test]
    fn announcing_on_the_network_is_turned_off_in_the_file_or_the_environment() {
        let file: Layer = toml::from_str("announce = false").unwrap();
        assert!(!Config::build(&[("fabrique.toml", file)]).unwrap().announce);
        let vars = Layer::from_env(env(&[("FABRIQUE_ANNOUNCE", "off")])).unwrap();
        assert!(!Config::build(&[("env", vars)]).unwrap().announce);
        let e = Layer::from_env(env(&[("FABRIQUE_ANNOUNCE", "peut-être")])).unwrap_err();
        assert_eq!(e.name, "announce");
    }

    #[test]
    fn a_node_names_its_lab_in_the_file_or_the_environment() {
        let file: Layer = toml::from_str("lab_name = \"Fablab Nord\"").unwrap();
        assert_eq!(
            Config::build(&[("fabrique.toml", file)]).unwrap().lab_name,
            "Fablab Nord"
        );
        let vars =
            Layer::from_env(env(&[("FABRIQUE_LAB_NAME", "Centre social Rosa Parks")])).unwrap();
        let c = Config::build(&[("env", vars)]).unwrap();
        assert_eq!(c.lab_name, "Centre social Rosa Parks");
        let vars = Layer::from_env(env(&[("FABRIQUE_LAB_NAME", "  ")])).unwrap();
        assert_eq!(
            Config::build(&[("env", vars)]).unwrap_err().name,
            "lab_name"
        );
    }

    #[test]
    fn daily_backups_are_set_in_the_file_or_the_environment() {
        let c = Config::default();
        assert_eq!((c.daily_backups_kept, c.backup_hour), (7, 3));
        assert_eq!(c.backups_dir(), PathBuf::from("fabrique-data/backups"));
        let file: Layer =
            toml::from_str("backup_dir = \"/srv/sauvegardes\"\ndaily_backups_kept = 0").unwrap();
        let c = Config::build(&[("fabrique.toml", file)]).unwrap();
        assert_eq!(c.backups_dir(), PathBuf::from("/srv/sauvegardes"));
        assert_eq!(c.daily_backups_kept, 0);
        let vars = Layer::from_env(env(&[("FABRIQUE_BACKUP_HOUR", "24")])).unwrap();
        assert_eq!(
            Config::build(&[("env", vars)]).unwrap_err().name,
            "backup_hour"
        );
    }

    #[test]
    fn a_wrong_setting_is_named_with_its_source() {
        let vars = Layer::from_env(env(&[("FABRIQUE_LISTEN", "eight-thousand")])).unwrap();
        let e = Config::build(&[("FABRIQUE_LISTEN", vars)]).unwrap_err();
        assert_eq!(e.name, "listen");
        assert!(e.to_string().contains("FABRIQUE_LISTEN"), "{e}");
        let e = Layer::from_env(env(&[("FABRIQUE_LISTN", "x")])).unwrap_err();
        assert!(e.to_string().contains("FABRIQUE_LISTN"));
        assert!(toml::from_str::<Layer>("lisen = 1").is_err());
    }

    #[test]
    fn database_passwords_never_appear_in_debug_or_errors() {
        let vars = Layer::from_env(env(&[(
            "FABRIQUE_DATABASE_URL",
            "postgres://lab:s3cret@db/fabrique",
        )]))
        .unwrap();
        let c = Config::build(&[("env", vars)]).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        let vars =
            Layer::from_env(env(&[("FABRIQUE_DATABASE_URL", "mysql://lab:s3cret@db/x")])).unwrap();
        let e = Config::build(&[("env", vars)]).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
