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

crate::domain::text_enum! {
    /// What can happen to an account that its owner and the managers may look back on:
    /// the owner changed their own password or PIN (`SecretChanged`), someone else (a
    /// manager) set a new one and the API keys were revoked (`SecretReset`), a key was made
    /// or revoked.
    AccountEventKind {
        SecretChanged = "secret_changed",
        SecretReset = "secret_reset",
        ApiKeyCreated = "api_key_created",
        ApiKeyRevoked = "api_key_revoked",
    }
}

/// One line of an account's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEvent {
    pub kind: AccountEventKind,
    /// The key's prefix and label for key events, how many keys a reset revoked.
    pub detail: String,
    pub at: i64,
    /// Who did it; `None` for the command line.
    pub actor: Option<UserId>,
    pub actor_name: Option<String>,
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
    /// With a credential: who set it. Someone else than the owner (a manager's reset) also
    /// revokes the owner's API keys, so that a key taken with the old secret dies with it.
    pub credential_by: Option<UserId>,
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
        let mut tx = self.begin_write().await?;
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
            let by_owner = update.credential_by == Some(id);
            let detail = if by_owner {
                String::new()
            } else {
                let revoked = sqlx::query("DELETE FROM api_keys WHERE user_id = $1")
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                format!("api_keys_revoked={revoked}")
            };
            let kind = if by_owner {
                AccountEventKind::SecretChanged
            } else {
                AccountEventKind::SecretReset
            };
            insert_event(&mut tx, id, update.credential_by, kind, &detail, now).await?;
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
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO api_keys (user_id, key_hash, prefix, label, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(user.0)
        .bind(key_hash)
        .bind(prefix)
        .bind(label)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict("api_key"))?;
        let detail = format!("{prefix} {label}");
        insert_event(
            &mut tx,
            user,
            Some(user),
            AccountEventKind::ApiKeyCreated,
            &detail,
            now,
        )
        .await?;
        tx.commit().await?;
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

    /// Revokes the key `key_id` of `user`, recording that `actor` did (`None`: the command
    /// line), in one transaction.
    pub async fn delete_api_key(
        &self,
        user: UserId,
        key_id: i64,
        actor: Option<UserId>,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "DELETE FROM api_keys WHERE id = $1 AND user_id = $2 RETURNING prefix, label",
        )
        .bind(key_id)
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let prefix: String = row.try_get("prefix")?;
        let label: String = row.try_get("label")?;
        insert_event(
            &mut tx,
            user,
            actor,
            AccountEventKind::ApiKeyRevoked,
            &format!("{prefix} {label}"),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Counts one more failed login on each of `keys` (a username, an address) within
    /// `window_s`, before the secret is checked, in one transaction: parallel guesses wait
    /// on the rows' locks and each sees the others' counts. When a key is already at its
    /// limit nothing is counted and the answer is `Err(seconds until its window ends)`.
    pub async fn reserve_login_attempt(
        &self,
        keys: &[(&str, i64)],
        now: i64,
        window_s: i64,
    ) -> StoreResult<Result<(), i64>> {
        let mut tx = self.begin_write().await?;
        for (key, limit) in keys {
            let row = sqlx::query(
                "INSERT INTO login_throttle (key, window_start, failures) VALUES ($1, $2, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                 window_start = CASE WHEN login_throttle.window_start <= $3 THEN $2 \
                                ELSE login_throttle.window_start END, \
                 failures = CASE WHEN login_throttle.window_start <= $3 THEN 1 \
                            ELSE login_throttle.failures + 1 END \
                 RETURNING window_start, failures",
            )
            .bind(*key)
            .bind(now)
            .bind(now - window_s)
            .fetch_one(&mut *tx)
            .await?;
            let failures: i64 = row.try_get("failures")?;
            if failures > *limit {
                let window_start: i64 = row.try_get("window_start")?;
                tx.rollback().await?;
                return Ok(Err((window_start + window_s - now).max(1)));
            }
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Gives back an attempt reserved by [`Store::reserve_login_attempt`] that was not a
    /// failure (the secret was right, or it could not be checked).
    pub async fn release_login_attempt(&self, keys: &[&str]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for key in keys {
            sqlx::query(
                "UPDATE login_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0",
            )
            .bind(*key)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the windows that ended before `before` (the hourly clean-up: guesses at names
    /// that do not exist would otherwise stay).
    pub async fn purge_login_throttle(&self, before: i64) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM login_throttle WHERE window_start <= $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Forgets the failures of `key` (a username after a successful login), and every
    /// window that ended before `before`.
    pub async fn clear_login_throttle(&self, key: &str, before: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_throttle WHERE key = $1 OR window_start <= $2")
            .bind(key)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// What was done to an account, newest first, with who did it.
    pub async fn account_events(&self, user: UserId) -> StoreResult<Vec<AccountEvent>> {
        let rows = sqlx::query(
            "SELECT e.kind, e.detail, e.at, e.actor_id, a.username AS actor_name \
             FROM account_events e LEFT JOIN users a ON a.id = e.actor_id \
             WHERE e.user_id = $1 ORDER BY e.at DESC, e.id DESC",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AccountEvent {
                    kind: parse_word("kind", &r.try_get::<String, _>("kind")?)?,
                    detail: r.try_get("detail")?,
                    at: r.try_get("at")?,
                    actor: r.try_get::<Option<i64>, _>("actor_id")?.map(UserId),
                    actor_name: r.try_get("actor_name")?,
                })
            })
            .collect()
    }
}

/// Records what was done to an account, and by whom, in the transaction that did it.
async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: UserId,
    actor: Option<UserId>,
    kind: AccountEventKind,
    detail: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO account_events (user_id, actor_id, kind, detail, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user.0)
    .bind(actor.map(|a| a.0))
    .bind(kind.as_str())
    .bind(detail)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
