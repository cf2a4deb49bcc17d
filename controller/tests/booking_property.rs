//! Whatever the sequence of bookings and cancellations, no two live bookings of a machine
//! overlap, and a booking is refused exactly when it would overlap: checked against the real
//! database (SQLite file, or PostgreSQL with FABRIQUE_TEST_POSTGRES_URL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_controller::domain::booking::BookingId;
use fabrique_controller::domain::calendar::Refusal;
use fabrique_controller::domain::{
    Connection, CredentialKind, Lang, MachineInput, MachineKind, NewUser, Role, Secret,
};
use fabrique_controller::lab::now;
use fabrique_controller::testing::fresh_database_url;
use fabrique_controller::{Lab, LabError, Store};
use jiff::Timestamp;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Book {
        machine: usize,
        slot: i64,
        length: i64,
    },
    Cancel {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 0..16i64, 1..4i64).prop_map(|(machine, slot, length)| Op::Book { machine, slot, length }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_bookings_and_cancellations_never_overlap(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops));
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new(
        Store::open(&fresh_database_url(dir.path()).await.unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    let new = NewUser::parse(
        "nadia",
        "",
        "",
        Role::Manager,
        Lang::Fr,
        CredentialKind::Pin,
        Secret::new("123456"),
    )
    .unwrap();
    let manager = lab.create_user_unchecked(&new, now()).await.unwrap();
    let mut machines = Vec::new();
    for name in ["Laser", "Brodeuse"] {
        let input = MachineInput::new(
            name,
            MachineKind::Other,
            Connection::Manual,
            Default::default(),
            "",
            "",
        )
        .unwrap();
        machines.push(
            lab.create_machine(&manager, &input, now())
                .await
                .unwrap()
                .id,
        );
    }
    let base = (now() / 86_400 + 1) * 86_400;
    let slot = |i: i64| Timestamp::from_second(base + i * 1800).unwrap();
    // The model: live bookings as (id, machine, start slot, end slot).
    let mut live: Vec<(BookingId, usize, i64, i64)> = Vec::new();
    for op in ops {
        match op {
            Op::Book {
                machine,
                slot: start,
                length,
            } => {
                let end = start + length;
                let overlaps = live
                    .iter()
                    .any(|&(_, m, s, e)| m == machine && s < end && start < e);
                let result = lab
                    .book(
                        &manager,
                        machines[machine],
                        manager.id,
                        slot(start),
                        slot(end),
                        false,
                        "",
                        now(),
                    )
                    .await;
                match result {
                    Ok(booking) => {
                        assert!(!overlaps, "booked over a live booking");
                        live.push((booking.id, machine, start, end));
                    }
                    Err(LabError::Refused(Refusal::SlotTaken | Refusal::OwnBooking { .. })) => {
                        assert!(overlaps, "refused a free slot")
                    }
                    Err(other) => panic!("unexpected refusal {other:?}"),
                }
            }
            Op::Cancel { pick } => {
                if live.is_empty() {
                    continue;
                }
                let (id, ..) = live.remove(pick % live.len());
                lab.cancel_booking(&manager, id, now()).await.unwrap();
            }
        }
        // What the database holds agrees with the model and has no overlap.
        let stored = lab
            .bookings_between(None, slot(-100), slot(100), now())
            .await
            .unwrap();
        let stored: Vec<_> = stored.into_iter().filter(|b| b.is_live()).collect();
        assert_eq!(stored.len(), live.len());
        for a in &stored {
            for b in &stored {
                assert!(
                    a.id == b.id
                        || a.machine != b.machine
                        || a.ends_at <= b.starts_at
                        || b.ends_at <= a.starts_at,
                    "overlap: {a:?} {b:?}"
                );
            }
        }
    }
}
