//! The planner: a pure function from (queued jobs, machines, bookings, opening hours,
//! policy, now) to a plan. The runtime applies the plan and plans again on every event.
//!
//! Rules, in the order they decide:
//! - a job goes only on a machine the fit rule allows ([`crate::domain::fit::check`]): the
//!   caller lists them for each job, so the planner never judges a file itself;
//! - never across a booking or a block of that machine;
//! - outside opening hours only on machines that may run unattended (printers, if the lab
//!   allows it); a laser never does: it runs while the lab is open and a person starts it;
//! - higher manager priority first; among equals, the member with the least time planned so
//!   far goes next (fairness), then the oldest job;
//! - campaign jobs come after every member's job: they fill the idle time.

use crate::domain::MachineKind;
use fabrique_machines::files::gcode::MAX_ESTIMATE_S;
use jiff::Timestamp;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct PlanMachine {
    pub id: i64,
    pub kind: MachineKind,
    /// When the machine can take a new job (now if idle, the end of its current job).
    pub free_from: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanJob {
    pub id: i64,
    pub owner: i64,
    /// The machines the fit rule lets it run on.
    pub machines: Vec<i64>,
    /// A person must start it (a supervised run): only while the lab is open.
    pub attended: bool,
    pub estimate_s: i64,
    /// Set by a manager; higher goes first. 0 by default.
    pub priority: i32,
    pub campaign: bool,
    pub submitted_at: Timestamp,
}

/// A booking or block of a machine: no job may overlap it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Busy {
    pub machine: i64,
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Whether printers may run while the lab is closed. Lasers never may.
    pub printers_unattended: bool,
    /// How far ahead to plan.
    pub horizon_s: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub job: i64,
    pub machine: i64,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Why a job is not in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unplaced {
    /// None of the machines it may run on is in the plan (the rule allows none, or they
    /// are out of service).
    NoMachine,
    /// Its machines have no room within the horizon.
    NoRoom,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub placements: Vec<Placement>,
    pub unplaced: Vec<(i64, Unplaced)>,
}

/// Whether a machine of this kind may work with nobody in the lab.
pub fn may_run_unattended(kind: MachineKind, policy: &Policy) -> bool {
    kind == MachineKind::FdmPrinter && policy.printers_unattended
}

/// Whether the plan may put `job` on `machine`.
pub fn allowed(job: &PlanJob, machine: &PlanMachine) -> bool {
    job.machines.contains(&machine.id)
}

/// The earliest start at or after `from` where `[start, start + length)` crosses no busy
/// interval (sorted by start) and, when `windows` is given, lies inside one window.
fn earliest(
    from: i64,
    length: i64,
    busy: &[(i64, i64)],
    windows: Option<&[(i64, i64)]>,
    until: i64,
) -> Option<i64> {
    let mut start = from;
    loop {
        if start > until {
            return None;
        }
        if let Some(windows) = windows {
            // Move into the first window that can hold the job from `start` on.
            let window = windows
                .iter()
                .find(|(open, close)| *close >= start.max(*open) + length)?;
            start = start.max(window.0);
        }
        let end = start + length;
        match busy.iter().find(|(s, e)| *s < end && start < *e) {
            Some(&(_, e)) => start = e,
            None => return Some(start),
        }
    }
}

pub fn plan(
    jobs: &[PlanJob],
    machines: &[PlanMachine],
    busy: &[Busy],
    opening: &[(Timestamp, Timestamp)],
    policy: &Policy,
    now: Timestamp,
) -> Plan {
    let now_s = now.as_second();
    let until = now_s + policy.horizon_s;
    let mut windows: Vec<(i64, i64)> = opening
        .iter()
        .map(|(a, b)| (a.as_second(), b.as_second()))
        .filter(|(_, b)| *b > now_s)
        .collect();
    windows.sort_unstable();
    let mut busy_of: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for b in busy {
        busy_of
            .entry(b.machine)
            .or_default()
            .push((b.start.as_second(), b.end.as_second()));
    }
    for list in busy_of.values_mut() {
        list.sort_unstable();
    }

    let mut plan = Plan::default();
    let mut remaining: Vec<&PlanJob> = Vec::with_capacity(jobs.len());
    for job in jobs {
        if machines.iter().any(|m| allowed(job, m)) {
            remaining.push(job);
        } else {
            plan.unplaced.push((job.id, Unplaced::NoMachine));
        }
    }
    let mut planned_by_owner: HashMap<i64, i64> = HashMap::new();
    while !remaining.is_empty() {
        // Next job: member work before campaign work, higher priority, least-served owner,
        // oldest first.
        let index = remaining
            .iter()
            .enumerate()
            .min_by_key(|(_, j)| {
                (
                    j.campaign,
                    -j.priority,
                    planned_by_owner.get(&j.owner).copied().unwrap_or(0),
                    j.submitted_at,
                    j.id,
                )
            })
            .map(|(i, _)| i)
            .unwrap_or(0);
        let job = remaining.swap_remove(index);
        // Analyses stored before estimates were capped may hold any figure.
        let length = job.estimate_s.clamp(1, MAX_ESTIMATE_S);
        let best = machines
            .iter()
            .filter(|m| allowed(job, m))
            .filter_map(|m| {
                let attended = job.attended || !may_run_unattended(m.kind, policy);
                let empty = Vec::new();
                let list = busy_of.get(&m.id).unwrap_or(&empty);
                let from = m.free_from.as_second().max(now_s);
                earliest(
                    from,
                    length,
                    list,
                    attended.then_some(windows.as_slice()),
                    until,
                )
                .map(|start| (start, m.id))
            })
            .min();
        match best {
            Some((start, machine)) => {
                let end = start + length;
                let list = busy_of.entry(machine).or_default();
                let at = list.partition_point(|(s, _)| *s < start);
                list.insert(at, (start, end));
                *planned_by_owner.entry(job.owner).or_default() += length;
                plan.placements.push(Placement {
                    job: job.id,
                    machine,
                    start: Timestamp::from_second(start).unwrap_or(now),
                    end: Timestamp::from_second(end).unwrap_or(now),
                });
            }
            None => plan.unplaced.push((job.id, Unplaced::NoRoom)),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = 3600;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn machine(id: i64, kind: MachineKind) -> PlanMachine {
        PlanMachine {
            id,
            kind,
            free_from: t(0),
        }
    }

    /// A job the rule lets run on `machines`.
    fn job(id: i64, owner: i64, machines: &[i64], estimate_s: i64) -> PlanJob {
        PlanJob {
            id,
            owner,
            machines: machines.to_vec(),
            attended: false,
            estimate_s,
            priority: 0,
            campaign: false,
            submitted_at: t(id),
        }
    }

    fn policy() -> Policy {
        Policy {
            printers_unattended: true,
            horizon_s: 7 * 24 * H,
        }
    }

    /// Open 9:00 to 18:00 every day of the first week.
    fn hours() -> Vec<(Timestamp, Timestamp)> {
        (0..7)
            .map(|d| (t(d * 24 * H + 9 * H), t(d * 24 * H + 18 * H)))
            .collect()
    }

    #[test]
    fn an_absurd_estimate_is_planned_at_the_cap_not_an_overflow() {
        let p = plan(
            &[job(1, 1, &[1], i64::MAX), job(2, 1, &[1], H)],
            &[machine(1, MachineKind::FdmPrinter)],
            &[],
            &hours(),
            &policy(),
            t(0),
        );
        assert_eq!(p.placements[0].job, 1);
        assert_eq!(p.placements[0].end, t(MAX_ESTIMATE_S));
        assert_eq!(p.unplaced, vec![(2, Unplaced::NoRoom)]);
    }

    #[test]
    fn a_job_never_crosses_a_booking() {
        let busy = [Busy {
            machine: 1,
            start: t(H),
            end: t(2 * H),
        }];
        let p = plan(
            &[job(1, 1, &[1], 90 * 60)],
            &[machine(1, MachineKind::FdmPrinter)],
            &busy,
            &hours(),
            &policy(),
            t(0),
        );
        assert_eq!(
            p.placements[0].start,
            t(2 * H),
            "90 minutes do not fit before the booking at 1:00"
        );
    }

    #[test]
    fn a_laser_waits_for_opening_hours_and_a_printer_may_run_at_night() {
        let machines = [
            machine(1, MachineKind::FdmPrinter),
            machine(2, MachineKind::LaserCutter),
        ];
        let mut supervised = job(3, 2, &[1], H);
        supervised.attended = true;
        let jobs = [job(1, 1, &[1], H), job(2, 1, &[2], H), supervised];
        let p = plan(&jobs, &machines, &[], &hours(), &policy(), t(0));
        let at = |j| p.placements.iter().find(|x| x.job == j).unwrap().start;
        assert_eq!(at(1), t(0), "the printer starts at night");
        assert_eq!(at(2), t(9 * H), "the laser waits for the opening");
        assert_eq!(at(3), t(9 * H), "a supervised run waits for the opening");
        let closed = Policy {
            printers_unattended: false,
            ..policy()
        };
        let p = plan(&jobs[..1], &machines, &[], &hours(), &closed, t(0));
        assert_eq!(p.placements[0].start, t(9 * H));
    }

    #[test]
    fn jobs_the_rule_allows_nowhere_in_the_plan_are_reported_not_placed() {
        let m = [machine(1, MachineKind::FdmPrinter)];
        let p = plan(
            &[job(1, 1, &[], H), job(2, 1, &[7], H)],
            &m,
            &[],
            &hours(),
            &policy(),
            t(0),
        );
        assert!(p.placements.is_empty());
        assert_eq!(
            p.unplaced,
            vec![(1, Unplaced::NoMachine), (2, Unplaced::NoMachine)]
        );
    }

    #[test]
    fn members_take_turns_and_campaign_work_fills_in_last() {
        let m = [machine(1, MachineKind::FdmPrinter)];
        let mut jobs = vec![job(1, 7, &[1], H), job(2, 7, &[1], H), job(3, 8, &[1], H)];
        let mut campaign = job(4, 9, &[1], H);
        campaign.campaign = true;
        campaign.submitted_at = t(-100);
        jobs.push(campaign);
        let p = plan(&jobs, &m, &[], &hours(), &policy(), t(0));
        let order: Vec<i64> = p.placements.iter().map(|x| x.job).collect();
        assert_eq!(order, vec![1, 3, 2, 4]);
        // A manager's priority goes first.
        jobs[1].priority = 5;
        let p = plan(&jobs, &m, &[], &hours(), &policy(), t(0));
        assert_eq!(p.placements[0].job, 2);
    }

    fn arb_case() -> impl Strategy<Value = (Vec<PlanJob>, Vec<PlanMachine>, Vec<Busy>, bool)> {
        let kinds = prop_oneof![
            Just(MachineKind::FdmPrinter),
            Just(MachineKind::LaserCutter),
            Just(MachineKind::Embroidery)
        ];
        let machines = proptest::collection::vec(kinds, 1..6).prop_map(|ms| {
            ms.into_iter()
                .enumerate()
                .map(|(i, kind)| PlanMachine {
                    id: i as i64 + 1,
                    kind,
                    free_from: t(0),
                })
                .collect::<Vec<_>>()
        });
        let jobs = proptest::collection::vec(
            (
                proptest::sample::subsequence(vec![1i64, 2, 3, 4, 5, 6], 0..=3),
                any::<bool>(),
                0..5i64,
                60..(6 * H),
                -2..3i32,
                any::<bool>(),
            ),
            0..30,
        )
        .prop_map(|js| {
            js.into_iter()
                .enumerate()
                .map(
                    |(i, (machines, attended, owner, est, priority, campaign))| PlanJob {
                        id: i as i64 + 1,
                        owner,
                        machines,
                        attended,
                        estimate_s: est,
                        priority,
                        campaign,
                        submitted_at: t(i as i64),
                    },
                )
                .collect::<Vec<_>>()
        });
        let busy = proptest::collection::vec((1..6i64, 0..(5 * 24 * H), 1800..(4 * H)), 0..20)
            .prop_map(|bs| {
                bs.into_iter()
                    .map(|(m, s, l)| Busy {
                        machine: m,
                        start: t(s),
                        end: t(s + l),
                    })
                    .collect::<Vec<_>>()
            });
        (jobs, machines, busy, any::<bool>())
    }

    proptest! {
        #[test]
        fn plans_keep_every_rule((jobs, machines, busy, unattended) in arb_case()) {
            let policy = Policy { printers_unattended: unattended, horizon_s: 7 * 24 * H };
            let hours = hours();
            let p = plan(&jobs, &machines, &busy, &hours, &policy, t(0));
            prop_assert_eq!(p.placements.len() + p.unplaced.len(), jobs.len(), "every job placed or explained");
            for x in &p.placements {
                let j = jobs.iter().find(|j| j.id == x.job).unwrap();
                let m = machines.iter().find(|m| m.id == x.machine).unwrap();
                prop_assert!(j.machines.contains(&m.id), "no job on a machine the rule does not allow");
                prop_assert_eq!(x.end.as_second() - x.start.as_second(), j.estimate_s);
                for b in busy.iter().filter(|b| b.machine == m.id) {
                    prop_assert!(x.end <= b.start || b.end <= x.start, "no job across a booking");
                }
                for y in p.placements.iter().filter(|y| y.machine == x.machine && y.job != x.job) {
                    prop_assert!(x.end <= y.start || y.end <= x.start, "one job at a time per machine");
                }
                if j.attended || !may_run_unattended(m.kind, &policy) {
                    prop_assert!(hours.iter().any(|(o, c)| *o <= x.start && x.end <= *c), "attended machines only in opening hours");
                }
                if m.kind == MachineKind::LaserCutter {
                    prop_assert!(hours.iter().any(|(o, c)| *o <= x.start && x.end <= *c), "no unattended laser");
                }
            }
        }
    }
}
