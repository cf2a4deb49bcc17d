//! Solidarity campaigns in the JSON API: campaigns and their counts (public, no personal
//! data), requests with their contacts (managers only), and a maker's own pledges and
//! batches.

use super::ErrorBody;
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::AppResult;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fabrique_controller::domain::Role;
use fabrique_controller::domain::campaign::{
    Batch, BatchId, Campaign, CampaignId, Counts, Pledge, PledgeId, PledgeInput, Request,
    parse_quantity,
};
use fabrique_controller::lab::now;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/campaigns", get(list_campaigns))
        .route("/campaigns/{id}", get(get_campaign))
        .route("/campaigns/{id}/requests", get(list_requests))
        .route(
            "/campaigns/{id}/pledges",
            get(my_pledges).post(create_pledge),
        )
        .route(
            "/campaigns/{id}/batches",
            get(my_batches).post(declare_batch),
        )
        .route("/campaigns/{id}/batches/{batch}/drop", post(drop_batch))
}

/// Each a sum over the campaign's records.
#[derive(Serialize, ToSchema)]
pub struct CountsDto {
    /// Quantities of requests not refused.
    pub requested: i64,
    pub pledged: i64,
    /// Parts makers declared, plus parts of the lab's finished campaign prints.
    pub produced: i64,
    pub received: i64,
    pub accepted: i64,
    pub rejected: i64,
    pub assembled: i64,
    pub delivered: i64,
}

impl From<&Counts> for CountsDto {
    fn from(c: &Counts) -> Self {
        Self {
            requested: c.requested,
            pledged: c.pledged,
            produced: c.produced,
            received: c.received,
            accepted: c.accepted,
            rejected: c.rejected,
            assembled: c.assembled,
            delivered: c.delivered,
        }
    }
}

/// One lab's part in a campaign run by several labs.
#[derive(Serialize, ToSchema)]
pub struct LabCountsDto {
    pub lab: String,
    pub counts: CountsDto,
    /// Accepted parts not assembled yet.
    pub parts_available: i64,
    /// Assembled items not delivered yet.
    pub items_available: i64,
    /// How many more items the lab's stock of materials allows; null when none is needed.
    pub materials_allow: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CampaignDto {
    pub id: i64,
    pub title: String,
    /// What the campaign makes, singular ("visière").
    pub item: String,
    /// Its plural ("visières").
    pub item_plural: String,
    /// `feminine` or `masculine`: the grammatical gender French sentences agree with.
    pub item_gender: String,
    pub description: String,
    /// The print or cut profile makers use.
    pub profile: String,
    /// `draft` (managers only), `open`, `paused` or `closed`.
    pub state: String,
    pub target_quantity: i64,
    pub collection_points: Vec<String>,
    pub counts: CountsDto,
    pub labs: Vec<LabCountsDto>,
}

async fn campaign_dto(state: &AppState, ctx: &Ctx, c: &Campaign) -> AppResult<CampaignDto> {
    let viewer = ctx.user.as_ref();
    let (counts, per_lab) = state.lab.campaign_counts(viewer, c.id).await?;
    let stock = state.lab.campaign_stock(viewer, c.id).await?;
    let labs = stock
        .iter()
        .filter_map(|s| {
            let counts = per_lab.iter().find(|l| l.lab == s.lab).map(|l| l.counts);
            if counts.is_none() && s.materials.iter().all(|m| m.stock == 0) {
                return None;
            }
            Some(LabCountsDto {
                lab: s.lab_name.clone(),
                counts: CountsDto::from(&counts.unwrap_or_default()),
                parts_available: s.parts_available,
                items_available: s.items_available,
                materials_allow: s.materials_allow,
            })
        })
        .collect();
    Ok(CampaignDto {
        id: c.id.0,
        title: c.title.clone(),
        item: c.item.singular.clone(),
        item_plural: c.item.plural.clone(),
        item_gender: c.item.gender.as_str().into(),
        description: c.description.clone(),
        profile: c.profile.clone(),
        state: c.state.as_str().into(),
        target_quantity: c.target_quantity,
        collection_points: c.collection_points.clone(),
        counts: CountsDto::from(&counts),
        labs,
    })
}

/// Open, paused and closed campaigns with their counts; anyone may read them.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns", security((), ("api_key" = []), ("session" = [])),
    responses((status = 200, body = Vec<CampaignDto>)))]
pub async fn list_campaigns(
    State(state): State<AppState>,
    ctx: Ctx,
) -> AppResult<Json<Vec<CampaignDto>>> {
    let mut all = Vec::new();
    for c in state.lab.campaigns(ctx.user.as_ref()).await? {
        all.push(campaign_dto(&state, &ctx, &c).await?);
    }
    Ok(Json(all))
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)),
    security((), ("api_key" = []), ("session" = [])),
    responses((status = 200, body = CampaignDto), (status = 404, body = ErrorBody)))]
pub async fn get_campaign(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<CampaignDto>> {
    let c = state
        .lab
        .campaign(ctx.user.as_ref(), CampaignId(id))
        .await?;
    Ok(Json(campaign_dto(&state, &ctx, &c).await?))
}

#[derive(Serialize, ToSchema)]
pub struct ContactDto {
    pub name: String,
    pub phone: String,
    pub email: String,
}

/// A recipient organisation's request, with its contact: for managers only.
#[derive(Serialize, ToSchema)]
pub struct RequestDto {
    pub id: i64,
    /// The request this one was split from.
    pub parent_id: Option<i64>,
    pub organisation: String,
    /// `care_home`, `hospital`, `shop`, `school`, `association` or `other`.
    pub kind: String,
    pub quantity: i64,
    /// Local date, `YYYY-MM-DD`.
    pub needed_by: String,
    pub delivery_place: String,
    pub contact: ContactDto,
    /// `new`, `accepted`, `refused` or `split`.
    pub status: String,
    pub priority: i32,
    pub refusal_reason: String,
    pub delivered: i64,
    /// Accepted, and what was delivered reaches what was asked.
    pub fulfilled: bool,
    pub created_at: String,
}

impl From<&Request> for RequestDto {
    fn from(r: &Request) -> Self {
        Self {
            id: r.id.0,
            parent_id: r.parent.map(|p| p.0),
            organisation: r.organisation.clone(),
            kind: r.kind.as_str().into(),
            quantity: r.quantity,
            needed_by: r.needed_by.to_string(),
            delivery_place: r.delivery_place.clone(),
            contact: ContactDto {
                name: r.contact.name.clone(),
                phone: r.contact.phone.clone(),
                email: r.contact.email.clone(),
            },
            status: r.status.as_str().into(),
            priority: r.priority,
            refusal_reason: r.refusal_reason.clone(),
            delivered: r.delivered,
            fulfilled: r.is_fulfilled(),
            created_at: r.created_at.to_string(),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}/requests", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<RequestDto>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_requests(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<Vec<RequestDto>>> {
    let user = ctx.require(Role::Manager)?;
    let requests = state.lab.requests(user, CampaignId(id)).await?;
    Ok(Json(requests.iter().map(RequestDto::from).collect()))
}

#[derive(Serialize, ToSchema)]
pub struct PledgeDto {
    pub id: i64,
    pub quantity: i64,
    pub due_by: String,
    /// `home` or `lab`.
    pub place: String,
    pub lab: String,
    pub created_at: String,
}

impl From<&Pledge> for PledgeDto {
    fn from(p: &Pledge) -> Self {
        Self {
            id: p.id.0,
            quantity: p.quantity,
            due_by: p.due_by.to_string(),
            place: p.place.as_str().into(),
            lab: p.lab_name.clone(),
            created_at: p.created_at.to_string(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PledgeBody {
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
    /// Local date, `YYYY-MM-DD`, today or later.
    #[schema(format = Date)]
    pub due_by: String,
    #[schema(value_type = PlaceWord)]
    pub place: String,
}

/// Where a maker makes their parts.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PlaceWord {
    Home,
    Lab,
}

/// The signed-in maker's pledges to this campaign.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/pledges", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<PledgeDto>), (status = 401, body = ErrorBody)))]
pub async fn my_pledges(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<Vec<PledgeDto>>> {
    let user = ctx.user()?;
    state.lab.campaign(Some(user), CampaignId(id)).await?;
    let pledges = state.lab.my_pledges(user, CampaignId(id)).await?;
    Ok(Json(pledges.iter().map(PledgeDto::from).collect()))
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pledges", tag = "campaigns", params(("id" = i64, Path)), request_body = PledgeBody,
    responses((status = 201, body = PledgeDto), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody, description = "not_open, invalid_input")))]
pub async fn create_pledge(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Json(b): Json<PledgeBody>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let input = PledgeInput::parse(&b.quantity.to_string(), &b.due_by, &b.place)?;
    let pledge = state
        .lab
        .pledge(user, CampaignId(id), &input, now())
        .await?;
    Ok((StatusCode::CREATED, Json(PledgeDto::from(&pledge))).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct BatchDto {
    pub id: i64,
    /// `maker` or `lab` (the lab's own prints).
    pub source: String,
    pub lab: String,
    pub pledge_id: Option<i64>,
    /// As declared by the maker.
    pub quantity: i64,
    pub declared_at: String,
    pub collection_point: String,
    pub dropped_at: Option<String>,
    /// Counted at reception.
    pub received_quantity: Option<i64>,
    /// Good at the quality check; the others are rejected for `rejection_reason`.
    pub accepted_quantity: Option<i64>,
    pub rejected: i64,
    pub rejection_reason: String,
    /// `declared`, `dropped`, `received` or `checked`.
    pub status: String,
}

impl From<&Batch> for BatchDto {
    fn from(b: &Batch) -> Self {
        Self {
            id: b.id.0,
            source: b.source.as_str().into(),
            lab: b.lab_name.clone(),
            pledge_id: b.pledge.map(|p| p.0),
            quantity: b.quantity,
            declared_at: b.declared_at.to_string(),
            collection_point: b.collection_point.clone(),
            dropped_at: b.dropped_at.map(|t| t.to_string()),
            received_quantity: b.received_quantity,
            accepted_quantity: b.accepted_quantity,
            rejected: b.rejected(),
            rejection_reason: b.rejection_reason.clone(),
            status: b.status().as_str().into(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    pub quantity: i64,
    /// One of the maker's pledges to this campaign.
    pub pledge_id: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DropBody {
    /// One of the campaign's collection points.
    pub collection_point: String,
}

/// The signed-in maker's batches in this campaign.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/batches", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<BatchDto>), (status = 401, body = ErrorBody)))]
pub async fn my_batches(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<Vec<BatchDto>>> {
    let user = ctx.user()?;
    state.lab.campaign(Some(user), CampaignId(id)).await?;
    let batches = state.lab.my_batches(user, CampaignId(id)).await?;
    Ok(Json(batches.iter().map(BatchDto::from).collect()))
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/batches", tag = "campaigns", params(("id" = i64, Path)), request_body = BatchBody,
    responses((status = 201, body = BatchDto), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody, description = "not_running, invalid_input")))]
pub async fn declare_batch(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Json(b): Json<BatchBody>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let quantity = parse_quantity("quantity", &b.quantity.to_string())?;
    let batch = state
        .lab
        .declare_batch(
            user,
            CampaignId(id),
            b.pledge_id.map(PledgeId),
            quantity,
            now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(BatchDto::from(&batch))).into_response())
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/batches/{batch}/drop", tag = "campaigns",
    params(("id" = i64, Path), ("batch" = i64, Path)), request_body = DropBody,
    responses((status = 200, body = BatchDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "already_received"),
              (status = 422, body = ErrorBody, description = "unknown_collection_point")))]
pub async fn drop_batch(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, batch)): Path<(i64, i64)>,
    Json(b): Json<DropBody>,
) -> AppResult<Json<BatchDto>> {
    let user = ctx.user()?;
    let batch = state
        .lab
        .drop_batch(
            user,
            CampaignId(id),
            BatchId(batch),
            &b.collection_point,
            now(),
        )
        .await?;
    Ok(Json(BatchDto::from(&batch)))
}
