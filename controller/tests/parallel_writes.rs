//! Writes from several tasks at once all land: on SQLite a transaction that read before it
//! wrote used to fail at once with "database is locked" when another connection had written
//! in between (a member's PATCH answered 500 under schemathesis). Transactions that write
//! now take the write lock first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_controller::domain::{CredentialKind, Lang, NewUser, Role, Secret, UserPatch};
use fabrique_controller::lab::now;
use fabrique_controller::testing::fresh_database_url;
use fabrique_controller::{Lab, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_changed_from_several_tasks_at_once_all_change() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await.unwrap();
    let lab = Lab::new(Store::open(&url).await.unwrap()).unwrap();
    let mut users = Vec::new();
    for name in ["admin", "amina", "bilal", "chloe", "dylan"] {
        let role = if name == "admin" {
            Role::Admin
        } else {
            Role::Member
        };
        let new = NewUser::parse(
            name,
            "",
            "",
            role,
            Lang::Fr,
            CredentialKind::Password,
            Secret::new("a long password"),
        )
        .unwrap();
        users.push(lab.create_user_unchecked(&new, now()).await.unwrap());
    }
    let admin = users.remove(0);
    let mut tasks = Vec::new();
    for user in users {
        let (lab, admin) = (lab.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..60 {
                let patch = UserPatch {
                    display_name: Some(format!("{} {i}", user.username.as_str())),
                    disabled: Some(false),
                    role: Some(Role::Member),
                    ..UserPatch::default()
                };
                lab.update_user(&admin, user.id, patch, now())
                    .await
                    .map_err(|e| format!("{}: {e}", user.username.as_str()))?;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}
