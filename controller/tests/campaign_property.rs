//! Whatever the sequence of requests, decisions, pledges, batches, receptions, quality
//! checks, donations, lab prints, assemblies and deliveries, in two labs sharing one
//! database: delivered <= assembled <= accepted <= received, no count or stock is negative,
//! every balance is the sum of its records, and each action is refused exactly when a model
//! of the campaign says it must be. Checked against the real database (SQLite file, or
//! PostgreSQL with FABRIQUE_TEST_POSTGRES_URL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_controller::domain::campaign::{
    BatchId, CampaignInput, CampaignRefusal, CampaignState, Counts, DeliveryInput, ItemName,
    MaterialId, MaterialInput, PledgeInput, RequestId, RequestInput, RequestStatus,
};
use fabrique_controller::domain::job::JobState;
use fabrique_controller::domain::{CredentialKind, Lang, NewUser, Role, Secret, User};
use fabrique_controller::lab::now;
use fabrique_controller::testing::fresh_database_url;
use fabrique_controller::{Lab, LabError, Store};
use proptest::prelude::*;

#[derive(Debug, Clone)]
#[rustfmt::skip]
enum Op {
    /// A request, accepted at once when `accept`.
    Request { quantity: i64, accept: bool },
    /// `any`: pick among all; otherwise among those the action applies to, if there are.
    Accept { pick: usize, any: bool },
    Refuse { pick: usize },
    Split { pick: usize, first: i64 },
    Pledge { quantity: i64 },
    Declare { quantity: i64 },
    /// Counts the declared quantity give or take `delta`.
    Receive { pick: usize, any: bool, delta: i64, lab: usize },
    /// Accepts what was received less `rejected`, or one more than received when `over`.
    Check { pick: usize, any: bool, rejected: i64, over: bool },
    Donate { material: usize, quantity: i64, lab: usize },
    LabPrint { lab: usize },
    Collect { lab: usize },
    Assemble { quantity: i64, lab: usize },
    Deliver { pick: usize, any: bool, quantity: i64, lab: usize },
    /// Pauses an open campaign, or opens a paused one again.
    Toggle,
}

/// The first lab more often than the second, so that chains of actions meet in one lab.
fn lab() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 1 => Just(1usize)]
}

#[rustfmt::skip]
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..30i64, prop::bool::weighted(0.6)).prop_map(|(quantity, accept)| Op::Request { quantity, accept }),
        3 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(pick, any)| Op::Accept { pick, any }),
        1 => any::<usize>().prop_map(|pick| Op::Refuse { pick }),
        1 => (any::<usize>(), 0..30i64).prop_map(|(pick, first)| Op::Split { pick, first }),
        1 => (1..30i64).prop_map(|quantity| Op::Pledge { quantity }),
        3 => (1..30i64).prop_map(|quantity| Op::Declare { quantity }),
        3 => (any::<usize>(), prop::bool::weighted(0.2), -3..3i64, 0..2usize)
            .prop_map(|(pick, any, delta, lab)| Op::Receive { pick, any, delta, lab }),
        3 => (any::<usize>(), prop::bool::weighted(0.2), 0..4i64, prop::bool::weighted(0.1))
            .prop_map(|(pick, any, rejected, over)| Op::Check { pick, any, rejected, over }),
        3 => (0..2usize, 1..80i64, lab()).prop_map(|(material, quantity, lab)| Op::Donate { material, quantity, lab }),
        1 => lab().prop_map(|lab| Op::LabPrint { lab }),
        1 => lab().prop_map(|lab| Op::Collect { lab }),
        4 => (1..10i64, lab()).prop_map(|(quantity, lab)| Op::Assemble { quantity, lab }),
        6 => (any::<usize>(), prop::bool::weighted(0.2), 1..10i64, lab())
            .prop_map(|(pick, any, quantity, lab)| Op::Deliver { pick, any, quantity, lab }),
        1 => Just(Op::Toggle),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_campaign_operations_keep_every_invariant(
        initial in proptest::collection::vec(0..60i64, 4),
        ops in proptest::collection::vec(op(), 1..100),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(initial, ops));
    }
}

/// Elastic takes 2 per item, PET sheets 1; each lab print makes 2 parts.
const PER_ITEM: [i64; 2] = [1, 2];
const PARTS_PER_PRINT: i64 = 2;

#[derive(Debug)]
struct MRequest {
    id: RequestId,
    quantity: i64,
    status: RequestStatus,
    delivered: i64,
}

#[derive(Debug)]
struct MBatch {
    id: BatchId,
    quantity: i64,
    received: Option<i64>,
    checked: bool,
    lab: usize,
}

#[derive(Debug, Default)]
struct Model {
    requests: Vec<MRequest>,
    batches: Vec<MBatch>,
    pledged: i64,
    produced: i64,
    received: i64,
    accepted: i64,
    assembled: i64,
    delivered: i64,
    parts_left: [i64; 2],
    items_left: [i64; 2],
    stock: [[i64; 2]; 2],
    prints_done: [i64; 2],
    paused: bool,
}

fn code(result: Result<impl std::fmt::Debug, LabError>) -> Result<(), &'static str> {
    match result {
        Ok(_) => Ok(()),
        Err(LabError::Campaign(refusal)) => Err(refusal.code()),
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

fn user(name: &str, role: Role) -> NewUser {
    NewUser::parse(
        name,
        "",
        "",
        role,
        Lang::Fr,
        CredentialKind::Pin,
        Secret::new("123456"),
    )
    .unwrap()
}

async fn run(initial: Vec<i64>, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&fresh_database_url(dir.path()).await.unwrap())
        .await
        .unwrap();
    let main = Lab::new(store).unwrap();
    let north = main.clone().at_lab("Fablab Nord", now()).await.unwrap();
    let labs = [&main, &north];
    let manager = main
        .create_user_unchecked(&user("nadia", Role::Manager), now())
        .await
        .unwrap();
    let maker = main
        .create_user_unchecked(&user("amina", Role::Member), now())
        .await
        .unwrap();
    let input = CampaignInput::parse(
        "Visières",
        ItemName::parse("visière", "", "feminine").unwrap(),
        "",
        "PETG",
        "500",
        "Accueil",
    )
    .unwrap();
    let campaign = main
        .create_campaign(&manager, &input, now())
        .await
        .unwrap()
        .id;
    let mut materials: Vec<MaterialId> = Vec::new();
    for (name, per_item) in [("feuille PET", PER_ITEM[0]), ("élastique", PER_ITEM[1])] {
        let m = MaterialInput::parse(name, "pièce", &per_item.to_string()).unwrap();
        main.add_material(&manager, campaign, &m, now())
            .await
            .unwrap();
    }
    for m in main.materials(&manager, campaign).await.unwrap() {
        materials.push(m.id);
    }
    main.set_campaign_state(&manager, campaign, CampaignState::Open, now())
        .await
        .unwrap();
    let analysis = fabrique_machines::files::FileSummary::Gcode(Box::new(
        fabrique_machines::files::gcode::analyze(&b"G28\nG1 X10\n"[..], None).unwrap(),
    ));
    let file = main
        .add_campaign_file(
            &manager,
            campaign,
            "bandeau.gcode",
            "model-bandeau.gcode",
            &"0".repeat(64),
            b"G28\nG1 X10\n",
            &analysis,
            now(),
        )
        .await
        .unwrap();
    main.validate_campaign_file(
        &manager,
        campaign,
        file.id,
        "testé par l'EHPAD",
        PARTS_PER_PRINT,
        now(),
    )
    .await
    .unwrap();
    let jobs_dir = dir.path().join("jobs");

    let mut m = Model::default();
    // Some material already given to each lab (a donation of nothing is not a donation).
    for (i, quantity) in initial.into_iter().enumerate() {
        let (lab, material) = (i / 2, i % 2);
        if quantity > 0 {
            labs[lab]
                .record_donation(
                    &manager,
                    campaign,
                    materials[material],
                    "Mairie",
                    quantity,
                    now(),
                )
                .await
                .unwrap();
            m.stock[lab][material] += quantity;
        }
    }
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Request { quantity, accept } => {
                let input = RequestInput::parse(
                    "EHPAD",
                    "care_home",
                    &quantity.to_string(),
                    &today.tomorrow().unwrap().to_string(),
                    "accueil",
                    "Mme Martin",
                    "0478000000",
                    "",
                    today,
                )
                .unwrap();
                let got = main
                    .submit_request(campaign, &input, &format!("10.0.0.{step}"), now())
                    .await;
                if m.paused {
                    assert_eq!(code(got), Err("not_open"));
                    continue;
                }
                got.unwrap();
                let id = latest_request(&main, &manager, campaign, &m).await;
                if accept {
                    main.accept_request(&manager, campaign, id, now())
                        .await
                        .unwrap();
                }
                m.requests.push(MRequest {
                    id,
                    quantity,
                    status: if accept {
                        RequestStatus::Accepted
                    } else {
                        RequestStatus::New
                    },
                    delivered: 0,
                });
            }
            Op::Accept { pick, any } => {
                let Some(r) = pick_where(&mut m.requests, pick, any, |r| {
                    r.status == RequestStatus::New
                }) else {
                    continue;
                };
                let ok = r.status == RequestStatus::New;
                let got = code(main.accept_request(&manager, campaign, r.id, now()).await);
                assert_eq!(got.is_ok(), ok, "accept {r:?}: {got:?}");
                if ok {
                    r.status = RequestStatus::Accepted;
                } else {
                    assert_eq!(got, Err("request_decided"));
                }
            }
            Op::Refuse { pick } => {
                let Some(r) = pick_mut(&mut m.requests, pick) else {
                    continue;
                };
                let ok = matches!(r.status, RequestStatus::New | RequestStatus::Accepted)
                    && r.delivered == 0;
                let got = code(
                    main.refuse_request(&manager, campaign, r.id, "hors du quartier", now())
                        .await,
                );
                assert_eq!(got.is_ok(), ok, "refuse {r:?}: {got:?}");
                if ok {
                    r.status = RequestStatus::Refused;
                }
            }
            Op::Split { pick, first } => {
                let Some(r) = pick_mut(&mut m.requests, pick) else {
                    continue;
                };
                let open = matches!(r.status, RequestStatus::New | RequestStatus::Accepted)
                    && r.delivered == 0;
                let ok = open && first >= 1 && first < r.quantity;
                let got = main
                    .split_request(&manager, campaign, r.id, first, now())
                    .await;
                match got {
                    Ok((a, b)) => {
                        assert!(ok, "split {r:?} by {first}");
                        let (quantity, status) = (r.quantity, r.status);
                        r.status = RequestStatus::Split;
                        for (id, q) in [(a, first), (b, quantity - first)] {
                            m.requests.push(MRequest {
                                id,
                                quantity: q,
                                status,
                                delivered: 0,
                            });
                        }
                    }
                    Err(LabError::Campaign(refusal)) => {
                        assert!(!ok, "split refused: {refusal:?}");
                        let want = if open {
                            "split_quantity"
                        } else {
                            "request_decided"
                        };
                        assert_eq!(refusal.code(), want);
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
            Op::Pledge { quantity } => {
                let input =
                    PledgeInput::parse(&quantity.to_string(), &today.to_string(), "home").unwrap();
                let got = code(main.pledge(&maker, campaign, &input, now()).await);
                if m.paused {
                    assert_eq!(got, Err("not_open"));
                    continue;
                }
                got.unwrap();
                m.pledged += quantity;
            }
            Op::Declare { quantity } => {
                let batch = main
                    .declare_batch(&maker, campaign, None, quantity, now())
                    .await
                    .unwrap();
                main.drop_batch(&maker, campaign, batch.id, "Accueil", now())
                    .await
                    .unwrap();
                m.produced += quantity;
                m.batches.push(MBatch {
                    id: batch.id,
                    quantity,
                    received: None,
                    checked: false,
                    lab: 0,
                });
            }
            Op::Receive {
                pick,
                any,
                delta,
                lab,
            } => {
                let Some(b) = pick_where(&mut m.batches, pick, any, |b| b.received.is_none())
                else {
                    continue;
                };
                let quantity = (b.quantity + delta).max(0);
                let ok = b.received.is_none();
                let got = code(
                    labs[lab]
                        .receive_batch(&manager, campaign, b.id, quantity, now())
                        .await,
                );
                assert_eq!(got.is_ok(), ok, "receive {b:?}: {got:?}");
                if ok {
                    b.received = Some(quantity);
                    b.lab = lab;
                    m.received += quantity;
                } else {
                    assert_eq!(got, Err("already_received"));
                }
            }
            Op::Check {
                pick,
                any,
                rejected,
                over,
            } => {
                let Some(b) = pick_where(&mut m.batches, pick, any, |b| {
                    b.received.is_some() && !b.checked
                }) else {
                    continue;
                };
                let received = b.received.unwrap_or(0);
                let accepted = if over {
                    received + 1
                } else {
                    (received - rejected).max(0)
                };
                let got = code(
                    main.check_batch(&manager, campaign, b.id, accepted, "bavures", now())
                        .await,
                );
                let want = match b.received {
                    None => Err("not_received"),
                    Some(_) if b.checked => Err("already_checked"),
                    Some(r) if accepted > r => Err("accepted_more_than_received"),
                    Some(_) => Ok(()),
                };
                assert_eq!(got, want, "check {b:?} with {accepted}");
                if want.is_ok() {
                    b.checked = true;
                    m.accepted += accepted;
                    m.parts_left[b.lab] += accepted;
                }
            }
            Op::Donate {
                material,
                quantity,
                lab,
            } => {
                labs[lab]
                    .record_donation(
                        &manager,
                        campaign,
                        materials[material],
                        "Pharmacie",
                        quantity,
                        now(),
                    )
                    .await
                    .unwrap();
                m.stock[lab][material] += quantity;
            }
            Op::LabPrint { lab } => {
                let got = labs[lab]
                    .queue_campaign_prints(&manager, campaign, file.id, 1, &jobs_dir, now())
                    .await;
                if m.paused {
                    assert_eq!(code(got), Err("not_open"));
                    continue;
                }
                let jobs = got.unwrap();
                let job = jobs[0];
                let store = main.store();
                assert_eq!(store.job(job).await.unwrap().state, JobState::Queued);
                store
                    .change_job_state(job, JobState::Queued, JobState::Running, None, "", now())
                    .await
                    .unwrap();
                store
                    .change_job_state(job, JobState::Running, JobState::Done, None, "", now())
                    .await
                    .unwrap();
                m.prints_done[lab] += PARTS_PER_PRINT;
                m.produced += PARTS_PER_PRINT;
            }
            Op::Collect { lab } => {
                let got = labs[lab]
                    .collect_lab_prints(&manager, campaign, now())
                    .await;
                match got {
                    Ok(id) => {
                        assert!(m.prints_done[lab] > 0);
                        let batch = main.batch(&manager, campaign, id).await.unwrap();
                        assert_eq!(batch.quantity, m.prints_done[lab]);
                        m.prints_done[lab] = 0;
                        m.batches.push(MBatch {
                            id,
                            quantity: batch.quantity,
                            received: None,
                            checked: false,
                            lab,
                        });
                    }
                    Err(LabError::Campaign(CampaignRefusal::NoPrintsToCollect)) => {
                        assert_eq!(m.prints_done[lab], 0)
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
            Op::Assemble { quantity, lab } => {
                let got = code(
                    labs[lab]
                        .assemble(&manager, campaign, quantity, now())
                        .await,
                );
                let want = if m.parts_left[lab] < quantity {
                    Err("not_enough_parts")
                } else if (0..2).any(|i| m.stock[lab][i] < PER_ITEM[i] * quantity) {
                    Err("not_enough_stock")
                } else {
                    Ok(())
                };
                assert_eq!(got, want, "assemble {quantity} in lab {lab}: {m:?}");
                if want.is_ok() {
                    m.parts_left[lab] -= quantity;
                    for (stock, per_item) in m.stock[lab].iter_mut().zip(PER_ITEM) {
                        *stock -= per_item * quantity;
                    }
                    m.items_left[lab] += quantity;
                    m.assembled += quantity;
                }
            }
            Op::Deliver {
                pick,
                any,
                quantity,
                lab,
            } => {
                let Some(r) = pick_where(&mut m.requests, pick, any, |r| {
                    r.status == RequestStatus::Accepted && r.delivered < r.quantity
                }) else {
                    continue;
                };
                let input =
                    DeliveryInput::parse(r.id, &quantity.to_string(), &today.to_string(), "Karim")
                        .unwrap();
                let got = code(labs[lab].deliver(&manager, campaign, &input, now()).await);
                let want = if r.status != RequestStatus::Accepted {
                    Err("request_not_accepted")
                } else if quantity > r.quantity - r.delivered {
                    Err("more_than_asked")
                } else if m.items_left[lab] < quantity {
                    Err("not_enough_items")
                } else {
                    Ok(())
                };
                assert_eq!(got, want, "deliver {quantity} to {r:?} from lab {lab}");
                if want.is_ok() {
                    r.delivered += quantity;
                    m.items_left[lab] -= quantity;
                    m.delivered += quantity;
                }
            }
            Op::Toggle => {
                let to = if m.paused {
                    CampaignState::Open
                } else {
                    CampaignState::Paused
                };
                main.set_campaign_state(&manager, campaign, to, now())
                    .await
                    .unwrap();
                m.paused = !m.paused;
            }
        }
        check(&main, &manager, campaign, &m, labs).await;
    }
}

/// Among the elements `applies` to (unless `any`, or none does), the one `pick` points at.
fn pick_where<T>(
    list: &mut [T],
    pick: usize,
    any: bool,
    applies: impl Fn(&T) -> bool,
) -> Option<&mut T> {
    let candidates: Vec<usize> = (0..list.len()).filter(|&i| applies(&list[i])).collect();
    if any || candidates.is_empty() {
        return pick_mut(list, pick);
    }
    let i = candidates[pick % candidates.len()];
    list.get_mut(i)
}

fn pick_mut<T>(list: &mut [T], pick: usize) -> Option<&mut T> {
    if list.is_empty() {
        None
    } else {
        let n = list.len();
        list.get_mut(pick % n)
    }
}

/// The id of the request just sent: the one the model does not know yet.
async fn latest_request(
    lab: &Lab,
    manager: &User,
    campaign: fabrique_controller::domain::campaign::CampaignId,
    m: &Model,
) -> RequestId {
    let all = lab.requests(manager, campaign).await.unwrap();
    let fresh: Vec<_> = all
        .iter()
        .filter(|r| m.requests.iter().all(|k| k.id != r.id))
        .collect();
    assert_eq!(fresh.len(), 1);
    fresh[0].id
}

async fn check(
    lab: &Lab,
    manager: &User,
    campaign: fabrique_controller::domain::campaign::CampaignId,
    m: &Model,
    labs: [&Lab; 2],
) {
    let store = lab.store();
    let (counts, per_lab) = lab.campaign_counts(None, campaign).await.unwrap();
    counts.check().unwrap();
    let requested: i64 = m
        .requests
        .iter()
        .filter(|r| matches!(r.status, RequestStatus::New | RequestStatus::Accepted))
        .map(|r| r.quantity)
        .sum();
    assert_eq!(
        (
            counts.requested,
            counts.pledged,
            counts.produced,
            counts.received,
            counts.accepted,
            counts.assembled,
            counts.delivered,
        ),
        (
            requested,
            m.pledged,
            m.produced,
            m.received,
            m.accepted,
            m.assembled,
            m.delivered
        ),
        "counts against the model"
    );
    // The labs' counts add up to the campaign's.
    let mut sum = Counts::default();
    for l in &per_lab {
        l.counts.check().unwrap();
        sum.received += l.counts.received;
        sum.accepted += l.counts.accepted;
        sum.assembled += l.counts.assembled;
        sum.delivered += l.counts.delivered;
    }
    assert_eq!(
        (sum.received, sum.accepted, sum.assembled, sum.delivered),
        (
            counts.received,
            counts.accepted,
            counts.assembled,
            counts.delivered
        )
    );
    // Each lab's stock, parts and items are what the model says, never negative.
    for (i, l) in labs.iter().enumerate() {
        let materials = l.materials(manager, campaign).await.unwrap();
        for (j, material) in materials.iter().enumerate() {
            assert!(material.stock >= 0);
            assert_eq!(
                material.stock, m.stock[i][j],
                "stock of {} in lab {i}",
                material.name
            );
        }
        assert_eq!(
            store.parts_available(campaign, l.lab_id()).await.unwrap(),
            m.parts_left[i]
        );
        assert_eq!(
            store.items_available(campaign, l.lab_id()).await.unwrap(),
            m.items_left[i]
        );
    }
    // Every balance is the sum of its records.
    for (_, _, donated, consumed, stock) in store.stock_ledger(campaign).await.unwrap() {
        assert_eq!(stock, donated - consumed);
        assert!(stock >= 0);
    }
    for (accepted, left, used) in store.batch_ledger(campaign).await.unwrap() {
        assert!(
            left >= 0 && left == accepted - used,
            "batch: {accepted} {left} {used}"
        );
    }
    for (quantity, left, delivered) in store.assembly_ledger(campaign).await.unwrap() {
        assert!(
            left >= 0 && left == quantity - delivered,
            "assembly: {quantity} {left} {delivered}"
        );
    }
    for r in lab.requests(manager, campaign).await.unwrap() {
        assert!(r.delivered <= r.quantity, "{r:?}");
        let model = m.requests.iter().find(|k| k.id == r.id).unwrap();
        assert_eq!((r.status, r.delivered), (model.status, model.delivered));
    }
    // The trace of every delivery adds up to it.
    let trace = lab.trace(manager, campaign, None).await.unwrap();
    for d in lab.deliveries(manager, campaign).await.unwrap() {
        let mut from_assemblies: Vec<(i64, i64)> = trace
            .iter()
            .filter(|t| t.delivery == d.id)
            .map(|t| (t.assembly.0, t.delivered_from_assembly))
            .collect();
        from_assemblies.dedup();
        assert_eq!(from_assemblies.iter().map(|x| x.1).sum::<i64>(), d.quantity);
    }
}
