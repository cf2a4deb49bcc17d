//! Logins in parallel, as an attacker sends them: the throttle counts every guess, and the
//! secret checks running at once are bounded (argon2 takes 19 MiB each).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_controller::domain::{CredentialKind, Lang, NewUser, Role, Secret};
use fabrique_controller::testing::fresh_database_url;
use fabrique_controller::{Lab, LabError, Store};

async fn fresh() -> (Lab, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&fresh_database_url(dir.path()).await.unwrap())
        .await
        .unwrap();
    (Lab::new(store).unwrap(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_guesses_at_a_pin_check_only_five() {
    let (lab, _dir) = fresh().await;
    let josette = NewUser::parse(
        "josette",
        "",
        "",
        Role::Member,
        Lang::Fr,
        CredentialKind::Pin,
        Secret::new("482913"),
    )
    .unwrap();
    lab.create_user_unchecked(&josette, 1).await.unwrap();
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let lab = lab.clone();
            tokio::spawn(async move {
                lab.login(
                    "josette",
                    &Secret::new(format!("{:06}", 100_000 + i)),
                    "10.0.0.9",
                    100,
                )
                .await
            })
        })
        .collect();
    let (mut checked, mut throttled, mut other) = (0, 0, Vec::new());
    for guess in guesses {
        match guess.await.unwrap() {
            Err(LabError::BadCredentials) => checked += 1,
            Err(LabError::Throttled { .. }) => throttled += 1,
            // Busy: the bound on secret checks said "come back"; no guess was checked.
            Err(LabError::Busy { .. }) => throttled += 1,
            res => other.push(format!("{res:?}")),
        }
    }
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(
        checked, 5,
        "guesses checked (the rest throttled: {throttled})"
    );
    // The right PIN is refused too now: the account waits out the window.
    let err = lab
        .login("josette", &Secret::new("482913"), "10.0.0.10", 101)
        .await
        .unwrap_err();
    assert!(matches!(err, LabError::Throttled { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_address_gets_twenty_guesses_whatever_the_names() {
    let (lab, _dir) = fresh().await;
    let guesses: Vec<_> = (0..60)
        .map(|i| {
            let lab = lab.clone();
            tokio::spawn(async move {
                lab.login(
                    &format!("nobody{i}"),
                    &Secret::new("guess"),
                    "10.0.0.11",
                    100,
                )
                .await
            })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        if matches!(guess.await.unwrap(), Err(LabError::BadCredentials)) {
            checked += 1;
        }
    }
    assert_eq!(checked, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_the_bound_on_checks_a_login_is_told_to_come_back_and_not_counted() {
    use fabrique_controller::secrets::SecretChecks;
    let (lab, _dir) = fresh().await;
    let lab = lab.with_secret_checks(SecretChecks::new(1, std::time::Duration::ZERO));
    let logins: Vec<_> = (0..12)
        .map(|i| {
            let lab = lab.clone();
            tokio::spawn(async move {
                let name = format!("visitor{i}");
                let result = lab
                    .login(&name, &Secret::new("guess"), &format!("10.3.0.{i}"), 100)
                    .await;
                (name, result)
            })
        })
        .collect();
    let (mut checked, mut busy) = (0, Vec::new());
    for login in logins {
        match login.await.unwrap() {
            (_, Err(LabError::BadCredentials)) => checked += 1,
            (name, Err(LabError::Busy { retry_after_s })) => {
                assert!(retry_after_s >= 1);
                busy.push(name);
            }
            (_, other) => panic!("{other:?}"),
        }
    }
    assert!(checked >= 1);
    let Some(name) = busy.first() else {
        panic!("one check at a time, without waiting: some must be refused")
    };
    // A refused login was not counted: that name still has its five tries.
    for i in 0..5 {
        let err = lab
            .login(name, &Secret::new("guess"), &format!("10.3.1.{i}"), 101)
            .await
            .unwrap_err();
        assert!(matches!(err, LabError::BadCredentials), "try {i}: {err:?}");
    }
    let err = lab
        .login(name, &Secret::new("guess"), "10.3.2.1", 102)
        .await
        .unwrap_err();
    assert!(matches!(err, LabError::Throttled { .. }), "{err:?}");
}

#[tokio::test]
async fn ended_windows_are_purged_and_the_next_guesses_count_afresh() {
    let (lab, _dir) = fresh().await;
    for i in 0..5 {
        let err = lab
            .login("ghost", &Secret::new("guess"), "10.4.0.1", 100 + i)
            .await
            .unwrap_err();
        assert!(matches!(err, LabError::BadCredentials), "{err:?}");
    }
    // Within the window nothing is purged; after it, the name's and the address's rows go.
    assert_eq!(lab.store().purge_login_throttle(99).await.unwrap(), 0);
    assert_eq!(lab.store().purge_login_throttle(100).await.unwrap(), 2);
    let err = lab
        .login("ghost", &Secret::new("guess"), "10.4.0.1", 1_001)
        .await
        .unwrap_err();
    assert!(matches!(err, LabError::BadCredentials), "{err:?}");
}

/// A username no account can have (a NUL, control characters, 200 letters) is a wrong login
/// like any other, on both databases: PostgreSQL refuses a NUL in text, and the throttle's
/// key once carried the name as typed (schemathesis met it as a 500).
#[tokio::test]
async fn a_username_with_a_nul_or_control_characters_is_only_a_wrong_login() {
    let (lab, _dir) = fresh().await;
    for name in [
        "a\u{0}b",
        "\u{1}\u{7f}josette",
        &"x".repeat(200),
        "\u{a0}Ñ'÷\u{89}",
    ] {
        let r = lab
            .login(name, &Secret::new("whatever"), "10.0.0.9", 100)
            .await;
        assert!(
            matches!(r, Err(LabError::BadCredentials)),
            "{name:?}: {r:?}"
        );
    }
}
