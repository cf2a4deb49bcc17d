//! Accounts, sessions, API keys and login throttling.

use super::{Store, StoreError, StoreResult, conflict, parse_word};
use crate::domain::{CredentialKind, NewUser, User, UserId, Username};
use sqlx::Row;
use sqlx::any::AnyRow;

const USER_COLUMNS: &str =
    "id, username, display_name, email, role, lang, credential_kind, disabled_at";

/// How often the last use of an API key is written down, in seconds.
const KEY_USE_PRECISION_S: i64 = 60;

/// [`USER_COLUMNS`] of the table aliased `u`, for joins.
fn prefixed_user_columns() -> String {
    USER_COLUMNS
        .split(", ")
        .map(|c| format!("u.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn user_from_row(row: &AnyRow) -> StoreResult<User> {
    let username: String = row.try_get("username")?;
    Ok(User {
        id: UserId(row.try_get("id")?),
        username: Username::parse(&username)
            .map_err(|_| StoreError::Corrupt(format!("username = {username:?}")))?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        role: parse_word("role", &row.try_get::<String, _>("role")?)?,
        lang: parse_word("lang", &row.try_get::<String, _>("lang")?)?,
        credential_kind: parse_word(
            "credential_kind",
            &row.try_get::<String, _>("credential_kind")?,
        )?,
        disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
    })
}

/// An API key as its owner sees it in the list: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyInfo {
    pub id: i64,
    pub prefix: String,
    pub label: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A stored change to an account; the credential arrives already hashed.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub display_name: Option<String>,
    pub email: Option<Option<String>>,
    pub role: Option<crate::domain::Role>,
    pub lang: Option<crate::domain::Lang>,
    pub disabled: Option<bool>,
    pub credential: Option<(CredentialKind, String)>,
}

impl Store {
    pub async fn insert_user(
        &self,
        user: &NewUser,
        secret_hash: &str,
        now: i64,
    ) -> StoreResult<UserId> {
        let row = sqlx::query(
            "INSERT INTO users (username, display_name, email, role, lang, credential_kind, \
             secret_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             RETURNING id",
        )
        .bind(user.username.as_str())
        .bind(&user.display_name)
        .bind(user.email.as_deref())
        .bind(user.role.as_str())
        .bind(user.lang.as_str())
        .bind(user.credential_kind.as_str())
        .bind(secret_hash)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(conflict("username"))?;
        Ok(UserId(row.try_get("id")?))
    }

    pub async fn user(&self, id: UserId) -> StoreResult<User> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from_row(&row)
    }

    /// The account and its credential hash, for logging in.
    pub async fn user_for_login(&self, username: &Username) -> StoreResult<Option<(User, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, secret_hash FROM users WHERE username = $1"
        ))
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((user_from_row(&row)?, row.try_get("secret_hash")?)))
            .transpose()
    }

    pub async fn user_by_username(&self, username: &Username) -> StoreResult<User> {
        Ok(self
            .user_for_login(username)
            .await?
            .ok_or(StoreError::NotFound)?
            .0)
    }

    pub async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY disabled_at IS NOT NULL, display_name, username"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn count_users(&self) -> StoreResult<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Applies `update` in one transaction. Disabling an account or changing its credential
    /// also ends its sessions, so a stolen session does not outlive a password change.
    pub async fn update_user(
        &self,
        id: UserId,
        update: &UserUpdate,
        now: i64,
    ) -> StoreResult<User> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT id FROM users WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        if let Some(name) = &update.display_name {
            sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
                .bind(name)
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(email) = &update.email {
            sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
                .bind(email.as_deref())
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(role) = update.role {
            sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
                .bind(role.as_str())
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(lang) = update.lang {
            sqlx::query("UPDATE users SET lang = $1 WHERE id = $2")
                .bind(lang.as_str())
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        let mut end_sessions = false;
        if let Some(disabled) = update.disabled {
            // Keeps the first disabling time when an already disabled account is saved again.
            sqlx::query(
                "UPDATE users SET disabled_at = CASE WHEN $1 = 1 THEN COALESCE(disabled_at, $2) ELSE NULL END \
                 WHERE id = $3",
            )
            .bind(i64::from(disabled))
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
            end_sessions |= disabled;
        }
        if let Some((kind, hash)) = &update.credential {
            sqlx::query("UPDATE users SET credential_kind = $1, secret_hash = $2 WHERE id = $3")
                .bind(kind.as_str())
                .bind(hash)
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
            end_sessions = true;
        }
        if end_sessions {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE users SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await?;
        let user = user_from_row(&row)?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn insert_session(
        &self,
        token_hash: &str,
        user: UserId,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user.0)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The signed-in account behind a session, if the session is live and the account enabled.
    pub async fn user_by_session(&self, token_hash: &str, now: i64) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {cols} FROM users u JOIN sessions s ON s.user_id = u.id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
            cols = prefixed_user_columns()
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_expired_sessions(&self, now: i64) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn insert_api_key(
        &self,
        user: UserId,
        key_hash: &str,
        prefix: &str,
        label: &str,
        now: i64,
    ) -> StoreResult<i64> {
        let row = sqlx::query(
            "INSERT INTO api_keys (user_id, key_hash, prefix, label, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(user.0)
        .bind(key_hash)
        .bind(prefix)
        .bind(label)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(conflict("api_key"))?;
        Ok(row.try_get("id")?)
    }

    /// The enabled account owning an API key, noting when the key was last used. The note
    /// is kept to the minute: a slicer sending files in a burst reads the key each time but
    /// writes at most once a minute, so uploads do not queue behind SQLite's one writer.
    pub async fn user_by_api_key(&self, key_hash: &str, now: i64) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {cols}, k.last_used_at FROM users u JOIN api_keys k ON k.user_id = u.id \
             WHERE k.key_hash = $1 AND u.disabled_at IS NULL",
            cols = prefixed_user_columns()
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        if last_used.is_none_or(|at| now - at >= KEY_USE_PRECISION_S) {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE key_hash = $2")
                .bind(now)
                .bind(key_hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(user_from_row(&row)?))
    }

    pub async fn list_api_keys(&self, user: UserId) -> StoreResult<Vec<ApiKeyInfo>> {
        let rows = sqlx::query(
            "SELECT id, prefix, label, created_at, last_used_at FROM api_keys WHERE user_id = $1 ORDER BY id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiKeyInfo {
                    id: r.try_get("id")?,
                    prefix: r.try_get("prefix")?,
                    label: r.try_get("label")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    pub async fn delete_api_key(&self, user: UserId, key_id: i64) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1 AND user_id = $2")
            .bind(key_id)
            .bind(user.0)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    pub async fn record_login_failure(
        &self,
        username: &str,
        ip: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO login_failures (username, ip, at) VALUES ($1, $2, $3)")
            .bind(username)
            .bind(ip)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Failed logins since `since`: for this username, and from this address; with the time
    /// of the oldest one counted, to say when the next try is allowed.
    pub async fn login_failures_since(
        &self,
        username: &str,
        ip: &str,
        since: i64,
    ) -> StoreResult<(i64, i64, Option<i64>)> {
        let by_user = sqlx::query("SELECT COUNT(*) AS n, MIN(at) AS first FROM login_failures WHERE username = $1 AND at > $2")
            .bind(username)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        let by_ip = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(at) AS first FROM login_failures WHERE ip = $1 AND at > $2",
        )
        .bind(ip)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        let first_user: Option<i64> = by_user.try_get("first")?;
        let first_ip: Option<i64> = by_ip.try_get("first")?;
        Ok((
            by_user.try_get("n")?,
            by_ip.try_get("n")?,
            first_user.into_iter().chain(first_ip).min(),
        ))
    }

    /// Forgets the failures of a username after a successful login, and old failures of all.
    pub async fn clear_login_failures(&self, username: &str, before: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE username = $1 OR at <= $2")
            .bind(username)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
