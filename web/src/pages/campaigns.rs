//! Solidarity campaigns: the public pages (a campaign's progress, the request form and the
//! requester's follow page), the maker's page (model files, pledges, batches, own counts)
//! and the manager's pages (dashboard, requests, batches and assembly, materials,
//! deliveries, a batch's recall list, CSV exports). Every form works without JavaScript and
//! carries its CSRF token; a refused form is shown again with the reason.

use super::{Page, base_url, message, options, render, render_with_status};
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use askama::Template;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use fabrique_controller::campaigns::LabStock;
use fabrique_controller::domain::campaign::{
    Batch, BatchId, BatchSource, Campaign, CampaignId, CampaignInput, CampaignState, Counts,
    DeliveryInput, FileId, ItemName, MaterialId, MaterialInput, PledgeId, PledgeInput, Request,
    RequestId, RequestInput, RequestKind, RequestStatus, WordGender, parse_count, parse_quantity,
};
use fabrique_controller::domain::{Invalid, Role, User};
use fabrique_controller::lab::now;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use std::net::SocketAddr;

/// Model files are kept in the database: smaller than job files.
pub const MAX_MODEL_MB: u64 = 64;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/campaigns", get(list))
        .route("/campaigns/new", get(new_form).post(create))
        .route("/campaigns/{id}", get(public_page))
        .route("/campaigns/{id}/edit", get(edit_form).post(update))
        .route("/campaigns/{id}/state", post(change_state))
        .route(
            "/campaigns/{id}/request",
            get(request_form).post(send_request),
        )
        .route("/requests/{token}", get(follow))
        .route("/campaigns/{id}/contribute", get(contribute))
        .route("/campaigns/{id}/pledges", post(pledge))
        .route(
            "/campaigns/{id}/batches",
            get(batches_page).post(declare_batch),
        )
        .route("/campaigns/{id}/batches/{batch}", get(batch_page))
        .route(
            "/campaigns/{id}/batches/{batch}/{action}",
            post(batch_action),
        )
        .route("/campaigns/{id}/manage", get(manage))
        .route(
            "/campaigns/{id}/files",
            post(upload_file).layer(DefaultBodyLimit::max(
                usize::try_from(MAX_MODEL_MB * 1_048_576).unwrap_or(usize::MAX),
            )),
        )
        .route("/campaigns/{id}/files/{file}", get(download_file))
        .route("/campaigns/{id}/files/{file}/validate", post(validate_file))
        .route("/campaigns/{id}/prints", post(queue_prints))
        .route("/campaigns/{id}/lab-batch", post(collect_prints))
        .route("/campaigns/{id}/requests", get(requests_page))
        .route(
            "/campaigns/{id}/requests/{request}/{action}",
            post(request_action),
        )
        .route("/campaigns/{id}/assemblies", post(assemble))
        .route(
            "/campaigns/{id}/materials",
            get(materials_page).post(add_material),
        )
        .route("/campaigns/{id}/donations", post(donate))
        .route(
            "/campaigns/{id}/deliveries",
            get(deliveries_page).post(deliver),
        )
        .route("/campaigns/{id}/export/{file}", get(export))
}

// --- Shared views ------------------------------------------------------------------------------

/// A campaign as pages show it.
struct CampaignView {
    id: i64,
    title: String,
    description: Vec<String>,
    profile: Vec<String>,
    state: &'static str,
    state_label: String,
    target: i64,
    target_text: String,
    ask: String,
    points: Vec<String>,
}

impl CampaignView {
    fn new(tr: &Tr, c: &Campaign) -> Self {
        let lines = |text: &str| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
        Self {
            id: c.id.0,
            title: c.title.clone(),
            description: lines(&c.description),
            profile: lines(&c.profile),
            state: c.state.as_str(),
            state_label: tr.word("campaign_state", c.state.as_str()),
            target: c.target_quantity,
            target_text: tr.f(
                "campaign.target",
                &[
                    ("target", &c.target_quantity.to_string()),
                    ("item", tr.item(c.target_quantity, &c.item)),
                ],
            ),
            ask: tr.f("campaign.ask", &[("item", &c.item.plural)]),
            points: c.collection_points.clone(),
        }
    }
}

/// One progress bar: a count against the target.
struct Bar {
    id: &'static str,
    label: String,
    value: i64,
    max: i64,
    text: String,
}

fn bars(tr: &Tr, counts: &Counts, target: i64) -> Vec<Bar> {
    [
        ("requested", counts.requested),
        ("pledged", counts.pledged),
        ("produced", counts.produced),
        ("received", counts.received),
        ("accepted", counts.accepted),
        ("assembled", counts.assembled),
        ("delivered", counts.delivered),
    ]
    .into_iter()
    .map(|(id, n)| Bar {
        id,
        label: tr.word("count", id),
        value: n.min(target),
        max: target.max(1),
        text: tr.f(
            "campaign.of_target",
            &[("count", &n.to_string()), ("target", &target.to_string())],
        ),
    })
    .collect()
}

fn tz(settings: &fabrique_controller::domain::calendar::CalendarSettings) -> TimeZone {
    settings.tz()
}

fn day(tz: &TimeZone, at: Timestamp) -> String {
    at.to_zoned(tz.clone()).strftime("%d/%m/%Y").to_string()
}

fn date(d: Date) -> String {
    d.strftime("%d/%m/%Y").to_string()
}

async fn lab_tz(state: &AppState) -> AppResult<TimeZone> {
    Ok(tz(&state.lab.calendar_settings().await?))
}

async fn today(state: &AppState) -> AppResult<Date> {
    Ok(Timestamp::now().to_zoned(lab_tz(state).await?).date())
}

/// A refused form is shown again with the reason (its status); anything else (not found,
/// not allowed, not signed in, internal) propagates.
fn shown(e: &AppError) -> Result<StatusCode, AppError> {
    if e.shown_on_the_form() {
        Ok(e.status)
    } else {
        Err(e.clone())
    }
}

fn stock_allows_text(tr: &Tr, item: &ItemName, allows: Option<i64>) -> Option<String> {
    allows.map(|n| {
        tr.f(
            "campaign.stock_allows",
            &[("count", &n.to_string()), ("item", tr.item(n, item))],
        )
    })
}

/// "12 visières livrées sur 300": the count, the item's name and the participle agreeing
/// with both.
pub(crate) fn delivered_text(tr: &Tr, c: &Campaign, delivered: i64) -> String {
    let key = match c.item.gender {
        WordGender::Feminine => "campaigns.delivered.feminine",
        WordGender::Masculine => "campaigns.delivered.masculine",
    };
    tr.n(
        key,
        delivered,
        &[
            ("target", &c.target_quantity.to_string()),
            ("item", tr.item(delivered, &c.item)),
        ],
    )
}

// --- Public pages --------------------------------------------------------------------------

struct ListRow {
    c: CampaignView,
    delivered: String,
    value: i64,
}

#[derive(Template)]
#[template(path = "campaigns.html")]
struct ListPage {
    p: Page,
    campaigns: Vec<ListRow>,
    manager: bool,
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let viewer = ctx.user.as_ref();
    let mut campaigns = Vec::new();
    for c in state.lab.campaigns(viewer).await? {
        let (counts, _) = state.lab.campaign_counts(viewer, c.id).await?;
        campaigns.push(ListRow {
            delivered: delivered_text(&ctx.tr, &c, counts.delivered),
            value: counts.delivered.min(c.target_quantity),
            c: CampaignView::new(&ctx.tr, &c),
        });
    }
    let p = Page::new(&ctx, "campaigns.title", "campaigns", "/campaigns");
    Ok(render(&ListPage {
        p,
        campaigns,
        manager: ctx
            .user
            .as_ref()
            .is_some_and(|u| u.role.at_least(Role::Manager)),
    })?
    .into_response())
}

#[derive(Template)]
#[template(path = "campaign.html")]
struct PublicPage {
    p: Page,
    c: CampaignView,
    bars: Vec<Bar>,
    stock_allows: Option<String>,
    signed_in: bool,
    manager: bool,
}

async fn public_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let viewer = ctx.user.as_ref();
    let c = state.lab.campaign(viewer, CampaignId(id)).await?;
    let (counts, _) = state.lab.campaign_counts(viewer, c.id).await?;
    let stock = state.lab.campaign_stock(viewer, c.id).await?;
    let allows = if stock.iter().all(|s| s.materials_allow.is_none()) {
        None
    } else {
        Some(stock.iter().filter_map(|s| s.materials_allow).sum())
    };
    let mut p = Page::new(
        &ctx,
        "campaign.title",
        "campaigns",
        &format!("/campaigns/{id}"),
    );
    p.title = c.title.clone();
    Ok(render(&PublicPage {
        stock_allows: stock_allows_text(&ctx.tr, &c.item, allows),
        bars: bars(&ctx.tr, &counts, c.target_quantity),
        c: CampaignView::new(&ctx.tr, &c),
        signed_in: viewer.is_some(),
        manager: viewer.is_some_and(|u| u.role.at_least(Role::Manager)),
        p,
    })?
    .into_response())
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
struct RequestFields {
    organisation: String,
    kind: String,
    quantity: String,
    needed_by: String,
    delivery_place: String,
    contact_name: String,
    contact_phone: String,
    contact_email: String,
}

#[derive(Template)]
#[template(path = "campaign_request.html")]
struct RequestPage {
    p: Page,
    c: CampaignView,
    error: Option<String>,
    f: RequestFields,
    kinds: Vec<(String, String)>,
    today: String,
    intro: String,
    quantity_label: String,
}

async fn request_page(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    f: RequestFields,
    error: Option<String>,
) -> AppResult<RequestPage> {
    let c = state
        .lab
        .campaign(ctx.user.as_ref(), CampaignId(id))
        .await?;
    let mut p = Page::new(
        ctx,
        "request.title",
        "campaigns",
        &format!("/campaigns/{id}/request"),
    );
    p.title = ctx.tr.f("request.title", &[("item", &c.item.plural)]);
    Ok(RequestPage {
        p,
        c: CampaignView::new(&ctx.tr, &c),
        error,
        f,
        kinds: options(&ctx.tr, "request_kind", RequestKind::ALL),
        today: today(state).await?.to_string(),
        intro: ctx.tr.f("request.intro", &[("campaign", &c.title)]),
        quantity_label: ctx.tr.f("request.quantity", &[("item", &c.item.plural)]),
    })
}

async fn request_form(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    Ok(
        render(&request_page(&state, &ctx, id, RequestFields::default(), None).await?)?
            .into_response(),
    )
}

#[derive(Template)]
#[template(path = "campaign_request_sent.html")]
struct RequestSentPage {
    p: Page,
    c: CampaignView,
    follow_url: String,
    sent: String,
}

/// The public form. Nobody needs an account; an address sends at most a few requests an
/// hour; every field is bounded.
async fn send_request(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<RequestFields>,
) -> AppResult<Response> {
    let today = today(&state).await?;
    let result = match RequestInput::parse(
        &f.organisation,
        &f.kind,
        &f.quantity,
        &f.needed_by,
        &f.delivery_place,
        &f.contact_name,
        &f.contact_phone,
        &f.contact_email,
        today,
    ) {
        Ok(input) => state
            .lab
            .submit_request(CampaignId(id), &input, &peer.ip().to_string(), now())
            .await
            .map_err(AppError::from),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(token) => {
            let c = state.lab.campaign(None, CampaignId(id)).await?;
            let mut p = Page::new(
                &ctx,
                "request.sent_title",
                "campaigns",
                &format!("/campaigns/{id}"),
            );
            p.title = ctx.tr.t("request.sent_title").to_string();
            let page = RequestSentPage {
                p,
                sent: ctx.tr.f("request.sent", &[("campaign", &c.title)]),
                c: CampaignView::new(&ctx.tr, &c),
                follow_url: format!("{}/requests/{token}", base_url(&state)),
            };
            Ok(render_with_status(StatusCode::CREATED, &page))
        }
        Err(e) => {
            let status = shown(&e)?;
            let text = message(&ctx.tr, &e);
            let page = request_page(&state, &ctx, id, f, Some(text)).await?;
            Ok(render_with_status(status, &page))
        }
    }
}

struct FollowRow {
    quantity: i64,
    needed_by: String,
    status: String,
    delivered: String,
    reason: String,
    fulfilled: bool,
}

#[derive(Template)]
#[template(path = "request_follow.html")]
struct FollowPage {
    p: Page,
    campaign_id: i64,
    intro: String,
    parts: Vec<FollowRow>,
}

/// What the organisation that asked sees by its secret link: no contact details.
async fn follow(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(token): Path<String>,
) -> AppResult<Response> {
    let f = state.lab.request_follow(&token).await?;
    let mut p = Page::new(
        &ctx,
        "follow.title",
        "campaigns",
        &format!("/requests/{token}"),
    );
    p.title = ctx.tr.f("follow.title", &[("item", &f.item.plural)]);
    let parts = f
        .parts
        .iter()
        .map(|part| FollowRow {
            quantity: part.quantity,
            needed_by: date(part.needed_by),
            status: ctx.tr.word("request_status", part.status.as_str()),
            delivered: ctx.tr.f(
                "follow.delivered",
                &[
                    ("count", &part.delivered.to_string()),
                    ("asked", &part.quantity.to_string()),
                ],
            ),
            reason: part.refusal_reason.clone(),
            fulfilled: part.status == RequestStatus::Accepted && part.delivered >= part.quantity,
        })
        .collect();
    Ok(render(&FollowPage {
        p,
        campaign_id: f.campaign.0,
        intro: ctx.tr.f(
            "follow.intro",
            &[
                ("organisation", &f.organisation),
                ("campaign", &f.campaign_title),
            ],
        ),
        parts,
    })?
    .into_response())
}

// --- Makers -------------------------------------------------------------------------------------

struct FileRow {
    id: i64,
    name: String,
    size: String,
    validated: Option<String>,
    findings: i64,
    parts_per_print: i64,
}

fn file_rows(
    tr: &Tr,
    tz: &TimeZone,
    files: &[fabrique_controller::domain::campaign::ModelFile],
) -> Vec<FileRow> {
    files
        .iter()
        .map(|f| FileRow {
            id: f.id.0,
            name: f.file_name.clone(),
            size: format!("{:.1} Mo", f.size_bytes as f64 / 1_048_576.0),
            validated: f.validated_at.map(|at| {
                tr.f(
                    "files.validated",
                    &[
                        ("date", &day(tz, at)),
                        ("by", f.validated_by_name.as_deref().unwrap_or("")),
                        ("note", &f.validation_note),
                    ],
                )
            }),
            findings: f.findings,
            parts_per_print: f.parts_per_print,
        })
        .collect()
}

struct PledgeRow {
    quantity: i64,
    due_by: String,
    place: String,
    maker: String,
    lab: String,
}

struct BatchRow {
    id: i64,
    who: String,
    lab: String,
    quantity: i64,
    declared: String,
    point: String,
    received: Option<i64>,
    accepted: Option<i64>,
    rejected: i64,
    reason: String,
    status: String,
    can_drop: bool,
    can_receive: bool,
    can_check: bool,
}

fn batch_row(tr: &Tr, tz: &TimeZone, b: &Batch) -> BatchRow {
    BatchRow {
        id: b.id.0,
        who: match (&b.maker_name, b.source) {
            (Some(name), BatchSource::Maker) => name.clone(),
            _ => tr.t("batches.lab_prints").to_string(),
        },
        lab: b.lab_name.clone(),
        quantity: b.quantity,
        declared: day(tz, b.declared_at),
        point: b.collection_point.clone(),
        received: b.received_quantity,
        accepted: b.accepted_quantity,
        rejected: b.rejected(),
        reason: b.rejection_reason.clone(),
        status: tr.word("batch_status", b.status().as_str()),
        can_drop: b.received_at.is_none() && b.source == BatchSource::Maker,
        can_receive: b.received_at.is_none(),
        can_check: b.received_at.is_some() && b.checked_at.is_none(),
    }
}

#[derive(Template)]
#[template(path = "campaign_contribute.html")]
struct ContributePage {
    p: Page,
    error: Option<String>,
    c: CampaignView,
    files: Vec<FileRow>,
    pledges: Vec<(i64, PledgeRow)>,
    batches: Vec<BatchRow>,
    counts: fabrique_controller::domain::campaign::MakerCounts,
    can_pledge: bool,
    can_declare: bool,
    places: Vec<(String, String)>,
    today: String,
}

async fn contribute_page(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    error: Option<String>,
) -> AppResult<ContributePage> {
    let user = ctx.user()?;
    let c = state.lab.campaign(Some(user), CampaignId(id)).await?;
    let tz = lab_tz(state).await?;
    let files = state.lab.campaign_files(user, c.id).await?;
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| f.validated_at.is_some())
        .collect();
    let pledges = state
        .lab
        .my_pledges(user, c.id)
        .await?
        .iter()
        .map(|p| {
            (
                p.id.0,
                PledgeRow {
                    quantity: p.quantity,
                    due_by: date(p.due_by),
                    place: ctx.tr.word("pledge_place", p.place.as_str()),
                    maker: p.maker_name.clone(),
                    lab: p.lab_name.clone(),
                },
            )
        })
        .collect();
    let batches = state
        .lab
        .my_batches(user, c.id)
        .await?
        .iter()
        .map(|b| batch_row(&ctx.tr, &tz, b))
        .collect();
    let counts = state.lab.my_counts(user, c.id).await?;
    let mut p = Page::new(
        ctx,
        "contribute.title",
        "campaigns",
        &format!("/campaigns/{id}/contribute"),
    );
    p.title = ctx.tr.f("contribute.title", &[("campaign", &c.title)]);
    Ok(ContributePage {
        p,
        error,
        files: file_rows(&ctx.tr, &tz, &files),
        pledges,
        batches,
        counts,
        can_pledge: c.state == CampaignState::Open,
        can_declare: c.state.require_running().is_ok(),
        places: options(
            &ctx.tr,
            "pledge_place",
            fabrique_controller::domain::campaign::PledgePlace::ALL,
        ),
        today: today(state).await?.to_string(),
        c: CampaignView::new(&ctx.tr, &c),
    })
}

async fn contribute(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    Ok(render(&contribute_page(&state, &ctx, id, None).await?)?.into_response())
}

/// After a maker's action: back to their page, or the page again with the refusal.
async fn after_contribution(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    result: Result<(), AppError>,
) -> AppResult<Response> {
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/campaigns/{id}/contribute")).into_response()),
        Err(e) => {
            let status = shown(&e)?;
            let page = contribute_page(state, ctx, id, Some(message(&ctx.tr, &e))).await?;
            Ok(render_with_status(status, &page))
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PledgeFields {
    quantity: String,
    due_by: String,
    place: String,
}

async fn pledge(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<PledgeFields>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let result = match PledgeInput::parse(&f.quantity, &f.due_by, &f.place) {
        Ok(input) => state
            .lab
            .pledge(user, CampaignId(id), &input, now())
            .await
            .map(|_| ())
            .map_err(AppError::from),
        Err(e) => Err(e.into()),
    };
    after_contribution(&state, &ctx, id, result).await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct BatchFields {
    quantity: String,
    pledge: String,
    collection_point: String,
    accepted: String,
    reason: String,
}

/// A maker declares a finished batch (POST) — managers see the batches (GET).
async fn declare_batch(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<BatchFields>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let result = async {
        let quantity = parse_quantity("quantity", &f.quantity)?;
        let pledge = match f.pledge.trim() {
            "" => None,
            raw => Some(PledgeId(
                raw.parse().map_err(|_| Invalid::new("pledge", "choice"))?,
            )),
        };
        state
            .lab
            .declare_batch(user, CampaignId(id), pledge, quantity, now())
            .await?;
        Ok::<(), AppError>(())
    }
    .await;
    after_contribution(&state, &ctx, id, result).await
}

/// `drop` (the maker), `receive` and `check` (a manager) on one batch.
async fn batch_action(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, batch, action)): Path<(i64, i64, String)>,
    Form(f): Form<BatchFields>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let campaign = CampaignId(id);
    let batch = BatchId(batch);
    match action.as_str() {
        "drop" => {
            let result = state
                .lab
                .drop_batch(user, campaign, batch, &f.collection_point, now())
                .await
                .map(|_| ())
                .map_err(AppError::from);
            after_contribution(&state, &ctx, id, result).await
        }
        "receive" | "check" => {
            let user = ctx.require(Role::Manager)?;
            let result = async {
                if action == "receive" {
                    let quantity = parse_count("received_quantity", &f.quantity)?;
                    state
                        .lab
                        .receive_batch(user, campaign, batch, quantity, now())
                        .await?;
                } else {
                    let accepted = parse_count("accepted_quantity", &f.accepted)?;
                    state
                        .lab
                        .check_batch(user, campaign, batch, accepted, &f.reason, now())
                        .await?;
                }
                Ok::<(), AppError>(())
            }
            .await;
            after_manager(&state, &ctx, id, Tab::Batches, result).await
        }
        _ => Err(AppError::not_found()),
    }
}

async fn download_file(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, file)): Path<(i64, i64)>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let (f, content) = state
        .lab
        .campaign_file_content(user, CampaignId(id), FileId(file))
        .await?;
    let disposition = crate::app::attachment(&f.file_name);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        content,
    )
        .into_response())
}

// --- Managers: campaign form -----------------------------------------------------------------

#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
struct CampaignFields {
    title: String,
    item: String,
    item_plural: String,
    item_gender: String,
    description: String,
    profile: String,
    target_quantity: String,
    collection_points: String,
}

impl CampaignFields {
    fn from_campaign(c: &Campaign) -> Self {
        Self {
            title: c.title.clone(),
            item: c.item.singular.clone(),
            item_plural: c.item.plural.clone(),
            item_gender: c.item.gender.as_str().into(),
            description: c.description.clone(),
            profile: c.profile.clone(),
            target_quantity: c.target_quantity.to_string(),
            collection_points: c.collection_points.join("\n"),
        }
    }

    fn parse(&self) -> Result<CampaignInput, Invalid> {
        CampaignInput::parse(
            &self.title,
            ItemName::parse(&self.item, &self.item_plural, &self.item_gender)?,
            &self.description,
            &self.profile,
            &self.target_quantity,
            &self.collection_points,
        )
    }
}

#[derive(Template)]
#[template(path = "campaign_form.html")]
struct CampaignForm {
    p: Page,
    error: Option<String>,
    action: String,
    f: CampaignFields,
}

fn campaign_form(
    ctx: &Ctx,
    action: String,
    f: CampaignFields,
    error: Option<String>,
) -> CampaignForm {
    let title = if action.ends_with("new") {
        "campaigns.new"
    } else {
        "campaigns.edit"
    };
    CampaignForm {
        p: Page::new(ctx, title, "campaigns", &action),
        error,
        action,
        f,
    }
}

async fn new_form(ctx: Ctx) -> AppResult<Response> {
    ctx.require(Role::Manager)?;
    let f = CampaignFields {
        target_quantity: "100".into(),
        ..CampaignFields::default()
    };
    Ok(render(&campaign_form(&ctx, "/campaigns/new".into(), f, None))?.into_response())
}

async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(f): Form<CampaignFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = match f.parse() {
        Ok(input) => state
            .lab
            .create_campaign(user, &input, now())
            .await
            .map_err(AppError::from),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(c) => Ok(Redirect::to(&format!("/campaigns/{}/manage", c.id.0)).into_response()),
        Err(e) => {
            let status = shown(&e)?;
            let form = campaign_form(&ctx, "/campaigns/new".into(), f, Some(message(&ctx.tr, &e)));
            Ok(render_with_status(status, &form))
        }
    }
}

async fn edit_form(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let c = state.lab.campaign(Some(user), CampaignId(id)).await?;
    Ok(render(&campaign_form(
        &ctx,
        format!("/campaigns/{id}/edit"),
        CampaignFields::from_campaign(&c),
        None,
    ))?
    .into_response())
}

async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<CampaignFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = match f.parse() {
        Ok(input) => state
            .lab
            .update_campaign(user, CampaignId(id), &input, now())
            .await
            .map_err(AppError::from),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/campaigns/{id}/manage")).into_response()),
        Err(e) => {
            let status = shown(&e)?;
            let form = campaign_form(
                &ctx,
                format!("/campaigns/{id}/edit"),
                f,
                Some(message(&ctx.tr, &e)),
            );
            Ok(render_with_status(status, &form))
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct StateForm {
    state: String,
}

async fn change_state(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<StateForm>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = async {
        let to: CampaignState = f
            .state
            .parse()
            .map_err(|()| Invalid::new("state", "choice"))?;
        state
            .lab
            .set_campaign_state(user, CampaignId(id), to, now())
            .await?;
        Ok::<(), AppError>(())
    }
    .await;
    after_manager(&state, &ctx, id, Tab::Dashboard, result).await
}

// --- Managers: the pages of a campaign ---------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    Dashboard,
    Requests,
    Batches,
    Materials,
    Deliveries,
}

/// After a manager's action: back to the page it came from, or that page again with the
/// refusal.
async fn after_manager(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    tab: Tab,
    result: Result<(), AppError>,
) -> AppResult<Response> {
    let path = match tab {
        Tab::Dashboard => "manage",
        Tab::Requests => "requests",
        Tab::Batches => "batches",
        Tab::Materials => "materials",
        Tab::Deliveries => "deliveries",
    };
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/campaigns/{id}/{path}")).into_response()),
        Err(e) => {
            let status = shown(&e)?;
            let error = Some(message(&ctx.tr, &e));
            let mut response = match tab {
                Tab::Dashboard => {
                    render(&manage_page(state, ctx, id, error).await?)?.into_response()
                }
                Tab::Requests => {
                    render(&requests_view(state, ctx, id, error).await?)?.into_response()
                }
                Tab::Batches => {
                    render(&batches_view(state, ctx, id, error).await?)?.into_response()
                }
                Tab::Materials => {
                    render(&materials_view(state, ctx, id, error).await?)?.into_response()
                }
                Tab::Deliveries => {
                    render(&deliveries_view(state, ctx, id, error).await?)?.into_response()
                }
            };
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

/// The campaign, for a manager's page.
async fn managed(state: &AppState, ctx: &Ctx, id: i64) -> AppResult<(User, Campaign)> {
    let user = ctx.require(Role::Manager)?.clone();
    let c = state.lab.campaign(Some(&user), CampaignId(id)).await?;
    Ok((user, c))
}

fn manager_page(ctx: &Ctx, key: &str, c: &Campaign, path: &str) -> Page {
    let mut p = Page::new(ctx, "manage.title", "campaigns", path);
    p.title = ctx.tr.f(key, &[("campaign", &c.title)]);
    p
}

struct LabRow {
    name: String,
    counts: Counts,
    parts_available: i64,
    items_available: i64,
    stock_allows: String,
}

#[derive(Template)]
#[template(path = "campaign_manage.html")]
struct ManagePage {
    p: Page,
    error: Option<String>,
    c: CampaignView,
    tab: &'static str,
    bars: Vec<Bar>,
    rejected: i64,
    labs: Vec<LabRow>,
    transitions: Vec<(String, String)>,
    files: Vec<FileRow>,
    validated: Vec<(i64, String)>,
    prints_waiting: i64,
    prints_done: i64,
    here: String,
    max_model_mb: u64,
}

async fn manage_page(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    error: Option<String>,
) -> AppResult<ManagePage> {
    let (user, c) = managed(state, ctx, id).await?;
    let tz = lab_tz(state).await?;
    let (counts, labs) = state.lab.campaign_counts(Some(&user), c.id).await?;
    let stock = state.lab.campaign_stock(Some(&user), c.id).await?;
    let files = state.lab.campaign_files(&user, c.id).await?;
    let (prints_waiting, prints_done) = state.lab.campaign_prints_status(&user, c.id).await?;
    let lab_rows = stock
        .iter()
        .filter_map(|s: &LabStock| {
            let counts = labs.iter().find(|l| l.lab == s.lab).map(|l| l.counts);
            let here = s.lab == state.lab.lab_id();
            if counts.is_none() && !here && s.parts_available == 0 {
                return None;
            }
            Some(LabRow {
                name: s.lab_name.clone(),
                counts: counts.unwrap_or_default(),
                parts_available: s.parts_available,
                items_available: s.items_available,
                stock_allows: s.materials_allow.map_or_else(
                    || ctx.tr.t("manage.no_material").to_string(),
                    |n| n.to_string(),
                ),
            })
        })
        .collect();
    let here = stock
        .iter()
        .find(|s| s.lab == state.lab.lab_id())
        .map(|s| s.lab_name.clone())
        .unwrap_or_default();
    let transitions = CampaignState::ALL
        .iter()
        .filter(|to| c.state.change_to(**to).is_ok())
        .map(|to| {
            (
                to.as_str().to_string(),
                ctx.tr.word("campaign_action", to.as_str()),
            )
        })
        .collect();
    let validated = files
        .iter()
        .filter(|f| f.validated_at.is_some())
        .map(|f| (f.id.0, f.file_name.clone()))
        .collect();
    Ok(ManagePage {
        p: manager_page(ctx, "manage.title", &c, &format!("/campaigns/{id}/manage")),
        error,
        tab: "dashboard",
        bars: bars(&ctx.tr, &counts, c.target_quantity),
        rejected: counts.rejected,
        labs: lab_rows,
        transitions,
        files: file_rows(&ctx.tr, &tz, &files),
        validated,
        prints_waiting,
        prints_done,
        here,
        max_model_mb: MAX_MODEL_MB.min(state.config.max_upload_mb),
        c: CampaignView::new(&ctx.tr, &c),
    })
}

async fn manage(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    Ok(render(&manage_page(&state, &ctx, id, None).await?)?.into_response())
}

/// A model file, through the same upload path as job files (size limit, SHA-256, accepted
/// endings), analysed, then kept in the database.
async fn upload_file(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    multipart: Multipart,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?.clone();
    let result = async {
        let max = MAX_MODEL_MB.min(state.config.max_upload_mb) * 1_048_576;
        let received = crate::upload::receive(multipart, &state.config.jobs_dir(), max).await?;
        let (path, name) = (received.path.clone(), received.file_name.clone());
        let read = tokio::task::spawn_blocking(move || {
            fabrique_controller::job_files::read(&path, &name, None)
        })
        .await
        .map_err(|e| AppError::internal("analysis", &e))?;
        let analysis = match read {
            Ok(file) => file.summary,
            Err(unreadable) => {
                fabrique_controller::job_files::remove(
                    &state.config.jobs_dir(),
                    &received.stored_name,
                )
                .await;
                let (fr, en) = unreadable.message();
                return Err(AppError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "file_unreadable",
                    "files.unreadable",
                )
                .arg("reason", if ctx.tr.lang_code() == "en" { en } else { fr }));
            }
        };
        let content = tokio::fs::read(&received.path)
            .await
            .map_err(|e| AppError::internal("model file", &e))?;
        let added = state
            .lab
            .add_campaign_file(
                &user,
                CampaignId(id),
                &received.file_name,
                &received.stored_name,
                &received.sha256,
                &content,
                &analysis,
                now(),
            )
            .await;
        if added.is_err() {
            let _ = tokio::fs::remove_file(&received.path).await;
        }
        added?;
        Ok(())
    }
    .await;
    after_manager(&state, &ctx, id, Tab::Dashboard, result).await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ValidateFields {
    note: String,
    parts_per_print: String,
}

async fn validate_file(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, file)): Path<(i64, i64)>,
    Form(f): Form<ValidateFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = async {
        let parts = parse_quantity("parts_per_print", &f.parts_per_print)?;
        state
            .lab
            .validate_campaign_file(user, CampaignId(id), FileId(file), &f.note, parts, now())
            .await?;
        Ok::<(), AppError>(())
    }
    .await;
    after_manager(&state, &ctx, id, Tab::Dashboard, result).await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PrintFields {
    file: String,
    count: String,
}

/// "Queue N lab prints" of a validated file: the planner fills idle printers with them.
async fn queue_prints(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<PrintFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = async {
        let file: i64 = f
            .file
            .trim()
            .parse()
            .map_err(|_| Invalid::new("file", "choice"))?;
        let count: i64 = f
            .count
            .trim()
            .parse()
            .map_err(|_| Invalid::new("count", "prints_count"))?;
        state
            .lab
            .queue_campaign_prints(
                user,
                CampaignId(id),
                FileId(file),
                count,
                &state.config.jobs_dir(),
                now(),
            )
            .await?;
        state.runtime.wake();
        Ok::<(), AppError>(())
    }
    .await;
    after_manager(&state, &ctx, id, Tab::Dashboard, result).await
}

async fn collect_prints(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = state
        .lab
        .collect_lab_prints(user, CampaignId(id), now())
        .await
        .map(|_| ())
        .map_err(AppError::from);
    after_manager(&state, &ctx, id, Tab::Batches, result).await
}

// --- Managers: requests -----------------------------------------------------------------------

struct RequestRow {
    id: i64,
    parent: Option<i64>,
    organisation: String,
    kind: String,
    quantity: i64,
    needed_by: String,
    place: String,
    contact_name: String,
    contact_phone: String,
    contact_email: String,
    status: String,
    priority: i32,
    delivered: i64,
    reason: String,
    fulfilled: bool,
    can_accept: bool,
    can_refuse: bool,
    can_split: bool,
    can_prioritise: bool,
}

fn request_row(tr: &Tr, r: &Request) -> RequestRow {
    let open = matches!(r.status, RequestStatus::New | RequestStatus::Accepted);
    RequestRow {
        id: r.id.0,
        parent: r.parent.map(|p| p.0),
        organisation: r.organisation.clone(),
        kind: tr.word("request_kind", r.kind.as_str()),
        quantity: r.quantity,
        needed_by: date(r.needed_by),
        place: r.delivery_place.clone(),
        contact_name: r.contact.name.clone(),
        contact_phone: r.contact.phone.clone(),
        contact_email: r.contact.email.clone(),
        status: if r.is_fulfilled() {
            tr.t("request_status.fulfilled").to_string()
        } else {
            tr.word("request_status", r.status.as_str())
        },
        priority: r.priority,
        delivered: r.delivered,
        reason: r.refusal_reason.clone(),
        fulfilled: r.is_fulfilled(),
        can_accept: r.status == RequestStatus::New,
        can_refuse: open && r.delivered == 0,
        can_split: open && r.delivered == 0 && r.quantity > 1,
        can_prioritise: open,
    }
}

#[derive(Template)]
#[template(path = "campaign_requests.html")]
struct RequestsPage {
    p: Page,
    error: Option<String>,
    c: CampaignView,
    tab: &'static str,
    requests: Vec<RequestRow>,
    priorities: Vec<i32>,
}

async fn requests_view(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    error: Option<String>,
) -> AppResult<RequestsPage> {
    let (user, c) = managed(state, ctx, id).await?;
    let requests = state
        .lab
        .requests(&user, c.id)
        .await?
        .iter()
        .map(|r| request_row(&ctx.tr, r))
        .collect();
    Ok(RequestsPage {
        p: manager_page(
            ctx,
            "requests.title",
            &c,
            &format!("/campaigns/{id}/requests"),
        ),
        error,
        tab: "requests",
        requests,
        priorities: (-10..=10).rev().collect(),
        c: CampaignView::new(&ctx.tr, &c),
    })
}

async fn requests_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    Ok(render(&requests_view(&state, &ctx, id, None).await?)?.into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RequestActionFields {
    reason: String,
    priority: String,
    first: String,
}

/// `accept`, `refuse` (with a reason), `priority` and `split` on one request.
async fn request_action(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, request, action)): Path<(i64, i64, String)>,
    Form(f): Form<RequestActionFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let (campaign, request) = (CampaignId(id), RequestId(request));
    let result = async {
        match action.as_str() {
            "accept" => {
                state
                    .lab
                    .accept_request(user, campaign, request, now())
                    .await?
            }
            "refuse" => {
                state
                    .lab
                    .refuse_request(user, campaign, request, &f.reason, now())
                    .await?
            }
            "priority" => {
                let priority: i32 = f
                    .priority
                    .trim()
                    .parse()
                    .map_err(|_| Invalid::new("priority", "number_range"))?;
                state
                    .lab
                    .prioritise_request(user, campaign, request, priority)
                    .await?
            }
            "split" => {
                let first = parse_quantity("first", &f.first)?;
                state
                    .lab
                    .split_request(user, campaign, request, first, now())
                    .await?;
            }
            _ => return Err(AppError::not_found()),
        }
        Ok(())
    }
    .await;
    after_manager(&state, &ctx, id, Tab::Requests, result).await
}

// --- Managers: batches, checks and assembly ---------------------------------------------------

struct AssemblyRow {
    id: i64,
    lab: String,
    quantity: i64,
    items_left: i64,
    by: String,
    at: String,
}

#[derive(Template)]
#[template(path = "campaign_batches.html")]
struct BatchesPage {
    p: Page,
    error: Option<String>,
    c: CampaignView,
    tab: &'static str,
    batches: Vec<BatchRow>,
    pledges: Vec<PledgeRow>,
    assemblies: Vec<AssemblyRow>,
    parts_available: i64,
    stock_allows: Option<String>,
    assemblable: i64,
    prints_done: i64,
    here: String,
}

async fn batches_view(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    error: Option<String>,
) -> AppResult<BatchesPage> {
    let (user, c) = managed(state, ctx, id).await?;
    let tz = lab_tz(state).await?;
    let batches = state
        .lab
        .batches(&user, c.id)
        .await?
        .iter()
        .map(|b| batch_row(&ctx.tr, &tz, b))
        .collect();
    let pledges = state
        .lab
        .pledges(&user, c.id)
        .await?
        .iter()
        .map(|p| PledgeRow {
            quantity: p.quantity,
            due_by: date(p.due_by),
            place: ctx.tr.word("pledge_place", p.place.as_str()),
            maker: p.maker_name.clone(),
            lab: p.lab_name.clone(),
        })
        .collect();
    let assemblies = state
        .lab
        .assemblies(&user, c.id)
        .await?
        .iter()
        .map(|a| AssemblyRow {
            id: a.id.0,
            lab: a.lab_name.clone(),
            quantity: a.quantity,
            items_left: a.items_left,
            by: a.assembled_by_name.clone(),
            at: day(&tz, a.assembled_at),
        })
        .collect();
    let stock = state.lab.campaign_stock(Some(&user), c.id).await?;
    let mine = stock.iter().find(|s| s.lab == state.lab.lab_id());
    let (_, prints_done) = state.lab.campaign_prints_status(&user, c.id).await?;
    Ok(BatchesPage {
        p: manager_page(
            ctx,
            "batches.title",
            &c,
            &format!("/campaigns/{id}/batches"),
        ),
        error,
        tab: "batches",
        batches,
        pledges,
        assemblies,
        parts_available: mine.map_or(0, |s| s.parts_available),
        stock_allows: stock_allows_text(&ctx.tr, &c.item, mine.and_then(|s| s.materials_allow)),
        assemblable: mine.map_or(0, LabStock::assemblable),
        prints_done,
        here: mine.map(|s| s.lab_name.clone()).unwrap_or_default(),
        c: CampaignView::new(&ctx.tr, &c),
    })
}

async fn batches_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    Ok(render(&batches_view(&state, &ctx, id, None).await?)?.into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct QuantityField {
    quantity: String,
}

async fn assemble(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<QuantityField>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = async {
        let quantity = parse_quantity("quantity", &f.quantity)?;
        state
            .lab
            .assemble(user, CampaignId(id), quantity, now())
            .await?;
        Ok::<(), AppError>(())
    }
    .await;
    after_manager(&state, &ctx, id, Tab::Batches, result).await
}

struct TraceRow {
    delivery: i64,
    date: String,
    organisation: String,
    contact: String,
    assembly: i64,
    items: i64,
    parts: i64,
}

#[derive(Template)]
#[template(path = "campaign_batch.html")]
struct BatchPage {
    p: Page,
    error: Option<String>,
    c: CampaignView,
    tab: &'static str,
    b: BatchRow,
    assemblies: Vec<(i64, i64, String, i64)>,
    deliveries: Vec<TraceRow>,
}

/// A batch's recall list: the assemblies that took its parts and the deliveries drawn from
/// them, with whom to call.
async fn batch_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, batch)): Path<(i64, i64)>,
) -> AppResult<Response> {
    let (user, c) = managed(&state, &ctx, id).await?;
    let tz = lab_tz(&state).await?;
    let b = state.lab.batch(&user, c.id, BatchId(batch)).await?;
    let assemblies = state
        .lab
        .batch_assemblies(&user, c.id, b.id)
        .await?
        .into_iter()
        .map(|(a, parts, at, left)| (a.0, parts, day(&tz, at), left))
        .collect();
    let requests = state.lab.requests(&user, c.id).await?;
    let deliveries = state
        .lab
        .trace(&user, c.id, Some(b.id))
        .await?
        .iter()
        .map(|t| {
            let r = requests.iter().find(|r| r.id == t.request);
            TraceRow {
                delivery: t.delivery.0,
                date: date(t.delivered_on),
                organisation: t.organisation.clone(),
                contact: r.map_or_else(String::new, |r| {
                    [&r.contact.name, &r.contact.phone, &r.contact.email]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" · ")
                }),
                assembly: t.assembly.0,
                items: t.delivered_from_assembly,
                parts: t.parts_from_batch,
            }
        })
        .collect();
    let mut p = manager_page(
        &ctx,
        "batch.title",
        &c,
        &format!("/campaigns/{id}/batches/{batch}"),
    );
    p.title = ctx.tr.f("batch.title", &[("batch", &batch.to_string())]);
    Ok(render(&BatchPage {
        p,
        error: None,
        tab: "batches",
        b: batch_row(&ctx.tr, &tz, &b),
        assemblies,
        deliveries,
        c: CampaignView::new(&ctx.tr, &c),
    })?
    .into_response())
}

// --- Managers: materials and donations ----------------------------------------------------------

struct MaterialRow {
    id: i64,
    name: String,
    unit: String,
    per_item: i64,
    stock: i64,
}

struct DonationRow {
    material: String,
    quantity: String,
    donor: String,
    lab: String,
    at: String,
}

#[derive(Template)]
#[template(path = "campaign_materials.html")]
struct MaterialsPage {
    p: Page,
    error: Option<String>,
    c: CampaignView,
    tab: &'static str,
    materials: Vec<MaterialRow>,
    donations: Vec<DonationRow>,
    stock_allows: Option<String>,
    here: String,
}

async fn materials_view(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    error: Option<String>,
) -> AppResult<MaterialsPage> {
    let (user, c) = managed(state, ctx, id).await?;
    let tz = lab_tz(state).await?;
    let stock = state.lab.campaign_stock(Some(&user), c.id).await?;
    let mine = stock.iter().find(|s| s.lab == state.lab.lab_id());
    let donations = state
        .lab
        .donations(&user, c.id)
        .await?
        .iter()
        .map(|d| DonationRow {
            material: d.material_name.clone(),
            quantity: format!("{} {}", d.quantity, d.unit),
            donor: d.donor.clone(),
            lab: d.lab_name.clone(),
            at: day(&tz, d.received_at),
        })
        .collect();
    Ok(MaterialsPage {
        p: manager_page(
            ctx,
            "materials.title",
            &c,
            &format!("/campaigns/{id}/materials"),
        ),
        error,
        tab: "materials",
        materials: state
            .lab
            .materials(&user, c.id)
            .await?
            .into_iter()
            .map(|m| MaterialRow {
                id: m.id.0,
                name: m.name,
                unit: m.unit,
                per_item: m.per_item,
                stock: m.stock,
            })
            .collect(),
        donations,
        stock_allows: stock_allows_text(&ctx.tr, &c.item, mine.and_then(|s| s.materials_allow)),
        here: mine.map(|s| s.lab_name.clone()).unwrap_or_default(),
        c: CampaignView::new(&ctx.tr, &c),
    })
}

async fn materials_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    Ok(render(&materials_view(&state, &ctx, id, None).await?)?.into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct MaterialFields {
    name: String,
    unit: String,
    per_item: String,
    material: String,
    donor: String,
    quantity: String,
}

async fn add_material(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<MaterialFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = async {
        let input = MaterialInput::parse(&f.name, &f.unit, &f.per_item)?;
        state
            .lab
            .add_material(user, CampaignId(id), &input, now())
            .await?;
        Ok::<(), AppError>(())
    }
    .await;
    after_manager(&state, &ctx, id, Tab::Materials, result).await
}

async fn donate(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<MaterialFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = async {
        let material: i64 = f
            .material
            .trim()
            .parse()
            .map_err(|_| Invalid::new("material", "choice"))?;
        let quantity = parse_quantity("quantity", &f.quantity)?;
        state
            .lab
            .record_donation(
                user,
                CampaignId(id),
                MaterialId(material),
                &f.donor,
                quantity,
                now(),
            )
            .await?;
        Ok::<(), AppError>(())
    }
    .await;
    after_manager(&state, &ctx, id, Tab::Materials, result).await
}

// --- Managers: deliveries -----------------------------------------------------------------------

struct DeliveryRow {
    id: i64,
    organisation: String,
    quantity: i64,
    date: String,
    by: String,
    lab: String,
}

#[derive(Template)]
#[template(path = "campaign_deliveries.html")]
struct DeliveriesPage {
    p: Page,
    error: Option<String>,
    c: CampaignView,
    tab: &'static str,
    deliveries: Vec<DeliveryRow>,
    open_requests: Vec<(i64, String)>,
    items_available: i64,
    here: String,
    today: String,
}

async fn deliveries_view(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    error: Option<String>,
) -> AppResult<DeliveriesPage> {
    let (user, c) = managed(state, ctx, id).await?;
    let deliveries = state
        .lab
        .deliveries(&user, c.id)
        .await?
        .iter()
        .map(|d| DeliveryRow {
            id: d.id.0,
            organisation: d.organisation.clone(),
            quantity: d.quantity,
            date: date(d.delivered_on),
            by: d.delivered_by.clone(),
            lab: d.lab_name.clone(),
        })
        .collect();
    let open_requests = state
        .lab
        .requests(&user, c.id)
        .await?
        .iter()
        .filter(|r| r.status == RequestStatus::Accepted && r.delivered < r.quantity)
        .map(|r| {
            (
                r.id.0,
                ctx.tr.f(
                    "deliveries.request_option",
                    &[
                        ("organisation", &r.organisation),
                        ("remaining", &(r.quantity - r.delivered).to_string()),
                        ("date", &date(r.needed_by)),
                    ],
                ),
            )
        })
        .collect();
    let stock = state.lab.campaign_stock(Some(&user), c.id).await?;
    let mine = stock.iter().find(|s| s.lab == state.lab.lab_id());
    Ok(DeliveriesPage {
        p: manager_page(
            ctx,
            "deliveries.title",
            &c,
            &format!("/campaigns/{id}/deliveries"),
        ),
        error,
        tab: "deliveries",
        deliveries,
        open_requests,
        items_available: mine.map_or(0, |s| s.items_available),
        here: mine.map(|s| s.lab_name.clone()).unwrap_or_default(),
        today: today(state).await?.to_string(),
        c: CampaignView::new(&ctx.tr, &c),
    })
}

async fn deliveries_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    Ok(render(&deliveries_view(&state, &ctx, id, None).await?)?.into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct DeliveryFields {
    request: String,
    quantity: String,
    delivered_on: String,
    delivered_by: String,
}

async fn deliver(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<DeliveryFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = async {
        let request: i64 = f
            .request
            .trim()
            .parse()
            .map_err(|_| Invalid::new("request", "choice"))?;
        let input = DeliveryInput::parse(
            RequestId(request),
            &f.quantity,
            &f.delivered_on,
            &f.delivered_by,
        )?;
        state
            .lab
            .deliver(user, CampaignId(id), &input, now())
            .await?;
        Ok::<(), AppError>(())
    }
    .await;
    after_manager(&state, &ctx, id, Tab::Deliveries, result).await
}

// --- Managers: CSV exports ------------------------------------------------------------------------

/// `batches.csv`: every batch with its maker, lab and checks. `deliveries.csv`: every
/// delivery traced back to its assemblies, batches and makers.
async fn export(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, file)): Path<(i64, String)>,
) -> AppResult<Response> {
    let (user, c) = managed(&state, &ctx, id).await?;
    let tz = lab_tz(&state).await?;
    let tr = &ctx.tr;
    let head = |keys: &[&str]| -> Vec<String> { keys.iter().map(|k| tr.word("csv", k)).collect() };
    let opt = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    let (name, body) = match file.as_str() {
        "batches.csv" => {
            let header = head(&[
                "batch",
                "source",
                "maker",
                "lab",
                "declared",
                "declared_on",
                "collection_point",
                "received",
                "accepted",
                "rejected",
                "reason",
            ]);
            let rows: Vec<Vec<String>> = state
                .lab
                .batches(&user, c.id)
                .await?
                .iter()
                .map(|b| {
                    vec![
                        b.id.0.to_string(),
                        tr.word("batch_source", b.source.as_str()),
                        b.maker_name.clone().unwrap_or_default(),
                        b.lab_name.clone(),
                        b.quantity.to_string(),
                        day(&tz, b.declared_at),
                        b.collection_point.clone(),
                        opt(b.received_quantity),
                        opt(b.accepted_quantity),
                        if b.checked_at.is_some() {
                            b.rejected().to_string()
                        } else {
                            String::new()
                        },
                        b.rejection_reason.clone(),
                    ]
                })
                .collect();
            ("lots", crate::csv::table(&header, &rows))
        }
        "deliveries.csv" => {
            let header = head(&[
                "delivery",
                "delivered_on",
                "organisation",
                "request",
                "items_from_assembly",
                "assembly",
                "parts_from_batch",
                "batch",
                "source",
                "maker",
                "lab",
            ]);
            let rows: Vec<Vec<String>> = state
                .lab
                .trace(&user, c.id, None)
                .await?
                .iter()
                .map(|t| {
                    vec![
                        t.delivery.0.to_string(),
                        t.delivered_on.to_string(),
                        t.organisation.clone(),
                        t.request.0.to_string(),
                        t.delivered_from_assembly.to_string(),
                        t.assembly.0.to_string(),
                        t.parts_from_batch.to_string(),
                        t.batch.0.to_string(),
                        tr.word("batch_source", t.batch_source.as_str()),
                        t.maker_name.clone().unwrap_or_default(),
                        t.lab_name.clone(),
                    ]
                })
                .collect();
            ("livraisons", crate::csv::table(&header, &rows))
        }
        _ => return Err(AppError::not_found()),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"campagne-{id}-{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}
