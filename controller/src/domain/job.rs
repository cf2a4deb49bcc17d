//! A job: a file sent by a maker, what Fabrique found in it, and its life from submission
//! to done, failed, cancelled or interrupted. Every change of state goes through
//! [`JobState::change_to`], and the store records who made it and when.

use super::campaign::CampaignId;
use super::{Invalid, MachineId, MachineKind, UserId, text_enum};
use fabrique_machines::files::FileSummary;
use jiff::Timestamp;

text_enum! {
    /// `Interrupted`: Fabrique stopped in the middle of the job; it is never silently lost.
    JobState {
        Submitted = "submitted",
        NeedsApproval = "needs_approval",
        Queued = "queued",
        Running = "running",
        Paused = "paused",
        Done = "done",
        Failed = "failed",
        Cancelled = "cancelled",
        Interrupted = "interrupted",
    }
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled | JobState::Interrupted
        )
    }

    /// The state machine of a job (docs/jobs.md). A failed, cancelled or interrupted job can be queued
    /// again (or wait for a manager's approval again); a done job cannot change.
    pub fn change_to(self, next: JobState) -> Result<JobState, Invalid> {
        use JobState::*;
        let allowed = match self {
            Submitted => matches!(next, NeedsApproval | Queued | Failed | Cancelled),
            NeedsApproval => matches!(next, Queued | Cancelled),
            Queued => matches!(next, Running | Cancelled | NeedsApproval),
            Running => matches!(next, Paused | Done | Failed | Cancelled | Interrupted),
            Paused => matches!(next, Running | Failed | Cancelled | Interrupted),
            Failed | Cancelled | Interrupted => matches!(next, Queued | NeedsApproval),
            Done => false,
        };
        if allowed {
            Ok(next)
        } else {
            Err(Invalid::new("state", "job_transition"))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Job {
    pub id: JobId,
    pub owner: UserId,
    pub owner_name: String,
    pub file_name: String,
    pub stored_name: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub target_machine: Option<MachineId>,
    pub target_kind: Option<MachineKind>,
    pub priority: i32,
    pub state: JobState,
    pub state_reason: String,
    /// What was read in the file; `None` when it could not be read.
    pub analysis: Option<FileSummary>,
    pub estimate_s: Option<i64>,
    pub machine: Option<MachineId>,
    pub lines_acked: i64,
    pub bytes_acked: i64,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub file_deleted: bool,
    pub created_at: Timestamp,
    /// The solidarity campaign this job prints for: campaign work, planned after members'
    /// jobs to fill idle printers.
    pub campaign: Option<CampaignId>,
    /// A manager's approval since the job was last queued.
    pub approval: Option<Approval>,
}

/// A manager looked at a job and let it run: who, when, what they saw (the codes of the
/// findings), and whether they let a member without the badge run it with a trainer there.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Approval {
    pub by: UserId,
    pub by_name: String,
    pub at: Timestamp,
    pub seen: Vec<String>,
    pub supervised: bool,
}

impl Job {
    /// A job as it will be recorded from `new`, before it is: for the rule to look at.
    pub fn provisional(new: &NewJob, owner_name: &str, analysis: FileSummary, now: i64) -> Self {
        Self {
            id: JobId(0),
            owner: new.owner,
            owner_name: owner_name.to_string(),
            file_name: new.file_name.clone(),
            stored_name: new.stored_name.clone(),
            size_bytes: new.size_bytes,
            sha256: new.sha256.clone(),
            target_machine: new.target_machine,
            target_kind: new.target_kind,
            priority: 0,
            state: JobState::Submitted,
            state_reason: String::new(),
            estimate_s: Some(analysis.estimate_s()),
            analysis: Some(analysis),
            machine: None,
            lines_acked: 0,
            bytes_acked: 0,
            started_at: None,
            finished_at: None,
            file_deleted: false,
            created_at: Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH),
            campaign: None,
            approval: None,
        }
    }

    /// The filament types the slicer was set for, as the analysis read them; none when the
    /// slicer does not say.
    pub fn materials(&self) -> &[String] {
        match &self.analysis {
            Some(FileSummary::Gcode(g)) => g.slicer.as_ref().map_or(&[], |s| &s.materials),
            _ => &[],
        }
    }
}

/// A new job's file, already on disk.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub owner: UserId,
    pub file_name: String,
    pub stored_name: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub target_machine: Option<MachineId>,
    pub target_kind: Option<MachineKind>,
}

/// One line of a job's history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobEvent {
    pub at: Timestamp,
    pub actor_name: Option<String>,
    pub from: Option<JobState>,
    pub to: JobState,
    pub note: String,
}

/// A file name as shown to people: the last path component, without control characters,
/// at most 120 characters. Never used as a path on disk.
pub fn display_file_name(raw: &str) -> Result<String, Invalid> {
    let name = raw.rsplit(['/', '\\']).next().unwrap_or("").trim();
    let name: String = name.chars().filter(|c| !c.is_control()).take(120).collect();
    if name.is_empty() || name == "." || name == ".." {
        return Err(Invalid::new("file", "file_name"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_state_machine_follows_the_design() {
        use JobState::*;
        assert_eq!(Submitted.change_to(Queued), Ok(Queued));
        assert_eq!(NeedsApproval.change_to(Queued), Ok(Queued));
        assert_eq!(Running.change_to(Interrupted), Ok(Interrupted));
        assert_eq!(Failed.change_to(Queued), Ok(Queued));
        assert_eq!(Cancelled.change_to(NeedsApproval), Ok(NeedsApproval));
        assert!(Done.change_to(Queued).is_err());
        assert!(
            Submitted.change_to(Running).is_err(),
            "a job is queued before it runs"
        );
        assert!(
            NeedsApproval.change_to(Running).is_err(),
            "nothing runs without approval"
        );
    }

    #[test]
    fn file_names_lose_their_directories() {
        assert_eq!(
            display_file_name("C:\\Users\\amina\\visière.gcode").unwrap(),
            "visière.gcode"
        );
        assert_eq!(display_file_name("../../etc/passwd").unwrap(), "passwd");
        assert!(display_file_name("../").is_err());
        assert!(display_file_name("").is_err());
    }
}
