//! The lab's use cases for solidarity campaigns, with their permission rules:
//! - anyone (no account) sees open, paused and closed campaigns with their counts, sends a
//!   request through the public form (rate-limited per address) and follows it by its
//!   secret link; nobody but a manager ever sees a recipient's contact;
//! - a member (a maker) downloads validated model files, pledges, declares batches and says
//!   where they dropped them, and sees their own pledges, batches and counts;
//! - a manager runs everything else: the campaign, its files, requests, reception, quality
//!   checks, materials, assemblies, deliveries, lab prints, traceability.
//!
//! Records are written with this node's lab ([`Lab::lab_id`]).

use crate::domain::campaign::{
    Assembly, Batch, BatchId, Campaign, CampaignId, CampaignInput, CampaignRefusal, CampaignState,
    Counts, Delivery, DeliveryId, DeliveryInput, Donation, FileId, LabCounts, LabId, MakerCounts,
    Material, MaterialId, MaterialInput, ModelFile, Pledge, PledgeId, PledgeInput, Request,
    RequestFollow, RequestId, RequestInput, RequestStatus, TraceLine, items_the_stock_allows,
    optional_text,
};
use crate::domain::job::JobId;
use crate::domain::{Invalid, Role, User};
use crate::lab::{Lab, LabError, LabResult};
use crate::secrets;
use crate::store::{NewPrint, StoreError};
use std::path::Path;

/// Requests the public form takes from one address within [`REQUEST_WINDOW_S`].
pub const REQUESTS_PER_ADDRESS: i64 = 5;
pub const REQUEST_WINDOW_S: i64 = 3600;
/// Lab prints queued by one action, at most.
pub const MAX_PRINTS_AT_ONCE: i64 = 50;

fn require(actor: &User, role: Role) -> LabResult<()> {
    if actor.role.at_least(role) {
        Ok(())
    } else {
        Err(LabError::Forbidden)
    }
}

fn is_manager(viewer: Option<&User>) -> bool {
    viewer.is_some_and(|u| u.role.at_least(Role::Manager))
}

/// What a lab holds for a campaign, for the dashboard and the public page.
#[derive(Debug, Clone, PartialEq)]
pub struct LabStock {
    pub lab: LabId,
    pub lab_name: String,
    pub materials: Vec<Material>,
    /// Accepted parts not assembled yet.
    pub parts_available: i64,
    /// Assembled items not delivered yet.
    pub items_available: i64,
    /// How many more items the materials in stock allow (`None`: no material needed).
    pub materials_allow: Option<i64>,
}

impl LabStock {
    /// Items that could be assembled right now: parts and materials both at hand.
    pub fn assemblable(&self) -> i64 {
        self.materials_allow
            .map_or(self.parts_available, |m| m.min(self.parts_available))
    }
}

impl Lab {
    // --- Campaigns ------------------------------------------------------------------------

    /// Campaigns anyone may see; drafts too for managers.
    pub async fn campaigns(&self, viewer: Option<&User>) -> LabResult<Vec<Campaign>> {
        let all = self.store().campaigns().await?;
        let managers = is_manager(viewer);
        Ok(all
            .into_iter()
            .filter(|c| managers || c.state.is_public())
            .collect())
    }

    /// A campaign; a draft does not exist for anyone but managers.
    pub async fn campaign(&self, viewer: Option<&User>, id: CampaignId) -> LabResult<Campaign> {
        let campaign = self.store().campaign(id).await?;
        if !campaign.state.is_public() && !is_manager(viewer) {
            return Err(LabError::NotFound);
        }
        Ok(campaign)
    }

    pub async fn create_campaign(
        &self,
        actor: &User,
        input: &CampaignInput,
        now: i64,
    ) -> LabResult<Campaign> {
        require(actor, Role::Manager)?;
        let id = self
            .store()
            .insert_campaign(self.lab_id(), input, actor.id, now)
            .await?;
        Ok(self.store().campaign(id).await?)
    }

    pub async fn update_campaign(
        &self,
        actor: &User,
        id: CampaignId,
        input: &CampaignInput,
        now: i64,
    ) -> LabResult<Campaign> {
        require(actor, Role::Manager)?;
        self.store().campaign(id).await?;
        self.store().update_campaign(id, input, now).await?;
        Ok(self.store().campaign(id).await?)
    }

    /// Opens, pauses, reopens or closes a campaign. Leaving `open` cancels the lab prints
    /// that have not started.
    pub async fn set_campaign_state(
        &self,
        actor: &User,
        id: CampaignId,
        to: CampaignState,
        now: i64,
    ) -> LabResult<Campaign> {
        require(actor, Role::Manager)?;
        let campaign = self.store().campaign(id).await?;
        campaign.state.change_to(to)?;
        self.store()
            .set_campaign_state(id, campaign.state, to, actor.id, now)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => LabError::Conflict {
                    what: "campaign_state",
                },
                other => other.into(),
            })?;
        Ok(self.store().campaign(id).await?)
    }

    /// The counts of a campaign and of each lab taking part: public (no personal data).
    pub async fn campaign_counts(
        &self,
        viewer: Option<&User>,
        id: CampaignId,
    ) -> LabResult<(Counts, Vec<LabCounts>)> {
        self.campaign(viewer, id).await?;
        Ok(self.store().campaign_counts(id).await?)
    }

    /// What each lab of the network holds for the campaign (materials, parts, items).
    pub async fn campaign_stock(
        &self,
        viewer: Option<&User>,
        id: CampaignId,
    ) -> LabResult<Vec<LabStock>> {
        self.campaign(viewer, id).await?;
        let mut all = Vec::new();
        for (lab, lab_name) in self.store().labs().await? {
            let materials = self.store().materials(id, lab).await?;
            let materials_allow = items_the_stock_allows(&materials);
            all.push(LabStock {
                lab,
                lab_name,
                parts_available: self.store().parts_available(id, lab).await?,
                items_available: self.store().items_available(id, lab).await?,
                materials,
                materials_allow,
            });
        }
        Ok(all)
    }

    // --- Model files and lab prints ---------------------------------------------------------

    /// Adds a model file (already analysed) to a campaign. It is printed only once a
    /// manager validated it.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_campaign_file(
        &self,
        actor: &User,
        id: CampaignId,
        file_name: &str,
        stored_name: &str,
        sha256: &str,
        content: &[u8],
        analysis: &fabrique_machines::files::FileSummary,
        now: i64,
    ) -> LabResult<ModelFile> {
        require(actor, Role::Manager)?;
        let campaign = self.store().campaign(id).await?;
        if campaign.state == CampaignState::Closed {
            return Err(CampaignRefusal::NotRunning.into());
        }
        let file = self
            .store()
            .insert_campaign_file(
                id,
                self.lab_id(),
                file_name,
                stored_name,
                sha256,
                content,
                analysis,
                actor.id,
                now,
            )
            .await?;
        Ok(self.store().campaign_file(file).await?)
    }

    /// The model files: all of them for managers, the validated ones for makers.
    pub async fn campaign_files(&self, viewer: &User, id: CampaignId) -> LabResult<Vec<ModelFile>> {
        self.campaign(Some(viewer), id).await?;
        let all = self.store().campaign_files(id).await?;
        let managers = is_manager(Some(viewer));
        Ok(all
            .into_iter()
            .filter(|f| managers || f.validated_at.is_some())
            .collect())
    }

    /// A manager marks the prototype validated, after the professionals who will use the
    /// item tested it, saying who tested it and how many parts one print makes.
    pub async fn validate_campaign_file(
        &self,
        actor: &User,
        campaign: CampaignId,
        file: FileId,
        note: &str,
        parts_per_print: i64,
        now: i64,
    ) -> LabResult<ModelFile> {
        require(actor, Role::Manager)?;
        let f = self.store().campaign_file(file).await?;
        if f.campaign != campaign {
            return Err(LabError::NotFound);
        }
        let note = crate::domain::account::parse_text("validation_note", note, 300)?;
        if !(1..=100).contains(&parts_per_print) {
            return Err(Invalid::new("parts_per_print", "quantity").into());
        }
        self.store()
            .validate_campaign_file(file, actor.id, &note, parts_per_print, now)
            .await?;
        Ok(self.store().campaign_file(file).await?)
    }

    /// A model file and its bytes, for a maker to print at home (validated files only,
    /// unless a manager asks).
    pub async fn campaign_file_content(
        &self,
        viewer: &User,
        campaign: CampaignId,
        file: FileId,
    ) -> LabResult<(ModelFile, Vec<u8>)> {
        let f = self
            .campaign_files(viewer, campaign)
            .await?
            .into_iter()
            .find(|f| f.id == file)
            .ok_or(LabError::NotFound)?;
        let content = self.store().campaign_file_content(file).await?;
        Ok((f, content))
    }

    /// "Queue N lab prints": N jobs of a validated file for this lab's printers, planned as
    /// campaign work (after every member's job, never across a booking). The file is written
    /// once to `jobs_dir` from the database, and each job gets its own hard link to it (a
    /// copy where links are not possible), so the retention clean-up of a job never removes
    /// the model.
    pub async fn queue_campaign_prints(
        &self,
        actor: &User,
        campaign: CampaignId,
        file: FileId,
        count: i64,
        jobs_dir: &Path,
        now: i64,
    ) -> LabResult<Vec<JobId>> {
        require(actor, Role::Manager)?;
        if !(1..=MAX_PRINTS_AT_ONCE).contains(&count) {
            return Err(Invalid::new("count", "prints_count").into());
        }
        let c = self.store().campaign(campaign).await?;
        c.state.require_open()?;
        let f = self.store().campaign_file(file).await?;
        if f.campaign != campaign {
            return Err(LabError::NotFound);
        }
        if f.validated_at.is_none() {
            return Err(CampaignRefusal::FileNotValidated.into());
        }
        let io = |e: std::io::Error| LabError::Store(StoreError::Corrupt(format!("jobs dir: {e}")));
        tokio::fs::create_dir_all(jobs_dir).await.map_err(io)?;
        let model = jobs_dir.join(&f.stored_name);
        if tokio::fs::metadata(&model).await.is_err() {
            let content = self.store().campaign_file_content(file).await?;
            let partial = jobs_dir.join(format!("{}.part", f.stored_name));
            tokio::fs::write(&partial, &content).await.map_err(io)?;
            tokio::fs::rename(&partial, &model).await.map_err(io)?;
        }
        let extension = f
            .stored_name
            .rsplit_once('.')
            .map_or("gcode", |(_, e)| e)
            .to_string();
        let mut prints = Vec::new();
        let mut made = Vec::new();
        let result = async {
            for _ in 0..count {
                let token = secrets::random_token()?;
                let stored_name = format!("campaign-{}.{extension}", &token[..24]);
                let path = jobs_dir.join(&stored_name);
                if tokio::fs::hard_link(&model, &path).await.is_err() {
                    tokio::fs::copy(&model, &path).await.map_err(io)?;
                }
                made.push(path);
                prints.push(NewPrint { stored_name });
            }
            // The prints go where the fit rule sends any job of this file: the queue, or a
            // manager's look first.
            let decided = match &f.analysis {
                Some(summary) => {
                    let new = crate::store::NewJob {
                        owner: actor.id,
                        file_name: f.file_name.clone(),
                        stored_name: f.stored_name.clone(),
                        size_bytes: f.size_bytes,
                        sha256: f.sha256.clone(),
                        target_machine: None,
                        target_kind: None,
                    };
                    self.review_new(actor, &new, summary, now).await?
                }
                None => return Err(crate::domain::fit::Refusal::Unreadable.into()),
            };
            Ok::<_, LabError>(
                self.store()
                    .insert_campaign_prints(
                        campaign,
                        &f,
                        self.lab_id(),
                        actor.id,
                        &prints,
                        (decided.0, &decided.1),
                        now,
                    )
                    .await?,
            )
        }
        .await;
        if result.is_err() {
            for path in made {
                let _ = tokio::fs::remove_file(path).await;
            }
        }
        result
    }

    /// This lab's campaign prints: (waiting or running, finished parts not yet collected).
    pub async fn campaign_prints_status(
        &self,
        actor: &User,
        campaign: CampaignId,
    ) -> LabResult<(i64, i64)> {
        require(actor, Role::Manager)?;
        Ok(self
            .store()
            .campaign_prints_status(campaign, self.lab_id())
            .await?)
    }

    /// Collects this lab's finished campaign prints into a lab batch, which then goes
    /// through reception and the quality check like a maker's batch.
    pub async fn collect_lab_prints(
        &self,
        actor: &User,
        campaign: CampaignId,
        now: i64,
    ) -> LabResult<BatchId> {
        require(actor, Role::Manager)?;
        let lab = self.lab_name().await?;
        Ok(self
            .store()
            .collect_lab_prints(campaign, self.lab_id(), &lab, now)
            .await?)
    }

    async fn lab_name(&self) -> LabResult<String> {
        Ok(self
            .store()
            .labs()
            .await?
            .into_iter()
            .find(|(id, _)| *id == self.lab_id())
            .map(|(_, name)| name)
            .unwrap_or_default())
    }

    // --- Materials ----------------------------------------------------------------------------

    pub async fn add_material(
        &self,
        actor: &User,
        campaign: CampaignId,
        input: &MaterialInput,
        now: i64,
    ) -> LabResult<()> {
        require(actor, Role::Manager)?;
        let c = self.store().campaign(campaign).await?;
        if c.state == CampaignState::Closed {
            return Err(CampaignRefusal::NotRunning.into());
        }
        self.store().insert_material(campaign, input, now).await?;
        Ok(())
    }

    /// The bill of materials with this lab's stock.
    pub async fn materials(&self, actor: &User, campaign: CampaignId) -> LabResult<Vec<Material>> {
        require(actor, Role::Manager)?;
        Ok(self.store().materials(campaign, self.lab_id()).await?)
    }

    /// A donation of material received by this lab, added to its stock.
    pub async fn record_donation(
        &self,
        actor: &User,
        campaign: CampaignId,
        material: MaterialId,
        donor: &str,
        quantity: i64,
        now: i64,
    ) -> LabResult<()> {
        require(actor, Role::Manager)?;
        let donor = crate::domain::account::parse_text("donor", donor, 120)?;
        Ok(self
            .store()
            .record_donation(
                campaign,
                material,
                self.lab_id(),
                &donor,
                quantity,
                actor.id,
                now,
            )
            .await?)
    }

    /// Donations name their donors: managers only.
    pub async fn donations(&self, actor: &User, campaign: CampaignId) -> LabResult<Vec<Donation>> {
        require(actor, Role::Manager)?;
        Ok(self.store().donations(campaign).await?)
    }

    // --- Requests -----------------------------------------------------------------------------

    /// A request from the public form. At most [`REQUESTS_PER_ADDRESS`] per address per
    /// hour. Returns the secret of the follow link, shown once to the person who asked.
    pub async fn submit_request(
        &self,
        campaign: CampaignId,
        input: &RequestInput,
        ip: &str,
        now: i64,
    ) -> LabResult<String> {
        let c = self.campaign(None, campaign).await?;
        c.state.require_open()?;
        let since = now - REQUEST_WINDOW_S;
        let (sent, oldest) = self.store().request_submissions_since(ip, since).await?;
        if sent >= REQUESTS_PER_ADDRESS {
            let wait = oldest.map_or(REQUEST_WINDOW_S, |t| t + REQUEST_WINDOW_S - now);
            return Err(CampaignRefusal::TooManyRequests {
                minutes: (wait.max(1) + 59) / 60,
            }
            .into());
        }
        let token = secrets::random_token()?;
        self.store()
            .insert_request(
                campaign,
                self.lab_id(),
                input,
                &secrets::token_hash(&token),
                ip,
                since,
                now,
            )
            .await?;
        Ok(token)
    }

    /// Requests with their contacts: managers only.
    pub async fn requests(&self, actor: &User, campaign: CampaignId) -> LabResult<Vec<Request>> {
        require(actor, Role::Manager)?;
        self.store().campaign(campaign).await?;
        Ok(self.store().requests(campaign).await?)
    }

    pub async fn accept_request(
        &self,
        actor: &User,
        campaign: CampaignId,
        id: RequestId,
        now: i64,
    ) -> LabResult<()> {
        require(actor, Role::Manager)?;
        Ok(self
            .store()
            .decide_request(campaign, id, RequestStatus::Accepted, "", actor.id, now)
            .await?)
    }

    /// Refuses a request, saying why (the organisation reads it on its follow page).
    pub async fn refuse_request(
        &self,
        actor: &User,
        campaign: CampaignId,
        id: RequestId,
        reason: &str,
        now: i64,
    ) -> LabResult<()> {
        require(actor, Role::Manager)?;
        let reason = crate::domain::account::parse_text("reason", reason, 300)?;
        Ok(self
            .store()
            .decide_request(campaign, id, RequestStatus::Refused, &reason, actor.id, now)
            .await?)
    }

    /// Higher goes first in the list of requests to serve (-10 to 10).
    pub async fn prioritise_request(
        &self,
        actor: &User,
        campaign: CampaignId,
        id: RequestId,
        priority: i32,
    ) -> LabResult<()> {
        require(actor, Role::Manager)?;
        if !(-10..=10).contains(&priority) {
            return Err(Invalid::new("priority", "number_range").into());
        }
        Ok(self
            .store()
            .set_request_priority(campaign, id, priority)
            .await?)
    }

    /// Splits a request into two whose quantities add up to it: `first` and the rest.
    pub async fn split_request(
        &self,
        actor: &User,
        campaign: CampaignId,
        id: RequestId,
        first: i64,
        now: i64,
    ) -> LabResult<(RequestId, RequestId)> {
        require(actor, Role::Manager)?;
        Ok(self
            .store()
            .split_request(campaign, id, first, actor.id, now)
            .await?)
    }

    /// What the organisation that asked sees, by the secret of its follow link.
    pub async fn request_follow(&self, token: &str) -> LabResult<RequestFollow> {
        Ok(self
            .store()
            .request_follow(&secrets::token_hash(token))
            .await?)
    }

    // --- Makers -------------------------------------------------------------------------------

    pub async fn pledge(
        &self,
        actor: &User,
        campaign: CampaignId,
        input: &PledgeInput,
        now: i64,
    ) -> LabResult<Pledge> {
        self.campaign(Some(actor), campaign).await?;
        let id = self
            .store()
            .insert_pledge(campaign, self.lab_id(), actor.id, input, now)
            .await?;
        self.store()
            .pledges(campaign, Some(actor.id))
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or(LabError::NotFound)
    }

    /// A maker says a batch of parts is finished (for one of their pledges, or not).
    pub async fn declare_batch(
        &self,
        actor: &User,
        campaign: CampaignId,
        pledge: Option<PledgeId>,
        quantity: i64,
        now: i64,
    ) -> LabResult<Batch> {
        self.campaign(Some(actor), campaign).await?;
        let id = self
            .store()
            .insert_maker_batch(campaign, self.lab_id(), actor.id, pledge, quantity, now)
            .await?;
        Ok(self.store().batch(id).await?)
    }

    /// The maker says at which collection point of the campaign they left the batch.
    pub async fn drop_batch(
        &self,
        actor: &User,
        campaign: CampaignId,
        batch: BatchId,
        point: &str,
        now: i64,
    ) -> LabResult<Batch> {
        let c = self.campaign(Some(actor), campaign).await?;
        c.state.require_running()?;
        let b = self.store().batch(batch).await?;
        if b.campaign != campaign {
            return Err(LabError::NotFound);
        }
        if b.maker != Some(actor.id) {
            return Err(LabError::Forbidden);
        }
        let point = point.trim();
        if !c.collection_points.iter().any(|p| p == point) {
            return Err(CampaignRefusal::UnknownCollectionPoint.into());
        }
        self.store().drop_batch(batch, point, now).await?;
        Ok(self.store().batch(batch).await?)
    }

    pub async fn my_pledges(&self, actor: &User, campaign: CampaignId) -> LabResult<Vec<Pledge>> {
        Ok(self.store().pledges(campaign, Some(actor.id)).await?)
    }

    pub async fn my_batches(&self, actor: &User, campaign: CampaignId) -> LabResult<Vec<Batch>> {
        Ok(self.store().batches(campaign, Some(actor.id)).await?)
    }

    /// A maker's own figures, from their pledges and batches.
    pub async fn my_counts(&self, actor: &User, campaign: CampaignId) -> LabResult<MakerCounts> {
        let pledges = self.my_pledges(actor, campaign).await?;
        let batches = self.my_batches(actor, campaign).await?;
        Ok(MakerCounts {
            pledged: pledges.iter().map(|p| p.quantity).sum(),
            declared: batches.iter().map(|b| b.quantity).sum(),
            received: batches.iter().filter_map(|b| b.received_quantity).sum(),
            accepted: batches.iter().filter_map(|b| b.accepted_quantity).sum(),
            rejected: batches.iter().map(Batch::rejected).sum(),
        })
    }

    // --- Managers: reception, checks, assembly, delivery, traceability ------------------------

    pub async fn pledges(&self, actor: &User, campaign: CampaignId) -> LabResult<Vec<Pledge>> {
        require(actor, Role::Manager)?;
        Ok(self.store().pledges(campaign, None).await?)
    }

    pub async fn batches(&self, actor: &User, campaign: CampaignId) -> LabResult<Vec<Batch>> {
        require(actor, Role::Manager)?;
        Ok(self.store().batches(campaign, None).await?)
    }

    pub async fn batch(&self, actor: &User, campaign: CampaignId, id: BatchId) -> LabResult<Batch> {
        require(actor, Role::Manager)?;
        let b = self.store().batch(id).await?;
        if b.campaign != campaign {
            return Err(LabError::NotFound);
        }
        Ok(b)
    }

    /// A manager counts what arrived of a batch; it now belongs to this lab.
    pub async fn receive_batch(
        &self,
        actor: &User,
        campaign: CampaignId,
        id: BatchId,
        quantity: i64,
        now: i64,
    ) -> LabResult<()> {
        require(actor, Role::Manager)?;
        Ok(self
            .store()
            .receive_batch(campaign, id, self.lab_id(), quantity, actor.id, now)
            .await?)
    }

    /// The quality check: how many received parts are good; the others are rejected with
    /// a reason.
    pub async fn check_batch(
        &self,
        actor: &User,
        campaign: CampaignId,
        id: BatchId,
        accepted: i64,
        reason: &str,
        now: i64,
    ) -> LabResult<()> {
        require(actor, Role::Manager)?;
        let b = self.batch(actor, campaign, id).await?;
        let reason = optional_text("rejection_reason", reason, 300)?;
        if let Some(received) = b.received_quantity
            && accepted < received
            && reason.is_empty()
        {
            return Err(Invalid::new("rejection_reason", "required").into());
        }
        Ok(self
            .store()
            .check_batch(campaign, id, accepted, &reason, actor.id, now)
            .await?)
    }

    /// Assembles items in this lab from accepted parts and the bill of materials.
    pub async fn assemble(
        &self,
        actor: &User,
        campaign: CampaignId,
        quantity: i64,
        now: i64,
    ) -> LabResult<()> {
        require(actor, Role::Manager)?;
        self.store()
            .assemble(campaign, self.lab_id(), quantity, actor.id, now)
            .await?;
        Ok(())
    }

    pub async fn assemblies(&self, actor: &User, campaign: CampaignId) -> LabResult<Vec<Assembly>> {
        require(actor, Role::Manager)?;
        Ok(self.store().assemblies(campaign).await?)
    }

    /// Hands items assembled in this lab to an accepted request.
    pub async fn deliver(
        &self,
        actor: &User,
        campaign: CampaignId,
        input: &DeliveryInput,
        now: i64,
    ) -> LabResult<DeliveryId> {
        require(actor, Role::Manager)?;
        Ok(self
            .store()
            .deliver(campaign, self.lab_id(), input, actor.id, now)
            .await?)
    }

    pub async fn deliveries(&self, actor: &User, campaign: CampaignId) -> LabResult<Vec<Delivery>> {
        require(actor, Role::Manager)?;
        Ok(self.store().deliveries(campaign).await?)
    }

    /// From deliveries back to batches and makers: every delivery of the campaign, or the
    /// ones that may hold parts of one batch (to recall it).
    pub async fn trace(
        &self,
        actor: &User,
        campaign: CampaignId,
        batch: Option<BatchId>,
    ) -> LabResult<Vec<TraceLine>> {
        require(actor, Role::Manager)?;
        Ok(self.store().trace(campaign, batch).await?)
    }

    /// The assemblies that took parts of a batch: (assembly, parts, when, items left).
    pub async fn batch_assemblies(
        &self,
        actor: &User,
        campaign: CampaignId,
        batch: BatchId,
    ) -> LabResult<
        Vec<(
            crate::domain::campaign::AssemblyId,
            i64,
            jiff::Timestamp,
            i64,
        )>,
    > {
        self.batch(actor, campaign, batch).await?;
        Ok(self.store().batch_assemblies(batch).await?)
    }
}
