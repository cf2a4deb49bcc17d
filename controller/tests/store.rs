//! The store against a real database: a new SQLite file, or a new PostgreSQL database when
//! FABRIQUE_TEST_POSTGRES_URL is set (CI runs both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_controller::domain::machine::ConnectionKind;
use fabrique_controller::domain::{
    Connection, CredentialKind, Lang, MachineInput, MachineKind, MachineProfile, MachineState,
    NewUser, Role, Secret, UserPatch,
};
use fabrique_controller::testing::{fresh_database_url, on_postgres};
use fabrique_controller::{Backend, Lab, LabError, Store, StoreError};

async fn fresh() -> (Lab, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&fresh_database_url(dir.path()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        store.backend(),
        if on_postgres() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    );
    (Lab::new(store).unwrap(), dir)
}

fn new_user(name: &str, role: Role) -> NewUser {
    NewUser::parse(
        name,
        "",
        "",
        role,
        Lang::Fr,
        CredentialKind::Password,
        Secret::new("long enough secret"),
    )
    .unwrap()
}

fn machine(name: &str, connection: Connection) -> MachineInput {
    let profile =
        MachineProfile::parse(["250", "210", "210"], "300", "120", "", "", "PLA").unwrap();
    MachineInput::new(
        name,
        MachineKind::FdmPrinter,
        connection,
        profile,
        "Atelier",
        "Impression 3D",
    )
    .unwrap()
}

#[tokio::test]
async fn migrations_run_twice_without_harm() {
    let (lab, _dir) = fresh().await;
    lab.store().migrate().await.unwrap();
    assert_eq!(lab.store().count_users().await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_foreign_keys() {
    if on_postgres() {
        // The same check on PostgreSQL: foreign keys are always enforced there.
        let (lab, _dir) = fresh().await;
        let err = lab
            .store()
            .insert_session("h", fabrique_controller::domain::UserId(999), 0, 10)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await.unwrap();
    let store = Store::open(&url).await.unwrap();
    let err = store
        .insert_session("h", fabrique_controller::domain::UserId(999), 0, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Database(_)),
        "a session of no user must be refused: {err:?}"
    );
    assert!(
        dir.path().join("fabrique.db-wal").exists(),
        "WAL file expected beside the database"
    );
}

#[tokio::test]
async fn a_username_is_taken_once_whatever_its_case() {
    let (lab, _dir) = fresh().await;
    lab.create_user_unchecked(&new_user("Amina", Role::Member), 1)
        .await
        .unwrap();
    let err = lab
        .create_user_unchecked(&new_user("amina", Role::Member), 2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LabError::Conflict { what: "username" }),
        "{err:?}"
    );
    assert_eq!(lab.store().count_users().await.unwrap(), 1);
}

#[tokio::test]
async fn login_opens_a_session_that_a_password_change_ends() {
    let (lab, _dir) = fresh().await;
    let user = lab
        .create_user_unchecked(&new_user("amina", Role::Member), 1)
        .await
        .unwrap();
    let session = lab
        .login("AMINA", &Secret::new("long enough secret"), "10.0.0.1", 100)
        .await
        .unwrap();
    assert_eq!(
        lab.user_by_session(&session.token, 101)
            .await
            .unwrap()
            .unwrap()
            .id,
        user.id
    );
    assert!(
        lab.user_by_session(&session.token, session.expires_at)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    // One's own change needs the current secret, whatever else is in the patch.
    let patch = UserPatch {
        credential: Some((CredentialKind::Pin, Secret::new("246810"))),
        ..UserPatch::default()
    };
    let err = lab
        .update_user(&user, user.id, patch, 102)
        .await
        .unwrap_err();
    assert!(matches!(err, LabError::CurrentSecretRequired), "{err:?}");
    let err = lab
        .change_own_secret(
            &user,
            &Secret::new("not the secret"),
            CredentialKind::Pin,
            Secret::new("246810"),
            UserPatch::default(),
            102,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LabError::CurrentSecretWrong), "{err:?}");
    lab.change_own_secret(
        &user,
        &Secret::new("long enough secret"),
        CredentialKind::Pin,
        Secret::new("246810"),
        UserPatch::default(),
        102,
    )
    .await
    .unwrap();
    assert!(
        lab.user_by_session(&session.token, 103)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        lab.login("amina", &Secret::new("246810"), "10.0.0.1", 104)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn five_failures_throttle_the_username_even_with_the_right_password() {
    let (lab, _dir) = fresh().await;
    lab.create_user_unchecked(&new_user("amina", Role::Member), 1)
        .await
        .unwrap();
    for i in 0..5 {
        let err = lab
            .login("amina", &Secret::new("wrong"), "10.0.0.2", 100 + i)
            .await
            .unwrap_err();
        assert!(matches!(err, LabError::BadCredentials));
    }
    let err = lab
        .login("amina", &Secret::new("long enough secret"), "10.0.0.2", 110)
        .await
        .unwrap_err();
    let LabError::Throttled { retry_after_s } = err else {
        panic!("expected throttling, got {err:?}")
    };
    assert!(retry_after_s > 0 && retry_after_s <= 15 * 60);
    // After the window, the right password works again and clears the count.
    assert!(
        lab.login(
            "amina",
            &Secret::new("long enough secret"),
            "10.0.0.2",
            100 + 15 * 60 + 1
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn a_disabled_account_cannot_log_in_or_use_its_keys_and_loses_its_sessions() {
    let (lab, _dir) = fresh().await;
    let manager = lab
        .create_user_unchecked(&new_user("nadia", Role::Manager), 1)
        .await
        .unwrap();
    let member = lab
        .create_user_unchecked(&new_user("josette", Role::Member), 1)
        .await
        .unwrap();
    let session = lab
        .login("josette", &Secret::new("long enough secret"), "ip", 2)
        .await
        .unwrap();
    let key = lab.create_api_key(&member, "Cura", 2).await.unwrap();
    lab.update_user(
        &manager,
        member.id,
        UserPatch {
            disabled: Some(true),
            ..Default::default()
        },
        3,
    )
    .await
    .unwrap();
    assert!(
        lab.user_by_session(&session.token, 4)
            .await
            .unwrap()
            .is_none()
    );
    assert!(lab.user_by_api_key(&key, 4).await.unwrap().is_none());
    let err = lab
        .login("josette", &Secret::new("long enough secret"), "ip", 5)
        .await
        .unwrap_err();
    assert!(matches!(err, LabError::AccountDisabled), "{err:?}");
}

#[tokio::test]
async fn role_rules_hold_in_the_lab() {
    let (lab, _dir) = fresh().await;
    let manager = lab
        .create_user_unchecked(&new_user("nadia", Role::Manager), 1)
        .await
        .unwrap();
    let admin = lab
        .create_user_unchecked(&new_user("alex", Role::Admin), 1)
        .await
        .unwrap();
    let member = lab
        .create_user_unchecked(&new_user("josette", Role::Member), 1)
        .await
        .unwrap();
    assert!(matches!(
        lab.create_user(&member, &new_user("x-member", Role::Member), 2)
            .await,
        Err(LabError::Forbidden)
    ));
    assert!(matches!(
        lab.create_user(&manager, &new_user("x-admin", Role::Admin), 2)
            .await,
        Err(LabError::Forbidden)
    ));
    assert!(
        lab.create_user(&manager, &new_user("x-trainer", Role::Trainer), 2)
            .await
            .is_ok()
    );
    let demote = UserPatch {
        role: Some(Role::Member),
        ..Default::default()
    };
    assert!(matches!(
        lab.update_user(&manager, admin.id, demote.clone(), 3).await,
        Err(LabError::Forbidden)
    ));
    assert!(matches!(
        lab.update_user(&manager, manager.id, demote, 3).await,
        Err(LabError::Forbidden)
    ));
    let disable_self = UserPatch {
        disabled: Some(true),
        ..Default::default()
    };
    assert!(matches!(
        lab.update_user(&admin, admin.id, disable_self, 3).await,
        Err(LabError::Forbidden)
    ));
    assert!(matches!(
        lab.user(&member, manager.id).await,
        Err(LabError::Forbidden)
    ));
    assert_eq!(lab.user(&member, member.id).await.unwrap().id, member.id);
}

#[tokio::test]
async fn api_keys_are_found_by_hash_and_revocable() {
    let (lab, _dir) = fresh().await;
    let user = lab
        .create_user_unchecked(&new_user("amina", Role::Member), 1)
        .await
        .unwrap();
    let key = lab.create_api_key(&user, "PrusaSlicer", 2).await.unwrap();
    assert!(key.starts_with("fab_"));
    assert_eq!(
        lab.user_by_api_key(&key, 3).await.unwrap().unwrap().id,
        user.id
    );
    let keys = lab.list_api_keys(&user).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].last_used_at, Some(3));
    // A slicer's burst of uploads writes the last use down once a minute, not each time.
    lab.user_by_api_key(&key, 40).await.unwrap().unwrap();
    assert_eq!(
        lab.list_api_keys(&user).await.unwrap()[0].last_used_at,
        Some(3)
    );
    lab.user_by_api_key(&key, 63).await.unwrap().unwrap();
    assert_eq!(
        lab.list_api_keys(&user).await.unwrap()[0].last_used_at,
        Some(63)
    );
    assert!(key.starts_with(&keys[0].prefix));
    lab.revoke_api_key(&user, user.id, keys[0].id, 64)
        .await
        .unwrap();
    assert!(lab.user_by_api_key(&key, 4).await.unwrap().is_none());
}

#[tokio::test]
async fn a_reset_by_a_manager_revokes_the_keys_and_managers_revoke_keys_on_the_record() {
    use fabrique_controller::store::AccountEventKind;
    let (lab, _dir) = fresh().await;
    let manager = lab
        .create_user_unchecked(&new_user("nadia", Role::Manager), 1)
        .await
        .unwrap();
    let trainer = lab
        .create_user_unchecked(&new_user("samir", Role::Trainer), 1)
        .await
        .unwrap();
    let member = lab
        .create_user_unchecked(&new_user("josette", Role::Member), 1)
        .await
        .unwrap();
    let other = lab
        .create_user_unchecked(&new_user("paul", Role::Member), 1)
        .await
        .unwrap();
    // Her own change keeps her slicer's key.
    let cura = lab.create_api_key(&member, "Cura", 2).await.unwrap();
    lab.change_own_secret(
        &member,
        &Secret::new("long enough secret"),
        CredentialKind::Password,
        Secret::new("another long secret"),
        UserPatch::default(),
        3,
    )
    .await
    .unwrap();
    assert!(lab.user_by_api_key(&cura, 4).await.unwrap().is_some());
    // A manager's reset (she forgot it, or someone else learnt it) ends every key.
    let prusa = lab.create_api_key(&member, "PrusaSlicer", 5).await.unwrap();
    lab.update_user(
        &manager,
        member.id,
        UserPatch {
            credential: Some((CredentialKind::Pin, Secret::new("482913"))),
            ..UserPatch::default()
        },
        6,
    )
    .await
    .unwrap();
    assert!(lab.user_by_api_key(&cura, 7).await.unwrap().is_none());
    assert!(lab.user_by_api_key(&prusa, 7).await.unwrap().is_none());

    // Managers see a member's keys and revoke one; nobody else does.
    let orca = lab.create_api_key(&member, "OrcaSlicer", 8).await.unwrap();
    let keys = lab.api_keys_of(&manager, member.id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(orca.starts_with(&keys[0].prefix));
    for intruder in [&trainer, &other] {
        assert!(matches!(
            lab.api_keys_of(intruder, member.id).await.unwrap_err(),
            LabError::Forbidden
        ));
        assert!(matches!(
            lab.revoke_api_key(intruder, member.id, keys[0].id, 9)
                .await
                .unwrap_err(),
            LabError::Forbidden
        ));
    }
    // A key id of someone else is not found under this member.
    let paul_key = lab.create_api_key(&other, "Cura", 8).await.unwrap();
    let paul_id = lab.list_api_keys(&other).await.unwrap()[0].id;
    assert!(matches!(
        lab.revoke_api_key(&manager, member.id, paul_id, 9)
            .await
            .unwrap_err(),
        LabError::NotFound
    ));
    assert!(lab.user_by_api_key(&paul_key, 9).await.unwrap().is_some());
    lab.revoke_api_key(&manager, member.id, keys[0].id, 10)
        .await
        .unwrap();
    assert!(lab.user_by_api_key(&orca, 11).await.unwrap().is_none());

    // The record says who did what, newest first.
    let events = lab.account_events(&manager, member.id).await.unwrap();
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.actor_name.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        seen,
        [
            (AccountEventKind::ApiKeyRevoked, "nadia"),
            (AccountEventKind::ApiKeyCreated, "josette"),
            (AccountEventKind::SecretReset, "nadia"),
            (AccountEventKind::ApiKeyCreated, "josette"),
            (AccountEventKind::SecretChanged, "josette"),
            (AccountEventKind::ApiKeyCreated, "josette"),
        ]
    );
    assert_eq!(events[2].detail, "api_keys_revoked=2");
    assert!(events[0].detail.ends_with("OrcaSlicer"));
    // She reads her own record; another member does not.
    assert_eq!(
        lab.account_events(&member, member.id).await.unwrap().len(),
        6
    );
    assert!(lab.account_events(&other, member.id).await.is_err());
}

#[tokio::test]
async fn machines_round_trip_every_connection_kind() {
    let (lab, _dir) = fresh().await;
    let manager = lab
        .create_user_unchecked(&new_user("nadia", Role::Manager), 1)
        .await
        .unwrap();
    let connections = [
        Connection::parse(
            ConnectionKind::SerialMarlin,
            "/dev/ttyACM0",
            "250000",
            "",
            "",
            None,
        )
        .unwrap(),
        Connection::parse(ConnectionKind::SerialGrbl, "/dev/ttyUSB0", "", "", "", None).unwrap(),
        Connection::parse(
            ConnectionKind::OctoPrint,
            "",
            "",
            "http://octopi.local",
            "KEY123",
            None,
        )
        .unwrap(),
        Connection::parse(
            ConnectionKind::Moonraker,
            "",
            "",
            "http://ender.local",
            "",
            None,
        )
        .unwrap(),
        Connection::Manual,
    ];
    for (i, connection) in connections.into_iter().enumerate() {
        let input = machine(&format!("Machine {i}"), connection);
        let created = lab.create_machine(&manager, &input, 1).await.unwrap();
        assert_eq!(created.connection, input.connection);
        assert_eq!(created.profile, input.profile);
        let expected = if input.connection == Connection::Manual {
            MachineState::Idle
        } else {
            MachineState::Offline
        };
        assert_eq!(created.state, expected);
    }
    assert_eq!(lab.machines().await.unwrap().len(), 5);
    let err = lab
        .create_machine(&manager, &machine("Machine 0", Connection::Manual), 2)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        LabError::Conflict {
            what: "machine_name"
        }
    ));
    let m = lab
        .machines()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.name == "Machine 4")
        .unwrap();
    let m = lab
        .set_machine_state(&manager, m.id, MachineState::Maintenance, "courroie", 3)
        .await
        .unwrap();
    assert_eq!(
        (m.state, m.state_reason.as_str()),
        (MachineState::Maintenance, "courroie")
    );
}
