//! Memory of parallel logins (alone in its binary: it reads this process's peak memory).
//! Each argon2 check takes 19 MiB; 60 checks at once took a server from 95 MB to 1.27 GB,
//! and it stayed there. Checks run at once are bounded, and what they took is given back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_controller::domain::Secret;
use fabrique_controller::testing::fresh_database_url;
use fabrique_controller::{Lab, Store};

/// A line of /proc/self/status in MiB (`VmRSS`, now; `VmHWM`, the peak).
fn status_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_parallel_logins_stay_within_a_bound_and_give_memory_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&fresh_database_url(dir.path()).await.unwrap())
        .await
        .unwrap();
    let lab = Lab::new(store).unwrap();
    // One login first, so that the pool, the runtime and one argon2 buffer exist.
    let _ = lab.login("warm", &Secret::new("up"), "10.1.0.0", 1).await;
    let before = status_mib("VmRSS:");
    let logins: Vec<_> = (0..60)
        .map(|i| {
            let lab = lab.clone();
            // Each from its own address and name, so the throttle lets every one through.
            tokio::spawn(async move {
                lab.login(
                    &format!("anon{i}"),
                    &Secret::new("guess"),
                    &format!("10.2.0.{i}"),
                    10,
                )
                .await
            })
        })
        .collect();
    for login in logins {
        let _ = login.await.unwrap();
    }
    let peak = status_mib("VmHWM:");
    let after = status_mib("VmRSS:");
    println!("RSS before {before} MiB, peak {peak} MiB, after {after} MiB");
    // One 19 MiB work area per check allowed at once, kept for the next logins, and
    // nothing more, at the peak or after.
    let bound = 19 * fabrique_controller::secrets::MAX_CONCURRENT_CHECKS as u64 + 25;
    assert!(peak < before + bound, "peak {peak} MiB from {before} MiB");
    assert!(
        after < before + bound,
        "after {after} MiB from {before} MiB"
    );
}
