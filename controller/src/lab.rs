//! The lab's use cases for accounts and machines, with their permission rules. The web layer
//! calls these and never the store directly for anything that has a rule.

use crate::domain::campaign::LabId;
use crate::domain::machine::ReportedLimits;
use crate::domain::{
    CredentialKind, Invalid, Machine, MachineId, MachineInput, MachineState, NewUser, Role, Secret,
    User, UserId, UserPatch, Username,
};
use crate::secrets::{self, HashError, SecretChecks};
use crate::store::{AccountEvent, ApiKeyInfo, Store, StoreError, UserUpdate};

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
    /// Every secret check is taken (a burst of logins): nothing was checked, come back.
    #[error("too many logins at once; retry in {retry_after_s} s")]
    Busy { retry_after_s: i64 },
    /// One's own password or PIN is changed only with the current one.
    #[error("the current secret is needed to change it")]
    CurrentSecretRequired,
    #[error("the current secret is wrong")]
    CurrentSecretWrong,
    /// A trainer awarding a badge to themselves: another trainer or a manager must.
    #[error("a trainer cannot award themselves a badge")]
    SelfAward,
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
    /// The bound on argon2 computations running at once.
    checks: SecretChecks,
    /// The bound on embroidery designs read at once (a design is read whole: a 32 MB DST
    /// takes some 300 MB while it is read).
    pub(crate) designs: std::sync::Arc<tokio::sync::Semaphore>,
}

/// How many embroidery designs are read (analysed, or copied as DST) at once.
pub const MAX_CONCURRENT_DESIGNS: usize = 2;

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
            checks: SecretChecks::default(),
            designs: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_DESIGNS)),
        })
    }

    /// The same lab with another bound on secret checks (tests, a bigger server).
    pub fn with_secret_checks(mut self, checks: SecretChecks) -> Self {
        self.checks = checks;
        self
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
    ///
    /// The failure is counted before argon2 runs (and given back when the secret was right),
    /// so parallel guesses cannot all be checked against one count; the check itself waits
    /// for one of the few argon2 slots ([`SecretChecks`]), or answers [`LabError::Busy`].
    pub async fn login(
        &self,
        username: &str,
        secret: &Secret,
        ip: &str,
        now: i64,
    ) -> LabResult<NewSession> {
        let name = username.trim().to_lowercase();
        let user_key = throttle_user_key(&name);
        let addr_key = throttle_address_key(ip);
        let keys = [
            (user_key.as_str(), MAX_FAILURES_PER_USER),
            (addr_key.as_str(), MAX_FAILURES_PER_IP),
        ];
        let user = match self.try_secret(&keys, &name, secret, now).await? {
            // The failure stays counted.
            (Some(user), true) => user,
            _ => return Err(LabError::BadCredentials),
        };
        // The right secret: the address gets its attempt back, the username starts afresh.
        self.store
            .release_login_attempt(&[addr_key.as_str()])
            .await?;
        self.store
            .clear_login_throttle(&user_key, now - THROTTLE_WINDOW_S)
            .await?;
        if user.disabled {
            return Err(LabError::AccountDisabled);
        }
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

    /// Counts one try against each of `keys` before argon2 runs (parallel guesses cannot all
    /// be checked against one count), then checks `secret` against the account `name`'s hash
    /// (a dummy hash when there is no such account, so that both take as long) through the
    /// bound on checks. The try is given back when nothing could be checked. Returns the
    /// account, if any, and whether the secret was its own.
    async fn try_secret(
        &self,
        keys: &[(&str, i64)],
        name: &str,
        secret: &Secret,
        now: i64,
    ) -> LabResult<(Option<User>, bool)> {
        if let Err(retry_after_s) = self
            .store
            .reserve_login_attempt(keys, now, THROTTLE_WINDOW_S)
            .await?
        {
            return Err(LabError::Throttled { retry_after_s });
        }
        let release: Vec<&str> = keys.iter().map(|(key, _)| *key).collect();
        let found = match Username::parse(name) {
            Ok(name) => self.store.user_for_login(&name).await,
            Err(_) => Ok(None),
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                self.store.release_login_attempt(&release).await?;
                return Err(e.into());
            }
        };
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, self.dummy_hash.clone()),
        };
        let Ok(verified) = self.checks.verify(secret.expose(), &hash).await else {
            self.store.release_login_attempt(&release).await?;
            return Err(LabError::Busy { retry_after_s: 1 });
        };
        Ok((user, verified))
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
        let hash = self.checks.hash(new.secret.expose()).await?;
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
        // One's own secret changes only with the current one, by `change_own_secret`.
        if is_self && patch.credential.is_some() {
            return Err(LabError::CurrentSecretRequired);
        }
        self.apply_update(Some(actor.id), id, patch, now).await
    }

    /// Stores a change whose permissions were checked; hashes a new credential, recorded as
    /// set by `by` (`None`: the command line or the demo).
    async fn apply_update(
        &self,
        by: Option<UserId>,
        id: UserId,
        patch: UserPatch,
        now: i64,
    ) -> LabResult<User> {
        let credential = match patch.credential {
            Some((kind, secret)) => {
                secret.validate(kind)?;
                Some((kind, self.checks.hash(secret.expose()).await?))
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
            credential_by: by,
        };
        Ok(self.store.update_user(id, &update, now).await?)
    }

    /// A person changes their own password or PIN (and with it the rest of `patch`, which
    /// must not change their role or disable them): only with the current secret, checked
    /// like a login (counted against the username's throttle, through the bound on checks),
    /// so that an API key or a session left open is not enough to lock the owner out. The
    /// other sessions end; the API keys stay (the owner made the change).
    pub async fn change_own_secret(
        &self,
        actor: &User,
        current: &Secret,
        kind: CredentialKind,
        new: Secret,
        patch: UserPatch,
        now: i64,
    ) -> LabResult<User> {
        if patch.disabled == Some(true) || patch.role.is_some_and(|r| r != actor.role) {
            return Err(LabError::Forbidden);
        }
        new.validate(kind)?;
        if current.is_empty() {
            return Err(LabError::CurrentSecretRequired);
        }
        let user_key = throttle_user_key(actor.username.as_str());
        let keys = [(user_key.as_str(), MAX_FAILURES_PER_USER)];
        match self
            .try_secret(&keys, actor.username.as_str(), current, now)
            .await?
        {
            (None, _) => return Err(LabError::NotFound),
            (Some(_), false) => return Err(LabError::CurrentSecretWrong),
            (Some(_), true) => {}
        }
        self.store
            .clear_login_throttle(&user_key, now - THROTTLE_WINDOW_S)
            .await?;
        let patch = UserPatch {
            credential: Some((kind, new)),
            ..patch
        };
        self.apply_update(Some(actor.id), actor.id, patch, now)
            .await
    }

    /// Sets an account's password or PIN without an actor: the command line and the demo.
    /// Recorded as a reset by nobody; like a manager's reset, it ends the account's sessions
    /// and API keys.
    pub async fn reset_secret_unchecked(
        &self,
        id: UserId,
        kind: CredentialKind,
        secret: Secret,
        patch: UserPatch,
        now: i64,
    ) -> LabResult<User> {
        let patch = UserPatch {
            credential: Some((kind, secret)),
            ..patch
        };
        self.apply_update(None, id, patch, now).await
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

    /// The account `id` if `actor` may manage its keys and record: its owner, or a manager
    /// of its role.
    async fn managed_account(&self, actor: &User, id: UserId) -> LabResult<User> {
        let target = self.store.user(id).await?;
        if actor.id != id {
            require(actor, Role::Manager)?;
            if !actor.role.can_manage(target.role) {
                return Err(LabError::Forbidden);
            }
        }
        Ok(target)
    }

    /// The API keys of an account, for its owner or a manager (never the keys themselves).
    pub async fn api_keys_of(&self, actor: &User, owner: UserId) -> LabResult<Vec<ApiKeyInfo>> {
        let owner = self.managed_account(actor, owner).await?;
        Ok(self.store.list_api_keys(owner.id).await?)
    }

    /// Revokes a key of `owner`: by its owner, or by a manager (a lost phone, a slicer on a
    /// shared PC); the account's record says who did.
    pub async fn revoke_api_key(
        &self,
        actor: &User,
        owner: UserId,
        key_id: i64,
        now: i64,
    ) -> LabResult<()> {
        let owner = self.managed_account(actor, owner).await?;
        Ok(self
            .store
            .delete_api_key(owner.id, key_id, Some(actor.id), now)
            .await?)
    }

    /// What was done to an account (credential changes and resets, keys made and revoked),
    /// for its owner or a manager.
    pub async fn account_events(&self, actor: &User, id: UserId) -> LabResult<Vec<AccountEvent>> {
        let target = self.managed_account(actor, id).await?;
        Ok(self.store.account_events(target.id).await?)
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
        let before = self.store.machine(id).await?;
        let input = MachineInput {
            profile: input.profile.clone().keeping_adopted(&before.profile),
            ..input.clone()
        };
        self.store.update_machine(id, &input, now).await?;
        Ok(self.store.machine(id).await?)
    }

    /// The motion limits a machine's firmware last reported, and when: offered to the
    /// manager for the machine's profile.
    pub async fn reported_limits(&self, id: MachineId) -> LabResult<Option<(ReportedLimits, i64)>> {
        Ok(self.store.reported_limits(id).await?)
    }

    /// Keeps what a firmware reported when a job opened its link (the machine's task).
    pub async fn note_reported_limits(
        &self,
        id: MachineId,
        limits: &ReportedLimits,
        now: i64,
    ) -> LabResult<()> {
        Ok(self.store.set_reported_limits(id, limits, now).await?)
    }

    /// A manager adopts the firmware's reported limits into the machine's profile, so that
    /// estimates use the printer's true figures.
    pub async fn adopt_reported_limits(
        &self,
        actor: &User,
        id: MachineId,
        now: i64,
    ) -> LabResult<Machine> {
        require(actor, Role::Manager)?;
        let (reported, _) = self
            .store
            .reported_limits(id)
            .await?
            .ok_or(LabError::NotFound)?;
        let machine = self.store.machine(id).await?;
        let input = MachineInput {
            name: machine.name,
            kind: machine.kind,
            connection: machine.connection,
            profile: machine.profile.adopting(reported),
            location: machine.location,
            required_training: machine.required_training,
        };
        self.store.update_machine(id, &input, now).await?;
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

/// The throttle's key of a username (bounded: any text may be typed there).
/// The throttle's key of a username as typed, without control characters (PostgreSQL
/// refuses a NUL in text; no username has one).
fn throttle_user_key(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    format!("user:{name}")
}

/// The throttle's key of an address: an IPv4 address, or the /64 network of an IPv6 one
/// (one subscriber holds a whole /64, so counting single IPv6 addresses counts nothing).
fn throttle_address_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("addr:{v4}"),
            None => {
                let s = v6.segments();
                format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(std::net::IpAddr::V4(v4)) => format!("addr:{v4}"),
        Err(_) => format!("addr:{}", ip.chars().take(64).collect::<String>()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_subscriber_is_counted_by_its_64_and_ipv4_by_its_address() {
        assert_eq!(throttle_address_key("10.0.0.9"), "addr:10.0.0.9");
        assert_eq!(
            throttle_address_key("2a01:cb00:1:2:aaaa::1"),
            throttle_address_key("2a01:cb00:1:2:bbbb::2")
        );
        assert_ne!(
            throttle_address_key("2a01:cb00:1:2::1"),
            throttle_address_key("2a01:cb00:1:3::1")
        );
        assert_eq!(throttle_address_key("::ffff:10.0.0.9"), "addr:10.0.0.9");
        assert_eq!(throttle_user_key(&"x".repeat(500)).len(), 5 + 64);
    }
}
