//! The lab's use cases for accounts and machines, with their permission rules. The web layer
//! calls these and never the store directly for anything that has a rule.

use crate::domain::campaign::LabId;
use crate::domain::{
    CredentialKind, Invalid, Lang, Machine, MachineId, MachineInput, MachineState, NewUser, Role,
    Secret, User, UserId, UserPatch, Username,
};
use crate::secrets::{self, HashError};
use crate::store::{ApiKeyInfo, Store, StoreError, UserUpdate};

/// How long a session lasts without logging in again.
pub const SESSION_DAYS: i64 = 14;
/// Failed logins allowed per username, and per address, within [`THROTTLE_WINDOW_S`].
pub const MAX_FAILURES_PER_USER: i64 = 5;
pub const MAX_FAILURES_PER_IP: i64 = 20;
pub const THROTTLE_WINDOW_S: i64 = 15 * 60;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("invalid {0}")]
    Invalid(#[from] Invalid),
    #[error("not allowed")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    #[error("wrong username or secret")]
    BadCredentials,
    #[error("account disabled")]
    AccountDisabled,
    #[error("too many failed logins; retry in {retry_after_s} s")]
    Throttled { retry_after_s: i64 },
    #[error("refused: {0}")]
    Refused(#[from] crate::domain::calendar::Refusal),
    /// The fit rule refuses a job on a machine, or its start.
    #[error("job refused: {}", .0.code())]
    Fit(crate::domain::fit::Refusal),
    #[error("refused: {0}")]
    Campaign(#[from] crate::domain::campaign::CampaignRefusal),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<crate::domain::fit::Refusal> for LabError {
    fn from(refusal: crate::domain::fit::Refusal) -> Self {
        LabError::Fit(refusal)
    }
}

impl From<StoreError> for LabError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => LabError::NotFound,
            StoreError::Conflict { what } => LabError::Conflict { what },
            StoreError::Campaign(refusal) => LabError::Campaign(refusal),
            other => LabError::Store(other),
        }
    }
}

pub type LabResult<T> = Result<T, LabError>;

/// A session just opened: the token goes in the cookie, only its hash in the database.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub user: User,
    pub expires_at: i64,
}

/// The lab: its store and the rules around it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Lab {
    store: Store,
    /// Verified against when a username does not exist, so that both failures take as long.
    dummy_hash: String,
    /// Which lab of the network this node is: the records it writes carry it.
    lab_id: LabId,
}

/// The lab the migrations create: a single-node install is this lab.
pub const DEFAULT_LAB: LabId = LabId(1);

pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn require(actor: &User, role: Role) -> LabResult<()> {
    if actor.role.at_least(role) {
        Ok(())
    } else {
        Err(LabError::Forbidden)
    }
}

impl Lab {
    pub fn new(store: Store) -> LabResult<Self> {
        Ok(Self {
            store,
            dummy_hash: secrets::hash_secret("not a real account")?,
            lab_id: DEFAULT_LAB,
        })
    }

    /// This node as the lab named `name` (the `lab_name` setting), added to the network's
    /// labs on first use. Several nodes sharing one PostgreSQL database each name their own.
    pub async fn at_lab(mut self, name: &str, now: i64) -> LabResult<Self> {
        let name = crate::domain::account::parse_text("lab_name", name, 80)?;
        self.lab_id = self.store.lab_named(&name, now).await?;
        Ok(self)
    }

    /// The lab this node is.
    pub fn lab_id(&self) -> LabId {
        self.lab_id
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    // --- Logging in -------------------------------------------------------------------------

    /// Checks a username and password or PIN, with throttling per username and per address,
    /// and opens a session.
    pub async fn login(
        &self,
        username: &str,
        secret: &Secret,
        ip: &str,
        now: i64,
    ) -> LabResult<NewSession> {
        let key = username.trim().to_lowercase();
        let (by_user, by_ip, oldest) = self
            .store
            .login_failures_since(&key, ip, now - THROTTLE_WINDOW_S)
            .await?;
        if by_user >= MAX_FAILURES_PER_USER || by_ip >= MAX_FAILURES_PER_IP {
            let retry_after_s = oldest
                .map_or(THROTTLE_WINDOW_S, |t| t + THROTTLE_WINDOW_S - now)
                .max(1);
            return Err(LabError::Throttled { retry_after_s });
        }
        let found = match Username::parse(&key) {
            Ok(name) => self.store.user_for_login(&name).await?,
            Err(_) => None,
        };
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, self.dummy_hash.clone()),
        };
        let secret = secret.expose().to_string();
        let verified = tokio::task::spawn_blocking(move || secrets::verify_secret(&secret, &hash))
            .await
            .unwrap_or(false);
        let user = match user {
            Some(user) if verified => user,
            _ => {
                self.store.record_login_failure(&key, ip, now).await?;
                return Err(LabError::BadCredentials);
            }
        };
        if user.disabled {
            return Err(LabError::AccountDisabled);
        }
        self.store
            .clear_login_failures(&key, now - THROTTLE_WINDOW_S)
            .await?;
        let token = secrets::random_token()?;
        let expires_at = now + SESSION_DAYS * 86_400;
        self.store
            .insert_session(&secrets::token_hash(&token), user.id, now, expires_at)
            .await?;
        Ok(NewSession {
            token,
            user,
            expires_at,
        })
    }

    pub async fn user_by_session(&self, token: &str, now: i64) -> LabResult<Option<User>> {
        Ok(self
            .store
            .user_by_session(&secrets::token_hash(token), now)
            .await?)
    }

    pub async fn user_by_api_key(&self, key: &str, now: i64) -> LabResult<Option<User>> {
        Ok(self
            .store
            .user_by_api_key(&secrets::token_hash(key), now)
            .await?)
    }

    pub async fn logout(&self, token: &str) -> LabResult<()> {
        Ok(self
            .store
            .delete_session(&secrets::token_hash(token))
            .await?)
    }

    // --- Accounts ---------------------------------------------------------------------------

    /// Creates an account without an actor: for the command line and the demo.
    pub async fn create_user_unchecked(&self, new: &NewUser, now: i64) -> LabResult<User> {
        let secret = new.secret.expose().to_string();
        let hash = tokio::task::spawn_blocking(move || secrets::hash_secret(&secret))
            .await
            .map_err(|e| HashError::from_join(&e))??;
        let id = self.store.insert_user(new, &hash, now).await?;
        Ok(self.store.user(id).await?)
    }

    pub async fn create_user(&self, actor: &User, new: &NewUser, now: i64) -> LabResult<User> {
        require(actor, Role::Manager)?;
        if !actor.role.can_manage(new.role) {
            return Err(LabError::Forbidden);
        }
        self.create_user_unchecked(new, now).await
    }

    pub async fn list_users(&self, actor: &User) -> LabResult<Vec<User>> {
        require(actor, Role::Manager)?;
        Ok(self.store.list_users().await?)
    }

    /// An account as `actor` may see it: managers see everyone, others only themselves.
    pub async fn user(&self, actor: &User, id: UserId) -> LabResult<User> {
        if actor.id != id {
            require(actor, Role::Manager)?;
        }
        Ok(self.store.user(id).await?)
    }

    /// Changes an account. A person may change their own name, e-mail, language and
    /// credential; a manager may also change the role and disable accounts they manage;
    /// nobody disables or demotes themselves (so the lab always keeps its manager).
    pub async fn update_user(
        &self,
        actor: &User,
        id: UserId,
        patch: UserPatch,
        now: i64,
    ) -> LabResult<User> {
        let target = self.store.user(id).await?;
        let is_self = actor.id == id;
        if is_self {
            if patch.disabled == Some(true) || patch.role.is_some_and(|r| r != actor.role) {
                return Err(LabError::Forbidden);
            }
        } else {
            require(actor, Role::Manager)?;
            if !actor.role.can_manage(target.role) {
                return Err(LabError::Forbidden);
            }
            if let Some(role) = patch.role
                && !actor.role.can_manage(role)
            {
                return Err(LabError::Forbidden);
            }
        }
        let credential = match patch.credential {
            Some((kind, secret)) => {
                secret.validate(kind)?;
                let secret = secret.expose().to_string();
                let hash = tokio::task::spawn_blocking(move || secrets::hash_secret(&secret))
                    .await
                    .map_err(|e| HashError::from_join(&e))??;
                Some((kind, hash))
            }
            None => None,
        };
        let update = UserUpdate {
            display_name: patch.display_name,
            email: patch.email,
            role: patch.role,
            lang: patch.lang,
            disabled: patch.disabled,
            credential,
        };
        Ok(self.store.update_user(id, &update, now).await?)
    }

    pub async fn set_lang(&self, actor: &User, lang: Lang, now: i64) -> LabResult<User> {
        self.update_user(
            actor,
            actor.id,
            UserPatch {
                lang: Some(lang),
                ..UserPatch::default()
            },
            now,
        )
        .await
    }

    /// Creates a personal API key for `owner` and returns it: the only time it is shown.
    pub async fn create_api_key(&self, owner: &User, label: &str, now: i64) -> LabResult<String> {
        let label = if label.trim().is_empty() {
            String::from("API")
        } else {
            crate::domain::account::parse_text("label", label, 60)?
        };
        let key = format!("fab_{}", secrets::random_token()?);
        let prefix: String = key.chars().take(10).collect();
        self.store
            .insert_api_key(owner.id, &secrets::token_hash(&key), &prefix, &label, now)
            .await?;
        Ok(key)
    }

    pub async fn list_api_keys(&self, owner: &User) -> LabResult<Vec<ApiKeyInfo>> {
        Ok(self.store.list_api_keys(owner.id).await?)
    }

    pub async fn revoke_api_key(&self, owner: &User, key_id: i64) -> LabResult<()> {
        Ok(self.store.delete_api_key(owner.id, key_id).await?)
    }

    // --- Machines ---------------------------------------------------------------------------

    /// Everyone signed in sees the machines and their state.
    pub async fn machines(&self) -> LabResult<Vec<Machine>> {
        Ok(self.store.list_machines().await?)
    }

    pub async fn machine(&self, id: MachineId) -> LabResult<Machine> {
        Ok(self.store.machine(id).await?)
    }

    /// A new machine starts `offline` when Fabrique talks to it (until its link is up), and
    /// `idle` when it has no data link.
    pub async fn create_machine(
        &self,
        actor: &User,
        input: &MachineInput,
        now: i64,
    ) -> LabResult<Machine> {
        require(actor, Role::Manager)?;
        let state = match input.connection {
            crate::domain::Connection::Manual => MachineState::Idle,
            _ => MachineState::Offline,
        };
        let id = self.store.insert_machine(input, state, now).await?;
        Ok(self.store.machine(id).await?)
    }

    pub async fn update_machine(
        &self,
        actor: &User,
        id: MachineId,
        input: &MachineInput,
        now: i64,
    ) -> LabResult<Machine> {
        require(actor, Role::Manager)?;
        self.store.update_machine(id, input, now).await?;
        Ok(self.store.machine(id).await?)
    }

    /// A manager puts a machine in maintenance, marks it checked, disables or re-enables it.
    pub async fn set_machine_state(
        &self,
        actor: &User,
        id: MachineId,
        state: MachineState,
        reason: &str,
        now: i64,
    ) -> LabResult<Machine> {
        require(actor, Role::Manager)?;
        let machine = self.store.machine(id).await?;
        let state = machine.state.manual_transition(state)?;
        let reason = if reason.trim().is_empty() {
            String::new()
        } else {
            crate::domain::account::parse_text("reason", reason, 200)?
        };
        self.store
            .set_machine_state(id, state, &reason, now)
            .await?;
        Ok(self.store.machine(id).await?)
    }
}

impl HashError {
    fn from_join(e: &tokio::task::JoinError) -> Self {
        HashError::new(e.to_string())
    }
}

/// The kind of credential a form asks for, to tell a PIN account from a password one.
pub fn credential_kind_for(secret: &Secret) -> CredentialKind {
    if !secret.is_empty() && secret.expose().chars().all(|c| c.is_ascii_digit()) {
        CredentialKind::Pin
    } else {
        CredentialKind::Password
    }
}
