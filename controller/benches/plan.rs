//! Planning speed: 1,000 queued jobs on 50 machines around 2,000 bookings over a week.
//! Prints figures; asserts nothing (`cargo bench -p fabrique-controller --bench plan`).

use fabrique_controller::domain::MachineKind;
use fabrique_controller::scheduler::{Busy, PlanJob, PlanMachine, Policy, plan};
use jiff::Timestamp;
use std::time::Instant;

/// A small deterministic generator, so runs compare.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        i64::try_from((self.0 >> 33) % below).unwrap_or(0)
    }
}

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn main() {
    const H: i64 = 3600;
    let kinds = [
        MachineKind::FdmPrinter,
        MachineKind::FdmPrinter,
        MachineKind::LaserCutter,
        MachineKind::Embroidery,
        MachineKind::CncMill,
    ];
    let mut rng = Lcg(2020);
    let machines: Vec<PlanMachine> = (0..50)
        .map(|i| PlanMachine {
            id: i + 1,
            kind: kinds[(i % 5) as usize],
            free_from: t(rng.next(4) * H),
        })
        .collect();
    let busy: Vec<Busy> = (0..2000)
        .map(|_| {
            let start = rng.next(7 * 24) * H;
            Busy {
                machine: rng.next(50) + 1,
                start: t(start),
                end: t(start + (1 + rng.next(3)) * H),
            }
        })
        .collect();
    let jobs: Vec<PlanJob> = (0..1000)
        .map(|i| PlanJob {
            id: i + 1,
            owner: rng.next(120),
            // The machines of one kind, as the fit rule lists them for the planner.
            machines: {
                let kind = rng.next(5);
                (0..50).filter(|m| m % 5 == kind).map(|m| m + 1).collect()
            },
            attended: false,
            estimate_s: 600 + rng.next(3 * 3600),
            priority: 0,
            campaign: rng.next(10) == 0,
            submitted_at: t(i),
        })
        .collect();
    let hours: Vec<(Timestamp, Timestamp)> = (0..8)
        .map(|d| (t(d * 24 * H + 9 * H), t(d * 24 * H + 19 * H)))
        .collect();
    let policy = Policy {
        printers_unattended: true,
        horizon_s: 14 * 24 * H,
    };
    let mut best = f64::MAX;
    let mut total = 0.0;
    let runs = 10;
    let mut placed = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let p = plan(&jobs, &machines, &busy, &hours, &policy, t(0));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        placed = p.placements.len();
        best = best.min(ms);
        total += ms;
    }
    println!("plan: 1000 jobs, 50 machines, 2000 bookings -> {placed} placed");
    println!(
        "plan: best {best:.1} ms, mean {:.1} ms over {runs} runs (target < 100 ms)",
        total / f64::from(runs)
    );
}
