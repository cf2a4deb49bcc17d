//! Solidarity campaigns: labs, campaigns, model files, requests, pledges, batches, stock,
//! assemblies, deliveries and the links between them.
//!
//! Concurrency: every change that moves a balance (stock, parts left in a batch, items left
//! in an assembly) or decides on a request starts its transaction by touching the
//! campaign's row (`lock_campaign`). On PostgreSQL that row lock makes concurrent changes of
//! one campaign wait for each other; on SQLite the write takes the database's lock. The
//! reads that follow are then current, and the balances are moved with conditional updates
//! under `CHECK (... >= 0)` constraints: even a bug cannot allocate an item twice or take
//! stock that is not there.

use super::{Store, StoreError, StoreResult, conflict, parse_word};
use crate::domain::UserId;
use crate::domain::campaign::{
    Assembly, AssemblyId, Batch, BatchId, Campaign, CampaignId, CampaignInput, CampaignRefusal,
    CampaignState, Contact, Counts, Delivery, DeliveryId, DeliveryInput, Donation, FileId,
    FollowPart, ItemName, LabCounts, LabId, Material, MaterialId, MaterialInput, ModelFile, Pledge,
    PledgeId, PledgeInput, Request, RequestFollow, RequestId, RequestInput, RequestStatus,
    TraceLine, check_stock, draw_in_order,
};
use crate::domain::job::{JobId, JobState};
use fabrique_machines::files::FileSummary;
use jiff::Timestamp;
use jiff::civil::Date;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeMap;

fn ts(seconds: i64) -> StoreResult<Timestamp> {
    Timestamp::from_second(seconds).map_err(|e| StoreError::Corrupt(format!("time {seconds}: {e}")))
}

fn opt_ts(seconds: Option<i64>) -> StoreResult<Option<Timestamp>> {
    seconds.map(ts).transpose()
}

fn date(column: &str, text: &str) -> StoreResult<Date> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{column} = {text:?}")))
}

fn refused(refusal: CampaignRefusal) -> StoreError {
    StoreError::Campaign(refusal)
}

/// Takes the campaign's lock for this transaction (see the module's doc) and returns its
/// state as it is now.
async fn lock_campaign(
    tx: &mut Transaction<'static, Any>,
    id: CampaignId,
    now: i64,
) -> StoreResult<CampaignState> {
    let row = sqlx::query("UPDATE campaigns SET updated_at = $2 WHERE id = $1 RETURNING state")
        .bind(id.0)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    parse_word("state", &row.try_get::<String, _>("state")?)
}

/// Fails unless exactly one row changed: the balance a conditional update guards was not
/// there (which the lock makes impossible, and the CHECK constraints would refuse anyway).
fn one_row(done: sqlx::any::AnyQueryResult, what: &'static str) -> StoreResult<()> {
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict { what })
    }
}

const CAMPAIGN_COLUMNS: &str = "c.id, c.lab_id, l.name AS lab_name, c.title, c.item, c.item_plural, c.item_gender, \
     c.description, c.profile, \
     c.collection_points, c.target_quantity, c.state, c.created_at \
     FROM campaigns c JOIN labs l ON l.id = c.lab_id";

fn campaign_from_row(row: &AnyRow) -> StoreResult<Campaign> {
    let points: String = row.try_get("collection_points")?;
    Ok(Campaign {
        id: CampaignId(row.try_get("id")?),
        lab: LabId(row.try_get("lab_id")?),
        lab_name: row.try_get("lab_name")?,
        title: row.try_get("title")?,
        item: item_from_row(row)?,
        description: row.try_get("description")?,
        profile: row.try_get("profile")?,
        target_quantity: row.try_get("target_quantity")?,
        collection_points: points
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        state: parse_word("state", &row.try_get::<String, _>("state")?)?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

/// The item's name from the `item`, `item_plural` and `item_gender` columns.
fn item_from_row(row: &AnyRow) -> StoreResult<ItemName> {
    Ok(ItemName {
        singular: row.try_get("item")?,
        plural: row.try_get("item_plural")?,
        gender: parse_word("item_gender", &row.try_get::<String, _>("item_gender")?)?,
    })
}

const FILE_COLUMNS: &str = "f.id, f.campaign_id, f.file_name, f.stored_name, f.size_bytes, f.sha256, f.analysis, \
     f.estimate_s, f.findings, f.parts_per_print, f.validated_at, u.display_name AS validated_by_name, \
     f.validation_note, f.created_at FROM campaign_files f LEFT JOIN users u ON u.id = f.validated_by";

fn file_from_row(row: &AnyRow) -> StoreResult<ModelFile> {
    let id: i64 = row.try_get("id")?;
    Ok(ModelFile {
        id: FileId(id),
        campaign: CampaignId(row.try_get("campaign_id")?),
        file_name: row.try_get("file_name")?,
        stored_name: row.try_get("stored_name")?,
        size_bytes: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        estimate_s: row.try_get("estimate_s")?,
        findings: row.try_get("findings")?,
        analysis: super::jobs::analysis_from_text(id, row.try_get("analysis")?),
        parts_per_print: row.try_get("parts_per_print")?,
        validated_at: opt_ts(row.try_get("validated_at")?)?,
        validated_by_name: row.try_get("validated_by_name")?,
        validation_note: row.try_get("validation_note")?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

const REQUEST_COLUMNS: &str = "r.id, r.campaign_id, r.parent_id, r.organisation, r.kind, r.quantity, r.needed_by, \
     r.delivery_place, r.contact_name, r.contact_phone, r.contact_email, r.status, r.priority, r.refusal_reason, \
     r.created_at, (SELECT CAST(COALESCE(SUM(d.quantity), 0) AS BIGINT) FROM campaign_deliveries d \
     WHERE d.request_id = r.id) AS delivered FROM campaign_requests r";

fn request_from_row(row: &AnyRow) -> StoreResult<Request> {
    Ok(Request {
        id: RequestId(row.try_get("id")?),
        campaign: CampaignId(row.try_get("campaign_id")?),
        parent: row.try_get::<Option<i64>, _>("parent_id")?.map(RequestId),
        organisation: row.try_get("organisation")?,
        kind: parse_word("kind", &row.try_get::<String, _>("kind")?)?,
        quantity: row.try_get("quantity")?,
        needed_by: date("needed_by", &row.try_get::<String, _>("needed_by")?)?,
        delivery_place: row.try_get("delivery_place")?,
        contact: Contact {
            name: row.try_get("contact_name")?,
            phone: row.try_get("contact_phone")?,
            email: row.try_get("contact_email")?,
        },
        status: parse_word("status", &row.try_get::<String, _>("status")?)?,
        priority: i32::try_from(row.try_get::<i64, _>("priority")?).unwrap_or(0),
        refusal_reason: row.try_get("refusal_reason")?,
        delivered: row.try_get("delivered")?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

const PLEDGE_COLUMNS: &str = "p.id, p.campaign_id, p.maker_id, u.display_name AS maker_name, l.name AS lab_name, \
     p.quantity, p.due_by, p.place, p.created_at FROM campaign_pledges p JOIN users u ON u.id = p.maker_id \
     JOIN labs l ON l.id = p.lab_id";

fn pledge_from_row(row: &AnyRow) -> StoreResult<Pledge> {
    Ok(Pledge {
        id: PledgeId(row.try_get("id")?),
        campaign: CampaignId(row.try_get("campaign_id")?),
        maker: UserId(row.try_get("maker_id")?),
        maker_name: row.try_get("maker_name")?,
        lab_name: row.try_get("lab_name")?,
        quantity: row.try_get("quantity")?,
        due_by: date("due_by", &row.try_get::<String, _>("due_by")?)?,
        place: parse_word("place", &row.try_get::<String, _>("place")?)?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

const BATCH_COLUMNS: &str = "b.id, b.campaign_id, b.lab_id, l.name AS lab_name, b.source, b.maker_id, \
     u.display_name AS maker_name, b.pledge_id, b.quantity, b.declared_at, b.collection_point, b.dropped_at, \
     b.received_quantity, b.received_at, b.accepted_quantity, b.rejection_reason, b.checked_at, b.parts_left \
     FROM campaign_batches b JOIN labs l ON l.id = b.lab_id LEFT JOIN users u ON u.id = b.maker_id";

fn batch_from_row(row: &AnyRow) -> StoreResult<Batch> {
    Ok(Batch {
        id: BatchId(row.try_get("id")?),
        campaign: CampaignId(row.try_get("campaign_id")?),
        lab: LabId(row.try_get("lab_id")?),
        lab_name: row.try_get("lab_name")?,
        source: parse_word("source", &row.try_get::<String, _>("source")?)?,
        maker: row.try_get::<Option<i64>, _>("maker_id")?.map(UserId),
        maker_name: row.try_get("maker_name")?,
        pledge: row.try_get::<Option<i64>, _>("pledge_id")?.map(PledgeId),
        quantity: row.try_get("quantity")?,
        declared_at: ts(row.try_get("declared_at")?)?,
        collection_point: row.try_get("collection_point")?,
        dropped_at: opt_ts(row.try_get("dropped_at")?)?,
        received_quantity: row.try_get("received_quantity")?,
        received_at: opt_ts(row.try_get("received_at")?)?,
        accepted_quantity: row.try_get("accepted_quantity")?,
        rejection_reason: row.try_get("rejection_reason")?,
        checked_at: opt_ts(row.try_get("checked_at")?)?,
        parts_left: row.try_get("parts_left")?,
    })
}

const DELIVERY_COLUMNS: &str = "d.id, d.request_id, r.organisation, l.name AS lab_name, d.quantity, d.delivered_on, \
     d.delivered_by, d.recorded_at FROM campaign_deliveries d JOIN campaign_requests r ON r.id = d.request_id \
     JOIN labs l ON l.id = d.lab_id";

fn delivery_from_row(row: &AnyRow) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: DeliveryId(row.try_get("id")?),
        request: RequestId(row.try_get("request_id")?),
        organisation: row.try_get("organisation")?,
        lab_name: row.try_get("lab_name")?,
        quantity: row.try_get("quantity")?,
        delivered_on: date("delivered_on", &row.try_get::<String, _>("delivered_on")?)?,
        delivered_by: row.try_get("delivered_by")?,
        recorded_at: ts(row.try_get("recorded_at")?)?,
    })
}

const TRACE_COLUMNS: &str = "d.id AS delivery_id, d.delivered_on, r.organisation, d.request_id, \
     di.quantity AS from_assembly, ap.assembly_id, ap.quantity AS from_batch, b.id AS batch_id, b.source, \
     u.display_name AS maker_name, l.name AS lab_name \
     FROM campaign_deliveries d JOIN campaign_requests r ON r.id = d.request_id \
     JOIN campaign_delivery_items di ON di.delivery_id = d.id \
     JOIN campaign_assembly_parts ap ON ap.assembly_id = di.assembly_id \
     JOIN campaign_batches b ON b.id = ap.batch_id JOIN labs l ON l.id = b.lab_id \
     LEFT JOIN users u ON u.id = b.maker_id";

fn trace_from_row(row: &AnyRow) -> StoreResult<TraceLine> {
    Ok(TraceLine {
        delivery: DeliveryId(row.try_get("delivery_id")?),
        delivered_on: date("delivered_on", &row.try_get::<String, _>("delivered_on")?)?,
        organisation: row.try_get("organisation")?,
        request: RequestId(row.try_get("request_id")?),
        delivered_from_assembly: row.try_get("from_assembly")?,
        assembly: AssemblyId(row.try_get("assembly_id")?),
        parts_from_batch: row.try_get("from_batch")?,
        batch: BatchId(row.try_get("batch_id")?),
        batch_source: parse_word("source", &row.try_get::<String, _>("source")?)?,
        maker_name: row.try_get("maker_name")?,
        lab_name: row.try_get("lab_name")?,
    })
}

/// A campaign print job about to be created: its own name for the (linked) file on disk.
#[derive(Debug, Clone)]
pub struct NewPrint {
    pub stored_name: String,
}

impl Store {
    // --- Labs ---------------------------------------------------------------------------

    /// The lab of that name, added when this is the first node to use it.
    pub async fn lab_named(&self, name: &str, now: i64) -> StoreResult<LabId> {
        sqlx::query(
            "INSERT INTO labs (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT id FROM labs WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(LabId(row.try_get("id")?))
    }

    /// Every lab of the network, in the order they joined.
    pub async fn labs(&self) -> StoreResult<Vec<(LabId, String)>> {
        let rows = sqlx::query("SELECT id, name FROM labs ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((LabId(r.try_get("id")?), r.try_get("name")?)))
            .collect()
    }

    // --- Campaigns ----------------------------------------------------------------------

    pub async fn insert_campaign(
        &self,
        lab: LabId,
        input: &CampaignInput,
        by: UserId,
        now: i64,
    ) -> StoreResult<CampaignId> {
        let row = sqlx::query(
            "INSERT INTO campaigns (lab_id, title, item, item_plural, item_gender, description, profile, \
             collection_points, target_quantity, state, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'draft', $10, $11, $11) RETURNING id",
        )
        .bind(lab.0)
        .bind(&input.title)
        .bind(&input.item.singular)
        .bind(&input.item.plural)
        .bind(input.item.gender.as_str())
        .bind(&input.description)
        .bind(&input.profile)
        .bind(input.collection_points.join("\n"))
        .bind(input.target_quantity)
        .bind(by.0)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(CampaignId(row.try_get("id")?))
    }

    pub async fn update_campaign(
        &self,
        id: CampaignId,
        input: &CampaignInput,
        now: i64,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE campaigns SET title = $1, item = $2, item_plural = $3, item_gender = $4, description = $5, \
             profile = $6, collection_points = $7, target_quantity = $8, updated_at = $9 \
             WHERE id = $10 AND state <> 'closed'",
        )
        .bind(&input.title)
        .bind(&input.item.singular)
        .bind(&input.item.plural)
        .bind(input.item.gender.as_str())
        .bind(&input.description)
        .bind(&input.profile)
        .bind(input.collection_points.join("\n"))
        .bind(input.target_quantity)
        .bind(now)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(refused(CampaignRefusal::NotRunning));
        }
        Ok(())
    }

    pub async fn campaign(&self, id: CampaignId) -> StoreResult<Campaign> {
        let row = sqlx::query(&format!("SELECT {CAMPAIGN_COLUMNS} WHERE c.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        campaign_from_row(&row)
    }

    /// Every campaign, newest first.
    pub async fn campaigns(&self) -> StoreResult<Vec<Campaign>> {
        let rows = sqlx::query(&format!("SELECT {CAMPAIGN_COLUMNS} ORDER BY c.id DESC"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    /// Moves a campaign from `from` to `to`. Leaving `open` cancels the campaign's lab prints
    /// that have not started, with a line in each job's history; all in one transaction.
    pub async fn set_campaign_state(
        &self,
        id: CampaignId,
        from: CampaignState,
        to: CampaignState,
        by: UserId,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE campaigns SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(id.0)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?;
        one_row(done, "campaign_state")?;
        if to != CampaignState::Open {
            let waiting = "campaign_id = $1 AND state IN ('submitted', 'needs_approval', 'queued')";
            let note = match to {
                CampaignState::Paused => "campagne en pause",
                _ => "campagne terminée",
            };
            sqlx::query(&format!(
                "INSERT INTO job_events (job_id, at, actor_id, from_state, to_state, note) \
                 SELECT id, $2, $3, state, 'cancelled', $4 FROM jobs WHERE {waiting}"
            ))
            .bind(id.0)
            .bind(now)
            .bind(by.0)
            .bind(note)
            .execute(&mut *tx)
            .await?;
            sqlx::query(&format!(
                "UPDATE jobs SET state = 'cancelled', state_reason = $2, updated_at = $3, finished_at = $3 WHERE {waiting}"
            ))
            .bind(id.0)
            .bind(note)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The campaign's counts, in total and per lab, each a sum over its records.
    pub async fn campaign_counts(&self, id: CampaignId) -> StoreResult<(Counts, Vec<LabCounts>)> {
        let sum = |what: &str, expr: &str, from: &str, filter: &str, lab: &str| {
            format!(
                "SELECT {lab} AS lab_id, '{what}' AS what, CAST(COALESCE(SUM({expr}), 0) AS BIGINT) AS n \
                 FROM {from} WHERE {filter} GROUP BY {lab}"
            )
        };
        let parts = [
            sum(
                "requested",
                "quantity",
                "campaign_requests",
                "campaign_id = $1 AND status IN ('new', 'accepted')",
                "lab_id",
            ),
            sum(
                "pledged",
                "quantity",
                "campaign_pledges",
                "campaign_id = $1",
                "lab_id",
            ),
            sum(
                "produced",
                "quantity",
                "campaign_batches",
                "campaign_id = $1 AND source = 'maker'",
                "lab_id",
            ),
            sum(
                "produced",
                "p.parts",
                "campaign_prints p JOIN jobs j ON j.id = p.job_id",
                "p.campaign_id = $1 AND j.state = 'done'",
                "p.lab_id",
            ),
            sum(
                "received",
                "received_quantity",
                "campaign_batches",
                "campaign_id = $1 AND received_at IS NOT NULL",
                "lab_id",
            ),
            sum(
                "accepted",
                "accepted_quantity",
                "campaign_batches",
                "campaign_id = $1 AND checked_at IS NOT NULL",
                "lab_id",
            ),
            sum(
                "rejected",
                "received_quantity - accepted_quantity",
                "campaign_batches",
                "campaign_id = $1 AND checked_at IS NOT NULL",
                "lab_id",
            ),
            sum(
                "assembled",
                "quantity",
                "campaign_assemblies",
                "campaign_id = $1",
                "lab_id",
            ),
            sum(
                "delivered",
                "quantity",
                "campaign_deliveries",
                "campaign_id = $1",
                "lab_id",
            ),
        ];
        let rows = sqlx::query(&parts.join(" UNION ALL "))
            .bind(id.0)
            .fetch_all(&self.pool)
            .await?;
        let names = sqlx::query("SELECT id, name FROM labs ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut by_lab: BTreeMap<i64, Counts> = BTreeMap::new();
        for row in &rows {
            let counts = by_lab.entry(row.try_get("lab_id")?).or_default();
            let n: i64 = row.try_get("n")?;
            match row.try_get::<String, _>("what")?.as_str() {
                "requested" => counts.requested += n,
                "pledged" => counts.pledged += n,
                "produced" => counts.produced += n,
                "received" => counts.received += n,
                "accepted" => counts.accepted += n,
                "rejected" => counts.rejected += n,
                "assembled" => counts.assembled += n,
                "delivered" => counts.delivered += n,
                other => return Err(StoreError::Corrupt(format!("count {other}"))),
            }
        }
        let mut total = Counts::default();
        let mut labs = Vec::new();
        for row in &names {
            let lab: i64 = row.try_get("id")?;
            if let Some(counts) = by_lab.get(&lab) {
                total.requested += counts.requested;
                total.pledged += counts.pledged;
                total.produced += counts.produced;
                total.received += counts.received;
                total.accepted += counts.accepted;
                total.rejected += counts.rejected;
                total.assembled += counts.assembled;
                total.delivered += counts.delivered;
                labs.push(LabCounts {
                    lab: LabId(lab),
                    lab_name: row.try_get("name")?,
                    counts: *counts,
                });
            }
        }
        Ok((total, labs))
    }

    // --- Model files ----------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_campaign_file(
        &self,
        campaign: CampaignId,
        lab: LabId,
        file_name: &str,
        stored_name: &str,
        sha256: &str,
        content: &[u8],
        analysis: &FileSummary,
        by: UserId,
        now: i64,
    ) -> StoreResult<FileId> {
        let row = sqlx::query(
            "INSERT INTO campaign_files (campaign_id, lab_id, file_name, stored_name, size_bytes, sha256, content, \
             analysis, estimate_s, findings, uploaded_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .bind(file_name)
        .bind(stored_name)
        .bind(i64::try_from(content.len()).unwrap_or(i64::MAX))
        .bind(sha256)
        .bind(content)
        .bind(
            serde_json::to_string(analysis)
                .map_err(|e| StoreError::Corrupt(format!("file analysis: {e}")))?,
        )
        .bind(analysis.estimate_s())
        .bind(i64::try_from(analysis.issues().len()).unwrap_or(i64::MAX))
        .bind(by.0)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(FileId(row.try_get("id")?))
    }

    pub async fn campaign_files(&self, campaign: CampaignId) -> StoreResult<Vec<ModelFile>> {
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} WHERE f.campaign_id = $1 ORDER BY f.id"
        ))
        .bind(campaign.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    pub async fn campaign_file(&self, id: FileId) -> StoreResult<ModelFile> {
        let row = sqlx::query(&format!("SELECT {FILE_COLUMNS} WHERE f.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        file_from_row(&row)
    }

    pub async fn campaign_file_content(&self, id: FileId) -> StoreResult<Vec<u8>> {
        let row = sqlx::query("SELECT content FROM campaign_files WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row.try_get("content")?)
    }

    pub async fn validate_campaign_file(
        &self,
        id: FileId,
        by: UserId,
        note: &str,
        parts_per_print: i64,
        now: i64,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE campaign_files SET validated_at = $1, validated_by = $2, validation_note = $3, \
             parts_per_print = $4 WHERE id = $5",
        )
        .bind(now)
        .bind(by.0)
        .bind(note)
        .bind(parts_per_print)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        one_row(done, "campaign_file")
    }

    // --- Lab prints -----------------------------------------------------------------------

    /// Creates one job per print of a validated file, already analysed, each in `state`
    /// (queued, or waiting for approval, as the fit rule decided) and recorded as a campaign
    /// print of this lab. One transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_campaign_prints(
        &self,
        campaign: CampaignId,
        file: &ModelFile,
        lab: LabId,
        owner: UserId,
        prints: &[NewPrint],
        (state, note): (JobState, &str),
        now: i64,
    ) -> StoreResult<Vec<JobId>> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_open()
            .map_err(refused)?;
        let state = state.as_str();
        let analysis = file
            .analysis
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("file analysis: {e}")))?;
        let mut ids = Vec::new();
        for print in prints {
            let row = sqlx::query(
                "INSERT INTO jobs (owner_id, file_name, stored_name, size_bytes, sha256, state, state_reason, \
                 analysis, estimate_s, campaign_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
            )
            .bind(owner.0)
            .bind(&file.file_name)
            .bind(&print.stored_name)
            .bind(file.size_bytes)
            .bind(&file.sha256)
            .bind(state)
            .bind(note)
            .bind(analysis.as_deref())
            .bind(file.estimate_s)
            .bind(campaign.0)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let id: i64 = row.try_get("id")?;
            sqlx::query(
                "INSERT INTO job_events (job_id, at, actor_id, from_state, to_state, note) \
                 VALUES ($1, $2, $3, NULL, 'submitted', 'campagne'), ($1, $2, NULL, 'submitted', $4, $5)",
            )
            .bind(id)
            .bind(now)
            .bind(owner.0)
            .bind(state)
            .bind(note)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO campaign_prints (job_id, campaign_id, file_id, lab_id, parts) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(campaign.0)
            .bind(file.id.0)
            .bind(lab.0)
            .bind(file.parts_per_print)
            .execute(&mut *tx)
            .await?;
            ids.push(JobId(id));
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// This lab's campaign prints: (waiting or running, parts of finished prints not yet
    /// collected into a batch).
    pub async fn campaign_prints_status(
        &self,
        campaign: CampaignId,
        lab: LabId,
    ) -> StoreResult<(i64, i64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN j.state IN ('submitted', 'needs_approval', 'queued', 'running', 'paused') \
             THEN 1 ELSE 0 END), 0) AS BIGINT) AS waiting, \
             CAST(COALESCE(SUM(CASE WHEN j.state = 'done' AND p.batch_id IS NULL THEN p.parts ELSE 0 END), 0) AS BIGINT) AS done \
             FROM campaign_prints p JOIN jobs j ON j.id = p.job_id WHERE p.campaign_id = $1 AND p.lab_id = $2",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("waiting")?, row.try_get("done")?))
    }

    /// Gathers this lab's finished campaign prints not yet collected into one lab batch,
    /// waiting for reception and its quality check like a maker's batch.
    pub async fn collect_lab_prints(
        &self,
        campaign: CampaignId,
        lab: LabId,
        collection_point: &str,
        now: i64,
    ) -> StoreResult<BatchId> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_running()
            .map_err(refused)?;
        let ready =
            "p.campaign_id = $1 AND p.lab_id = $2 AND p.batch_id IS NULL AND j.state = 'done'";
        let row = sqlx::query(&format!(
            "SELECT CAST(COALESCE(SUM(p.parts), 0) AS BIGINT) AS n FROM campaign_prints p \
             JOIN jobs j ON j.id = p.job_id WHERE {ready}"
        ))
        .bind(campaign.0)
        .bind(lab.0)
        .fetch_one(&mut *tx)
        .await?;
        let parts: i64 = row.try_get("n")?;
        if parts == 0 {
            return Err(refused(CampaignRefusal::NoPrintsToCollect));
        }
        let row = sqlx::query(
            "INSERT INTO campaign_batches (campaign_id, lab_id, source, quantity, declared_at, collection_point, dropped_at) \
             VALUES ($1, $2, 'lab', $3, $4, $5, $4) RETURNING id",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .bind(parts)
        .bind(now)
        .bind(collection_point)
        .fetch_one(&mut *tx)
        .await?;
        let batch: i64 = row.try_get("id")?;
        sqlx::query(
            "UPDATE campaign_prints SET batch_id = $3 WHERE campaign_id = $1 AND lab_id = $2 AND batch_id IS NULL \
             AND job_id IN (SELECT id FROM jobs WHERE state = 'done')",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(BatchId(batch))
    }

    // --- Materials and stock ----------------------------------------------------------------

    pub async fn insert_material(
        &self,
        campaign: CampaignId,
        input: &MaterialInput,
        now: i64,
    ) -> StoreResult<MaterialId> {
        let row = sqlx::query(
            "INSERT INTO campaign_materials (campaign_id, name, unit, per_item, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
        )
        .bind(campaign.0)
        .bind(&input.name)
        .bind(&input.unit)
        .bind(input.per_item)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(conflict("material_name"))?;
        Ok(MaterialId(row.try_get("id")?))
    }

    /// The bill of materials with what `lab` holds of each.
    pub async fn materials(&self, campaign: CampaignId, lab: LabId) -> StoreResult<Vec<Material>> {
        materials_in(&self.pool, campaign, lab).await
    }

    /// Records a donation and adds it to the lab's stock, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_donation(
        &self,
        campaign: CampaignId,
        material: MaterialId,
        lab: LabId,
        donor: &str,
        quantity: i64,
        by: UserId,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_running()
            .map_err(refused)?;
        let known =
            sqlx::query("SELECT id FROM campaign_materials WHERE id = $1 AND campaign_id = $2")
                .bind(material.0)
                .bind(campaign.0)
                .fetch_optional(&mut *tx)
                .await?;
        if known.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO campaign_donations (campaign_id, material_id, lab_id, donor, quantity, recorded_by, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(campaign.0)
        .bind(material.0)
        .bind(lab.0)
        .bind(donor)
        .bind(quantity)
        .bind(by.0)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO campaign_stock (material_id, lab_id, quantity) VALUES ($1, $2, $3) \
             ON CONFLICT (material_id, lab_id) DO UPDATE SET quantity = campaign_stock.quantity + excluded.quantity",
        )
        .bind(material.0)
        .bind(lab.0)
        .bind(quantity)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn donations(&self, campaign: CampaignId) -> StoreResult<Vec<Donation>> {
        let rows = sqlx::query(
            "SELECT m.name, m.unit, l.name AS lab_name, d.donor, d.quantity, d.received_at FROM campaign_donations d \
             JOIN campaign_materials m ON m.id = d.material_id JOIN labs l ON l.id = d.lab_id \
             WHERE d.campaign_id = $1 ORDER BY d.received_at DESC, d.id DESC",
        )
        .bind(campaign.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Donation {
                    material_name: r.try_get("name")?,
                    unit: r.try_get("unit")?,
                    lab_name: r.try_get("lab_name")?,
                    donor: r.try_get("donor")?,
                    quantity: r.try_get("quantity")?,
                    received_at: ts(r.try_get("received_at")?)?,
                })
            })
            .collect()
    }

    /// Per material and lab: (donated, consumed, stock), for checking that the stock is the
    /// balance of its records.
    pub async fn stock_ledger(
        &self,
        campaign: CampaignId,
    ) -> StoreResult<Vec<(MaterialId, LabId, i64, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT s.material_id, s.lab_id, s.quantity, \
             (SELECT CAST(COALESCE(SUM(d.quantity), 0) AS BIGINT) FROM campaign_donations d \
              WHERE d.material_id = s.material_id AND d.lab_id = s.lab_id) AS donated, \
             (SELECT CAST(COALESCE(SUM(am.quantity), 0) AS BIGINT) FROM campaign_assembly_materials am \
              JOIN campaign_assemblies a ON a.id = am.assembly_id \
              WHERE am.material_id = s.material_id AND a.lab_id = s.lab_id) AS consumed \
             FROM campaign_stock s JOIN campaign_materials m ON m.id = s.material_id WHERE m.campaign_id = $1",
        )
        .bind(campaign.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    MaterialId(r.try_get("material_id")?),
                    LabId(r.try_get("lab_id")?),
                    r.try_get("donated")?,
                    r.try_get("consumed")?,
                    r.try_get("quantity")?,
                ))
            })
            .collect()
    }

    // --- Requests ---------------------------------------------------------------------------

    /// Public form submissions from `ip` since `since`: how many, and the oldest's time.
    pub async fn request_submissions_since(
        &self,
        ip: &str,
        since: i64,
    ) -> StoreResult<(i64, Option<i64>)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM request_submissions WHERE ip = $1 AND at >= $2",
        )
        .bind(ip)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }

    /// Records a request from the public form with the hash of its follow link, and the
    /// submission for the rate limit (forgetting submissions older than `forget_before`).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_request(
        &self,
        campaign: CampaignId,
        lab: LabId,
        input: &RequestInput,
        follow_hash: &str,
        ip: &str,
        forget_before: i64,
        now: i64,
    ) -> StoreResult<RequestId> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_open()
            .map_err(refused)?;
        let row = sqlx::query(
            "INSERT INTO campaign_requests (campaign_id, lab_id, organisation, kind, quantity, needed_by, delivery_place, \
             contact_name, contact_phone, contact_email, status, follow_token, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'new', $11, $12) RETURNING id",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .bind(&input.organisation)
        .bind(input.kind.as_str())
        .bind(input.quantity)
        .bind(input.needed_by.to_string())
        .bind(&input.delivery_place)
        .bind(&input.contact.name)
        .bind(&input.contact.phone)
        .bind(&input.contact.email)
        .bind(follow_hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM request_submissions WHERE at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO request_submissions (ip, at) VALUES ($1, $2)")
            .bind(ip)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RequestId(row.try_get("id")?))
    }

    /// A campaign's requests: the ones to decide first, then by priority and date needed.
    pub async fn requests(&self, campaign: CampaignId) -> StoreResult<Vec<Request>> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} WHERE r.campaign_id = $1 ORDER BY \
             CASE r.status WHEN 'new' THEN 0 WHEN 'accepted' THEN 1 WHEN 'refused' THEN 2 ELSE 3 END, \
             r.priority DESC, r.needed_by, r.id"
        ))
        .bind(campaign.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request_from_row).collect()
    }

    pub async fn request(&self, id: RequestId) -> StoreResult<Request> {
        let row = sqlx::query(&format!("SELECT {REQUEST_COLUMNS} WHERE r.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        request_from_row(&row)
    }

    /// Accepts or refuses a request that is new (or, to refuse, accepted with nothing
    /// delivered yet).
    pub async fn decide_request(
        &self,
        campaign: CampaignId,
        id: RequestId,
        to: RequestStatus,
        reason: &str,
        by: UserId,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_running()
            .map_err(refused)?;
        let (status, delivered) = request_state(&mut tx, campaign, id).await?;
        let allowed = match to {
            RequestStatus::Accepted => status == RequestStatus::New,
            RequestStatus::Refused => {
                matches!(status, RequestStatus::New | RequestStatus::Accepted) && delivered == 0
            }
            _ => false,
        };
        if !allowed {
            return Err(refused(CampaignRefusal::RequestDecided));
        }
        sqlx::query(
            "UPDATE campaign_requests SET status = $1, refusal_reason = $2, decided_at = $3, decided_by = $4 WHERE id = $5",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(now)
        .bind(by.0)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_request_priority(
        &self,
        campaign: CampaignId,
        id: RequestId,
        priority: i32,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE campaign_requests SET priority = $1 WHERE id = $2 AND campaign_id = $3 AND status IN ('new', 'accepted')",
        )
        .bind(i64::from(priority))
        .bind(id.0)
        .bind(campaign.0)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(refused(CampaignRefusal::RequestDecided));
        }
        Ok(())
    }

    /// Replaces a request with nothing delivered by two requests of `first` and the rest,
    /// with its status, priority and contact. The original stays, marked `split`.
    pub async fn split_request(
        &self,
        campaign: CampaignId,
        id: RequestId,
        first: i64,
        by: UserId,
        now: i64,
    ) -> StoreResult<(RequestId, RequestId)> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_running()
            .map_err(refused)?;
        let (status, delivered) = request_state(&mut tx, campaign, id).await?;
        if !matches!(status, RequestStatus::New | RequestStatus::Accepted) || delivered > 0 {
            return Err(refused(CampaignRefusal::RequestDecided));
        }
        let row = sqlx::query("SELECT quantity FROM campaign_requests WHERE id = $1")
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await?;
        let quantity: i64 = row.try_get("quantity")?;
        if first < 1 || first >= quantity {
            return Err(refused(CampaignRefusal::SplitQuantity {
                max: quantity - 1,
            }));
        }
        sqlx::query(
            "UPDATE campaign_requests SET status = 'split', decided_at = $1, decided_by = $2 WHERE id = $3",
        )
        .bind(now)
        .bind(by.0)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        let mut parts = Vec::new();
        for part in [first, quantity - first] {
            let row = sqlx::query(
                "INSERT INTO campaign_requests (campaign_id, lab_id, parent_id, root_id, organisation, kind, quantity, \
                 needed_by, delivery_place, contact_name, contact_phone, contact_email, status, priority, created_at, \
                 decided_at, decided_by) \
                 SELECT campaign_id, lab_id, id, COALESCE(root_id, id), organisation, kind, $2, needed_by, delivery_place, \
                 contact_name, contact_phone, contact_email, $3, priority, $4, $4, $5 FROM campaign_requests WHERE id = $1 \
                 RETURNING id",
            )
            .bind(id.0)
            .bind(part)
            .bind(status.as_str())
            .bind(now)
            .bind(by.0)
            .fetch_one(&mut *tx)
            .await?;
            parts.push(RequestId(row.try_get("id")?));
        }
        tx.commit().await?;
        Ok((parts[0], parts[1]))
    }

    /// What the follow link of a request shows: its parts (itself, or what it was split
    /// into), without contact details.
    pub async fn request_follow(&self, follow_hash: &str) -> StoreResult<RequestFollow> {
        let root = sqlx::query(
            "SELECT r.id, r.campaign_id, c.title, c.item, c.item_plural, c.item_gender, r.organisation \
             FROM campaign_requests r \
             JOIN campaigns c ON c.id = r.campaign_id WHERE r.follow_token = $1",
        )
        .bind(follow_hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let id: i64 = root.try_get("id")?;
        let rows = sqlx::query(
            "SELECT r.quantity, r.needed_by, r.status, r.refusal_reason, \
             (SELECT CAST(COALESCE(SUM(d.quantity), 0) AS BIGINT) FROM campaign_deliveries d WHERE d.request_id = r.id) \
             AS delivered FROM campaign_requests r WHERE (r.id = $1 OR r.root_id = $1) AND r.status <> 'split' \
             ORDER BY r.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(RequestFollow {
            campaign: CampaignId(root.try_get("campaign_id")?),
            campaign_title: root.try_get("title")?,
            item: item_from_row(&root)?,
            organisation: root.try_get("organisation")?,
            parts: rows
                .iter()
                .map(|r| {
                    Ok(FollowPart {
                        quantity: r.try_get("quantity")?,
                        needed_by: date("needed_by", &r.try_get::<String, _>("needed_by")?)?,
                        status: parse_word("status", &r.try_get::<String, _>("status")?)?,
                        refusal_reason: r.try_get("refusal_reason")?,
                        delivered: r.try_get("delivered")?,
                    })
                })
                .collect::<StoreResult<_>>()?,
        })
    }

    // --- Pledges and batches ----------------------------------------------------------------

    pub async fn insert_pledge(
        &self,
        campaign: CampaignId,
        lab: LabId,
        maker: UserId,
        input: &PledgeInput,
        now: i64,
    ) -> StoreResult<PledgeId> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_open()
            .map_err(refused)?;
        let row = sqlx::query(
            "INSERT INTO campaign_pledges (campaign_id, lab_id, maker_id, quantity, due_by, place, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .bind(maker.0)
        .bind(input.quantity)
        .bind(input.due_by.to_string())
        .bind(input.place.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PledgeId(row.try_get("id")?))
    }

    /// Pledges of a campaign, of one maker or of everyone.
    pub async fn pledges(
        &self,
        campaign: CampaignId,
        maker: Option<UserId>,
    ) -> StoreResult<Vec<Pledge>> {
        let rows = sqlx::query(&format!(
            "SELECT {PLEDGE_COLUMNS} WHERE p.campaign_id = $1 AND ($2 = 0 OR p.maker_id = $2) ORDER BY p.due_by, p.id"
        ))
        .bind(campaign.0)
        .bind(maker.map_or(0, |m| m.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pledge_from_row).collect()
    }

    pub async fn insert_maker_batch(
        &self,
        campaign: CampaignId,
        lab: LabId,
        maker: UserId,
        pledge: Option<PledgeId>,
        quantity: i64,
        now: i64,
    ) -> StoreResult<BatchId> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_running()
            .map_err(refused)?;
        if let Some(pledge) = pledge {
            let mine = sqlx::query(
                "SELECT id FROM campaign_pledges WHERE id = $1 AND campaign_id = $2 AND maker_id = $3",
            )
            .bind(pledge.0)
            .bind(campaign.0)
            .bind(maker.0)
            .fetch_optional(&mut *tx)
            .await?;
            if mine.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        let row = sqlx::query(
            "INSERT INTO campaign_batches (campaign_id, lab_id, source, maker_id, pledge_id, quantity, declared_at) \
             VALUES ($1, $2, 'maker', $3, $4, $5, $6) RETURNING id",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .bind(maker.0)
        .bind(pledge.map(|p| p.0))
        .bind(quantity)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(BatchId(row.try_get("id")?))
    }

    /// The maker says where they left the batch; possible until it is received.
    pub async fn drop_batch(&self, id: BatchId, point: &str, now: i64) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE campaign_batches SET collection_point = $1, dropped_at = $2 WHERE id = $3 AND received_at IS NULL",
        )
        .bind(point)
        .bind(now)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(refused(CampaignRefusal::AlreadyReceived));
        }
        Ok(())
    }

    /// Batches of a campaign, of one maker or of everyone, newest first.
    pub async fn batches(
        &self,
        campaign: CampaignId,
        maker: Option<UserId>,
    ) -> StoreResult<Vec<Batch>> {
        let rows = sqlx::query(&format!(
            "SELECT {BATCH_COLUMNS} WHERE b.campaign_id = $1 AND ($2 = 0 OR b.maker_id = $2) ORDER BY b.id DESC"
        ))
        .bind(campaign.0)
        .bind(maker.map_or(0, |m| m.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch_from_row).collect()
    }

    pub async fn batch(&self, id: BatchId) -> StoreResult<Batch> {
        let row = sqlx::query(&format!("SELECT {BATCH_COLUMNS} WHERE b.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        batch_from_row(&row)
    }

    /// A manager counts what arrived; the batch now belongs to the receiving lab.
    pub async fn receive_batch(
        &self,
        campaign: CampaignId,
        id: BatchId,
        lab: LabId,
        quantity: i64,
        by: UserId,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_running()
            .map_err(refused)?;
        let done = sqlx::query(
            "UPDATE campaign_batches SET received_quantity = $1, received_at = $2, received_by = $3, lab_id = $4 \
             WHERE id = $5 AND campaign_id = $6 AND received_at IS NULL",
        )
        .bind(quantity)
        .bind(now)
        .bind(by.0)
        .bind(lab.0)
        .bind(id.0)
        .bind(campaign.0)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(refused(CampaignRefusal::AlreadyReceived));
        }
        tx.commit().await?;
        Ok(())
    }

    /// The quality check: `accepted` of the received parts are good, the rest rejected for
    /// `reason`. The accepted parts become available for assembly.
    pub async fn check_batch(
        &self,
        campaign: CampaignId,
        id: BatchId,
        accepted: i64,
        reason: &str,
        by: UserId,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_running()
            .map_err(refused)?;
        let row = sqlx::query(
            "SELECT received_quantity, checked_at FROM campaign_batches WHERE id = $1 AND campaign_id = $2",
        )
        .bind(id.0)
        .bind(campaign.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let received: Option<i64> = row.try_get("received_quantity")?;
        let Some(received) = received else {
            return Err(refused(CampaignRefusal::NotReceived));
        };
        if row.try_get::<Option<i64>, _>("checked_at")?.is_some() {
            return Err(refused(CampaignRefusal::AlreadyChecked));
        }
        if accepted > received {
            return Err(refused(CampaignRefusal::AcceptedMoreThanReceived {
                received,
            }));
        }
        sqlx::query(
            "UPDATE campaign_batches SET accepted_quantity = $1, parts_left = $1, rejection_reason = $2, checked_at = $3, \
             checked_by = $4 WHERE id = $5",
        )
        .bind(accepted)
        .bind(reason)
        .bind(now)
        .bind(by.0)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // --- Assembly and delivery ------------------------------------------------------------

    /// Assembles `quantity` items in `lab`: one accepted part each, drawn from the lab's
    /// batches in the order they were checked, and the bill of materials from the lab's
    /// stock. Refused, with what is missing, when the parts or the stock do not suffice.
    pub async fn assemble(
        &self,
        campaign: CampaignId,
        lab: LabId,
        quantity: i64,
        by: UserId,
        now: i64,
    ) -> StoreResult<AssemblyId> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_running()
            .map_err(refused)?;
        let materials = materials_in(&mut *tx, campaign, lab).await?;
        let rows = sqlx::query(
            "SELECT id, parts_left FROM campaign_batches WHERE campaign_id = $1 AND lab_id = $2 AND parts_left > 0 \
             ORDER BY checked_at, id",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .fetch_all(&mut *tx)
        .await?;
        let batches = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("id")?,
                    r.try_get::<i64, _>("parts_left")?,
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let Some(parts) = draw_in_order(&batches, quantity) else {
            let available = batches.iter().map(|b| b.1).sum();
            return Err(refused(CampaignRefusal::NotEnoughParts { available }));
        };
        check_stock(&materials, quantity).map_err(refused)?;
        let row = sqlx::query(
            "INSERT INTO campaign_assemblies (campaign_id, lab_id, quantity, items_left, assembled_by, assembled_at) \
             VALUES ($1, $2, $3, $3, $4, $5) RETURNING id",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .bind(quantity)
        .bind(by.0)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let assembly: i64 = row.try_get("id")?;
        for (batch, n) in parts {
            let done = sqlx::query(
                "UPDATE campaign_batches SET parts_left = parts_left - $1 WHERE id = $2 AND parts_left >= $1",
            )
            .bind(n)
            .bind(batch)
            .execute(&mut *tx)
            .await?;
            one_row(done, "parts")?;
            sqlx::query(
                "INSERT INTO campaign_assembly_parts (assembly_id, batch_id, quantity) VALUES ($1, $2, $3)",
            )
            .bind(assembly)
            .bind(batch)
            .bind(n)
            .execute(&mut *tx)
            .await?;
        }
        for m in &materials {
            let n = m.per_item * quantity;
            let done = sqlx::query(
                "UPDATE campaign_stock SET quantity = quantity - $1 WHERE material_id = $2 AND lab_id = $3 \
                 AND quantity >= $1",
            )
            .bind(n)
            .bind(m.id.0)
            .bind(lab.0)
            .execute(&mut *tx)
            .await?;
            one_row(done, "stock")?;
            sqlx::query(
                "INSERT INTO campaign_assembly_materials (assembly_id, material_id, quantity) VALUES ($1, $2, $3)",
            )
            .bind(assembly)
            .bind(m.id.0)
            .bind(n)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(AssemblyId(assembly))
    }

    pub async fn assemblies(&self, campaign: CampaignId) -> StoreResult<Vec<Assembly>> {
        let rows = sqlx::query(
            "SELECT a.id, l.name AS lab_name, a.quantity, a.items_left, u.display_name, a.assembled_at \
             FROM campaign_assemblies a JOIN labs l ON l.id = a.lab_id JOIN users u ON u.id = a.assembled_by \
             WHERE a.campaign_id = $1 ORDER BY a.id DESC",
        )
        .bind(campaign.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Assembly {
                    id: AssemblyId(r.try_get("id")?),
                    lab_name: r.try_get("lab_name")?,
                    quantity: r.try_get("quantity")?,
                    items_left: r.try_get("items_left")?,
                    assembled_by_name: r.try_get("display_name")?,
                    assembled_at: ts(r.try_get("assembled_at")?)?,
                })
            })
            .collect()
    }

    /// Per assembly: (quantity, items left, items delivered from it), for the invariants.
    pub async fn assembly_ledger(&self, campaign: CampaignId) -> StoreResult<Vec<(i64, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT a.quantity, a.items_left, (SELECT CAST(COALESCE(SUM(di.quantity), 0) AS BIGINT) \
             FROM campaign_delivery_items di WHERE di.assembly_id = a.id) AS delivered, \
             (SELECT CAST(COALESCE(SUM(ap.quantity), 0) AS BIGINT) FROM campaign_assembly_parts ap \
             WHERE ap.assembly_id = a.id) AS parts FROM campaign_assemblies a WHERE a.campaign_id = $1",
        )
        .bind(campaign.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let parts: i64 = r.try_get("parts")?;
                let quantity: i64 = r.try_get("quantity")?;
                if parts != quantity {
                    return Err(StoreError::Corrupt(format!(
                        "assembly of {quantity} items with {parts} parts"
                    )));
                }
                Ok((quantity, r.try_get("items_left")?, r.try_get("delivered")?))
            })
            .collect()
    }

    /// Per batch: (accepted, parts left, parts used by assemblies), for the invariants.
    pub async fn batch_ledger(&self, campaign: CampaignId) -> StoreResult<Vec<(i64, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT COALESCE(b.accepted_quantity, 0) AS accepted, b.parts_left, \
             (SELECT CAST(COALESCE(SUM(ap.quantity), 0) AS BIGINT) FROM campaign_assembly_parts ap \
             WHERE ap.batch_id = b.id) AS used FROM campaign_batches b WHERE b.campaign_id = $1",
        )
        .bind(campaign.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("accepted")?,
                    r.try_get("parts_left")?,
                    r.try_get("used")?,
                ))
            })
            .collect()
    }

    /// Delivers items assembled in `lab` to an accepted request, drawn from the lab's
    /// assemblies oldest first, never more than the request still needs. Two managers
    /// delivering at once wait for each other on the campaign's lock; the second sees what
    /// the first took.
    pub async fn deliver(
        &self,
        campaign: CampaignId,
        lab: LabId,
        input: &DeliveryInput,
        by: UserId,
        now: i64,
    ) -> StoreResult<DeliveryId> {
        let mut tx = self.begin_write().await?;
        lock_campaign(&mut tx, campaign, now)
            .await?
            .require_running()
            .map_err(refused)?;
        let (status, delivered) = request_state(&mut tx, campaign, input.request).await?;
        if status != RequestStatus::Accepted {
            return Err(refused(CampaignRefusal::RequestNotAccepted));
        }
        let row = sqlx::query("SELECT quantity FROM campaign_requests WHERE id = $1")
            .bind(input.request.0)
            .fetch_one(&mut *tx)
            .await?;
        let remaining = row.try_get::<i64, _>("quantity")? - delivered;
        if input.quantity > remaining {
            return Err(refused(CampaignRefusal::MoreThanAsked { remaining }));
        }
        let rows = sqlx::query(
            "SELECT id, items_left FROM campaign_assemblies WHERE campaign_id = $1 AND lab_id = $2 AND items_left > 0 \
             ORDER BY assembled_at, id",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .fetch_all(&mut *tx)
        .await?;
        let assemblies = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("id")?,
                    r.try_get::<i64, _>("items_left")?,
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let Some(items) = draw_in_order(&assemblies, input.quantity) else {
            let available = assemblies.iter().map(|a| a.1).sum();
            return Err(refused(CampaignRefusal::NotEnoughItems { available }));
        };
        let row = sqlx::query(
            "INSERT INTO campaign_deliveries (campaign_id, request_id, lab_id, quantity, delivered_on, delivered_by, \
             recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(campaign.0)
        .bind(input.request.0)
        .bind(lab.0)
        .bind(input.quantity)
        .bind(input.delivered_on.to_string())
        .bind(&input.delivered_by)
        .bind(by.0)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let delivery: i64 = row.try_get("id")?;
        for (assembly, n) in items {
            let done = sqlx::query(
                "UPDATE campaign_assemblies SET items_left = items_left - $1 WHERE id = $2 AND items_left >= $1",
            )
            .bind(n)
            .bind(assembly)
            .execute(&mut *tx)
            .await?;
            one_row(done, "items")?;
            sqlx::query(
                "INSERT INTO campaign_delivery_items (delivery_id, assembly_id, quantity) VALUES ($1, $2, $3)",
            )
            .bind(delivery)
            .bind(assembly)
            .bind(n)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(DeliveryId(delivery))
    }

    pub async fn deliveries(&self, campaign: CampaignId) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} WHERE d.campaign_id = $1 ORDER BY d.delivered_on DESC, d.id DESC"
        ))
        .bind(campaign.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Every path from the deliveries of a campaign (or only those drawing on one batch)
    /// back to batches and makers.
    pub async fn trace(
        &self,
        campaign: CampaignId,
        batch: Option<BatchId>,
    ) -> StoreResult<Vec<TraceLine>> {
        let rows = sqlx::query(&format!(
            "SELECT {TRACE_COLUMNS} WHERE d.campaign_id = $1 AND ($2 = 0 OR b.id = $2) \
             ORDER BY d.delivered_on, d.id, ap.assembly_id, b.id"
        ))
        .bind(campaign.0)
        .bind(batch.map_or(0, |b| b.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(trace_from_row).collect()
    }

    /// The assemblies that took parts of a batch: (assembly, parts taken, items left).
    pub async fn batch_assemblies(
        &self,
        batch: BatchId,
    ) -> StoreResult<Vec<(AssemblyId, i64, Timestamp, i64)>> {
        let rows = sqlx::query(
            "SELECT a.id, ap.quantity, a.assembled_at, a.items_left FROM campaign_assembly_parts ap \
             JOIN campaign_assemblies a ON a.id = ap.assembly_id WHERE ap.batch_id = $1 ORDER BY a.id",
        )
        .bind(batch.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    AssemblyId(r.try_get("id")?),
                    r.try_get("quantity")?,
                    ts(r.try_get("assembled_at")?)?,
                    r.try_get("items_left")?,
                ))
            })
            .collect()
    }

    /// Parts accepted and not yet assembled, in `lab`.
    pub async fn parts_available(&self, campaign: CampaignId, lab: LabId) -> StoreResult<i64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(parts_left), 0) AS BIGINT) AS n FROM campaign_batches \
             WHERE campaign_id = $1 AND lab_id = $2",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Items assembled and not yet delivered, in `lab`.
    pub async fn items_available(&self, campaign: CampaignId, lab: LabId) -> StoreResult<i64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(items_left), 0) AS BIGINT) AS n FROM campaign_assemblies \
             WHERE campaign_id = $1 AND lab_id = $2",
        )
        .bind(campaign.0)
        .bind(lab.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }
}

/// A request's status and what was delivered to it, inside a transaction.
async fn request_state(
    tx: &mut Transaction<'static, Any>,
    campaign: CampaignId,
    id: RequestId,
) -> StoreResult<(RequestStatus, i64)> {
    let row = sqlx::query(
        "SELECT r.status, (SELECT CAST(COALESCE(SUM(d.quantity), 0) AS BIGINT) FROM campaign_deliveries d \
         WHERE d.request_id = r.id) AS delivered FROM campaign_requests r WHERE r.id = $1 AND r.campaign_id = $2",
    )
    .bind(id.0)
    .bind(campaign.0)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    Ok((
        parse_word("status", &row.try_get::<String, _>("status")?)?,
        row.try_get("delivered")?,
    ))
}

async fn materials_in<'e, E>(
    executor: E,
    campaign: CampaignId,
    lab: LabId,
) -> StoreResult<Vec<Material>>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let rows = sqlx::query(
        "SELECT m.id, m.name, m.unit, m.per_item, COALESCE(s.quantity, 0) AS stock FROM campaign_materials m \
         LEFT JOIN campaign_stock s ON s.material_id = m.id AND s.lab_id = $2 WHERE m.campaign_id = $1 ORDER BY m.id",
    )
    .bind(campaign.0)
    .bind(lab.0)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Material {
                id: MaterialId(r.try_get("id")?),
                name: r.try_get("name")?,
                unit: r.try_get("unit")?,
                per_item: r.try_get("per_item")?,
                stock: r.try_get("stock")?,
            })
        })
        .collect()
}
