//! Solidarity production campaigns: a lab (or several labs together) makes an item, such as
//! a face visor, for organisations that ask for it.
//!
//! The chain, each step a record: a recipient's **request** -> a maker's **pledge** -> a
//! **batch** of printed parts (declared by a maker, or collected from the lab's own campaign
//! prints) -> **reception** (counted by a manager) -> **quality check** (accepted, or rejected
//! with a reason) -> **assembly** (one accepted part plus the bill of materials per item,
//! taken from the lab's stock of donated materials) -> **delivery** to a request.
//!
//! Allocation, so that a bad batch can be recalled: an assembly draws its parts from the
//! lab's accepted batches, oldest check first, and records how many it took from each; a
//! delivery draws its items from the lab's assemblies, oldest first, and records how many it
//! took from each. A delivery therefore may contain parts of every batch its assemblies drew
//! from, and the recall list of a batch is exactly those deliveries.
//!
//! Pure: values are parsed here, rules are checked here; the store keeps the balances
//! (stock, parts and items left) inside one transaction and refuses a negative one.

use super::account::{parse_email, parse_text};
use super::{Invalid, UserId, text_enum};
use jiff::Timestamp;
use jiff::civil::Date;

macro_rules! id_type {
    ($($(#[$meta:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);
    )+};
}

id_type!(
    /// A lab of the network (the `labs` table). A single-node install has one.
    LabId,
    CampaignId,
    FileId,
    MaterialId,
    RequestId,
    PledgeId,
    BatchId,
    AssemblyId,
    DeliveryId,
);

text_enum! {
    /// The grammatical gender of the item's name, which French participles agree with
    /// ("12 visières livrées", "12 masques livrés").
    WordGender { Feminine = "feminine", Masculine = "masculine" }
}

/// What a campaign makes, named so that sentences can count it: its singular, its plural
/// and its gender, as the manager typed them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ItemName {
    pub singular: String,
    pub plural: String,
    pub gender: WordGender,
}

impl ItemName {
    /// An empty plural is the singular with an "s" (the regular plural of French and
    /// English: visière, visières); a missing gender is the masculine, French's unmarked one.
    pub fn parse(singular: &str, plural: &str, gender: &str) -> Result<Self, Invalid> {
        let singular = parse_text("item", singular, 80)?;
        let plural = match plural.trim() {
            "" => format!("{singular}s"),
            plural => parse_text("item_plural", plural, 80)?,
        };
        let gender = match gender.trim() {
            "" => WordGender::Masculine,
            word => word
                .parse()
                .map_err(|()| Invalid::new("item_gender", "choice"))?,
        };
        Ok(Self {
            singular,
            plural,
            gender,
        })
    }
}

text_enum! {
    /// `Draft`: being prepared, seen by managers only. `Open`: public, takes requests,
    /// pledges and lab prints. `Paused`: public, takes nothing new, work in progress goes on.
    /// `Closed`: finished, read-only.
    CampaignState { Draft = "draft", Open = "open", Paused = "paused", Closed = "closed" }
}

impl CampaignState {
    /// draft -> open | closed; open -> paused | closed; paused -> open | closed.
    pub fn change_to(self, next: CampaignState) -> Result<CampaignState, CampaignRefusal> {
        use CampaignState::*;
        let allowed = match self {
            Draft => matches!(next, Open | Closed),
            Open => matches!(next, Paused | Closed),
            Paused => matches!(next, Open | Closed),
            Closed => false,
        };
        if allowed {
            Ok(next)
        } else {
            Err(CampaignRefusal::StateChange {
                from: self,
                to: next,
            })
        }
    }

    /// Whether the public sees the campaign.
    pub fn is_public(self) -> bool {
        self != CampaignState::Draft
    }

    /// New requests, pledges and lab prints.
    pub fn require_open(self) -> Result<(), CampaignRefusal> {
        if self == CampaignState::Open {
            Ok(())
        } else {
            Err(CampaignRefusal::NotOpen)
        }
    }

    /// Work in progress: batches, reception, checks, donations, assemblies, deliveries,
    /// decisions on requests.
    pub fn require_running(self) -> Result<(), CampaignRefusal> {
        if matches!(self, CampaignState::Open | CampaignState::Paused) {
            Ok(())
        } else {
            Err(CampaignRefusal::NotRunning)
        }
    }
}

text_enum! {
    RequestKind {
        CareHome = "care_home",
        Hospital = "hospital",
        Shop = "shop",
        School = "school",
        Association = "association",
        Other = "other",
    }
}

text_enum! {
    /// `Split`: replaced by two requests whose quantities add up to this one's.
    RequestStatus { New = "new", Accepted = "accepted", Refused = "refused", Split = "split" }
}

text_enum! {
    /// Where a maker prints: at home, or on the lab's machines.
    PledgePlace { Home = "home", Lab = "lab" }
}

text_enum! {
    BatchSource { Maker = "maker", Lab = "lab" }
}

/// Why a campaign action is refused. Each has a stable code for the API and a plain message
/// in the catalogue (`campaign_refusal.<code>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignRefusal {
    #[error("the campaign is not open")]
    NotOpen,
    #[error("the campaign is not running")]
    NotRunning,
    #[error("a campaign cannot go from {from} to {to}")]
    StateChange {
        from: CampaignState,
        to: CampaignState,
    },
    #[error("not enough {material}: {missing} {unit} missing")]
    NotEnoughStock {
        material: String,
        missing: i64,
        unit: String,
    },
    #[error("only {available} accepted parts left")]
    NotEnoughParts { available: i64 },
    #[error("only {available} assembled items left")]
    NotEnoughItems { available: i64 },
    #[error("only {remaining} more asked")]
    MoreThanAsked { remaining: i64 },
    #[error("the request is not accepted")]
    RequestNotAccepted,
    #[error("the request was already decided")]
    RequestDecided,
    #[error("a split keeps 1 to {max} in the first part")]
    SplitQuantity { max: i64 },
    #[error("the batch was already received")]
    AlreadyReceived,
    #[error("the batch was not received yet")]
    NotReceived,
    #[error("the batch was already checked")]
    AlreadyChecked,
    #[error("{received} parts were received")]
    AcceptedMoreThanReceived { received: i64 },
    #[error("the file is not validated")]
    FileNotValidated,
    #[error("no finished lab print to collect")]
    NoPrintsToCollect,
    #[error("too many requests from this address; retry in {minutes} min")]
    TooManyRequests { minutes: i64 },
    #[error("unknown collection point")]
    UnknownCollectionPoint,
}

impl CampaignRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            CampaignRefusal::NotOpen => "not_open",
            CampaignRefusal::NotRunning => "not_running",
            CampaignRefusal::StateChange { .. } => "state_change",
            CampaignRefusal::NotEnoughStock { .. } => "not_enough_stock",
            CampaignRefusal::NotEnoughParts { .. } => "not_enough_parts",
            CampaignRefusal::NotEnoughItems { .. } => "not_enough_items",
            CampaignRefusal::MoreThanAsked { .. } => "more_than_asked",
            CampaignRefusal::RequestNotAccepted => "request_not_accepted",
            CampaignRefusal::RequestDecided => "request_decided",
            CampaignRefusal::SplitQuantity { .. } => "split_quantity",
            CampaignRefusal::AlreadyReceived => "already_received",
            CampaignRefusal::NotReceived => "not_received",
            CampaignRefusal::AlreadyChecked => "already_checked",
            CampaignRefusal::AcceptedMoreThanReceived { .. } => "accepted_more_than_received",
            CampaignRefusal::FileNotValidated => "file_not_validated",
            CampaignRefusal::NoPrintsToCollect => "no_prints_to_collect",
            CampaignRefusal::TooManyRequests { .. } => "too_many_requests",
            CampaignRefusal::UnknownCollectionPoint => "unknown_collection_point",
        }
    }

    /// Every code, for the catalogue test.
    pub const CODES: &'static [&'static str] = &[
        "not_open",
        "not_running",
        "state_change",
        "not_enough_stock",
        "not_enough_parts",
        "not_enough_items",
        "more_than_asked",
        "request_not_accepted",
        "request_decided",
        "split_quantity",
        "already_received",
        "not_received",
        "already_checked",
        "accepted_more_than_received",
        "file_not_validated",
        "no_prints_to_collect",
        "too_many_requests",
        "unknown_collection_point",
    ];

    /// The message's placeholders. States are words the web layer translates
    /// (`campaign_state.<word>`), so they are passed as `from_state` and `to_state`.
    pub fn args(&self) -> Vec<(&'static str, String)> {
        match self {
            CampaignRefusal::StateChange { from, to } => {
                vec![
                    ("from_state", from.to_string()),
                    ("to_state", to.to_string()),
                ]
            }
            CampaignRefusal::NotEnoughStock {
                material,
                missing,
                unit,
            } => vec![
                ("material", material.clone()),
                ("missing", missing.to_string()),
                ("unit", unit.clone()),
            ],
            CampaignRefusal::NotEnoughParts { available }
            | CampaignRefusal::NotEnoughItems { available } => {
                vec![("available", available.to_string())]
            }
            CampaignRefusal::MoreThanAsked { remaining } => {
                vec![("remaining", remaining.to_string())]
            }
            CampaignRefusal::SplitQuantity { max } => vec![("max", max.to_string())],
            CampaignRefusal::AcceptedMoreThanReceived { received } => {
                vec![("received", received.to_string())]
            }
            CampaignRefusal::TooManyRequests { minutes } => {
                vec![("minutes", minutes.to_string())]
            }
            _ => Vec::new(),
        }
    }
}

/// The largest quantity any form accepts: more than any campaign of 2020 made.
pub const MAX_QUANTITY: i64 = 1_000_000;

/// A whole number of 1 to [`MAX_QUANTITY`], as typed.
pub fn parse_quantity(field: &'static str, raw: &str) -> Result<i64, Invalid> {
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_QUANTITY).contains(&n) => Ok(n),
        _ => Err(Invalid::new(field, "quantity")),
    }
}

/// A whole number of 0 to [`MAX_QUANTITY`] (a count at reception may be nothing).
pub fn parse_count(field: &'static str, raw: &str) -> Result<i64, Invalid> {
    match raw.trim().parse::<i64>() {
        Ok(n) if (0..=MAX_QUANTITY).contains(&n) => Ok(n),
        _ => Err(Invalid::new(field, "quantity")),
    }
}

/// A local date such as `2026-04-02`.
pub fn parse_date(field: &'static str, raw: &str) -> Result<Date, Invalid> {
    raw.trim()
        .parse::<Date>()
        .map_err(|_| Invalid::new(field, "date"))
}

/// Optional free text: empty stays empty, otherwise as [`parse_text`].
pub fn optional_text(field: &'static str, raw: &str, max: usize) -> Result<String, Invalid> {
    if raw.trim().is_empty() {
        Ok(String::new())
    } else {
        parse_text(field, raw, max)
    }
}

/// Text of several lines (a description): line breaks kept, other control characters
/// refused, at most `max` characters.
pub fn parse_lines(field: &'static str, raw: &str, max: usize) -> Result<String, Invalid> {
    let text = raw.replace("\r\n", "\n");
    let text = text.trim();
    if text.chars().count() > max {
        return Err(Invalid::new(field, "too_long"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Invalid::new(field, "control_chars"));
    }
    Ok(text.to_string())
}

/// A campaign as a manager typed it.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignInput {
    pub title: String,
    pub item: ItemName,
    pub description: String,
    /// The print or cut profile makers must use (material, layer height, settings...).
    pub profile: String,
    pub target_quantity: i64,
    /// Where makers drop their batches, one per line.
    pub collection_points: Vec<String>,
}

impl CampaignInput {
    pub fn parse(
        title: &str,
        item: ItemName,
        description: &str,
        profile: &str,
        target_quantity: &str,
        collection_points: &str,
    ) -> Result<Self, Invalid> {
        let points = parse_lines("collection_points", collection_points, 2000)?;
        let mut collection_points = Vec::new();
        for line in points.lines().map(str::trim).filter(|l| !l.is_empty()) {
            collection_points.push(parse_text("collection_points", line, 120)?);
        }
        Ok(Self {
            title: parse_text("title", title, 120)?,
            item,
            description: parse_lines("description", description, 4000)?,
            profile: parse_lines("profile", profile, 2000)?,
            target_quantity: parse_quantity("target_quantity", target_quantity)?,
            collection_points,
        })
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Campaign {
    pub id: CampaignId,
    /// The lab that runs it; other labs of the network join in.
    pub lab: LabId,
    pub lab_name: String,
    pub title: String,
    pub item: ItemName,
    pub description: String,
    pub profile: String,
    pub target_quantity: i64,
    pub collection_points: Vec<String>,
    pub state: CampaignState,
    pub created_at: Timestamp,
}

/// The counts of a campaign (or of one lab's part of it), each a sum over records:
/// - `requested`: quantities of requests not refused (a split request counts through its
///   two parts);
/// - `pledged`: makers' pledges;
/// - `produced`: parts makers declared, plus parts of the lab's finished campaign prints;
/// - `received`, `accepted`, `rejected`: counted at reception and at the quality check;
/// - `assembled`, `delivered`: items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub requested: i64,
    pub pledged: i64,
    pub produced: i64,
    pub received: i64,
    pub accepted: i64,
    pub rejected: i64,
    pub assembled: i64,
    pub delivered: i64,
}

impl Counts {
    /// The chain's invariants: delivered <= assembled <= accepted <= received, nothing
    /// negative. `Err` names the first one broken.
    pub fn check(&self) -> Result<(), String> {
        let all = [
            self.requested,
            self.pledged,
            self.produced,
            self.received,
            self.accepted,
            self.rejected,
            self.assembled,
            self.delivered,
        ];
        if all.iter().any(|n| *n < 0) {
            return Err(format!("a negative count: {self:?}"));
        }
        if self.delivered > self.assembled {
            return Err(format!("delivered > assembled: {self:?}"));
        }
        if self.assembled > self.accepted {
            return Err(format!("assembled > accepted: {self:?}"));
        }
        if self.accepted + self.rejected > self.received {
            return Err(format!("accepted + rejected > received: {self:?}"));
        }
        Ok(())
    }
}

/// One lab's counts, for the dashboard of a campaign run by several labs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabCounts {
    pub lab: LabId,
    pub lab_name: String,
    pub counts: Counts,
}

/// A model file of the campaign. Printed only once validated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelFile {
    pub id: FileId,
    pub campaign: CampaignId,
    pub file_name: String,
    pub stored_name: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub estimate_s: Option<i64>,
    /// Points the analysis asked to check; lab prints of such a file wait for approval.
    pub findings: i64,
    pub analysis: Option<fabrique_machines::files::FileSummary>,
    pub parts_per_print: i64,
    pub validated_at: Option<Timestamp>,
    pub validated_by_name: Option<String>,
    /// Who tested the prototype and what they said.
    pub validation_note: String,
    pub created_at: Timestamp,
}

/// A line of the bill of materials, with what this lab holds of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Material {
    pub id: MaterialId,
    pub name: String,
    pub unit: String,
    pub per_item: i64,
    /// In this lab.
    pub stock: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MaterialInput {
    pub name: String,
    pub unit: String,
    pub per_item: i64,
}

impl MaterialInput {
    pub fn parse(name: &str, unit: &str, per_item: &str) -> Result<Self, Invalid> {
        Ok(Self {
            name: parse_text("material_name", name, 80)?,
            unit: parse_text("unit", unit, 20)?,
            per_item: parse_quantity("per_item", per_item)?,
        })
    }
}

/// How many more items the materials in stock allow (`None` when the item needs no
/// material besides its printed part).
pub fn items_the_stock_allows(materials: &[Material]) -> Option<i64> {
    materials
        .iter()
        .map(|m| m.stock.max(0) / m.per_item.max(1))
        .min()
}

/// The first material short for `quantity` items, as a refusal.
pub fn check_stock(materials: &[Material], quantity: i64) -> Result<(), CampaignRefusal> {
    for m in materials {
        let need = m.per_item.saturating_mul(quantity);
        if need > m.stock {
            return Err(CampaignRefusal::NotEnoughStock {
                material: m.name.clone(),
                missing: need - m.stock,
                unit: m.unit.clone(),
            });
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Donation {
    pub material_name: String,
    pub unit: String,
    pub lab_name: String,
    pub donor: String,
    pub quantity: i64,
    pub received_at: Timestamp,
}

/// How to reach the person who asked. Seen by managers only.
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub phone: String,
    pub email: String,
}

impl std::fmt::Debug for Contact {
    /// Personal data stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Contact(***)")
    }
}

/// A phone number as people write it: digits, spaces and `+ . - ( )`, 6 to 30 characters.
pub fn parse_phone(raw: &str) -> Result<String, Invalid> {
    let phone = raw.trim();
    if phone.is_empty() {
        return Ok(String::new());
    }
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let allowed = phone
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '.' | '-' | '(' | ')'));
    if !allowed || digits < 6 || phone.chars().count() > 30 {
        return Err(Invalid::new("contact_phone", "phone"));
    }
    Ok(phone.to_string())
}

/// A request as the public form sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInput {
    pub organisation: String,
    pub kind: RequestKind,
    pub quantity: i64,
    pub needed_by: Date,
    pub delivery_place: String,
    pub contact: Contact,
}

impl RequestInput {
    /// Every field is bounded; a contact needs a name and a phone or an e-mail; the date is
    /// today or later (`today` in the lab's time zone).
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        organisation: &str,
        kind: &str,
        quantity: &str,
        needed_by: &str,
        delivery_place: &str,
        contact_name: &str,
        contact_phone: &str,
        contact_email: &str,
        today: Date,
    ) -> Result<Self, Invalid> {
        let organisation = parse_text("organisation", organisation, 120)?;
        let kind = kind
            .trim()
            .parse()
            .map_err(|()| Invalid::new("request_kind", "choice"))?;
        let quantity = parse_quantity("quantity", quantity)?;
        let needed_by = parse_date("needed_by", needed_by)?;
        if needed_by < today {
            return Err(Invalid::new("needed_by", "date_past"));
        }
        let delivery_place = parse_text("delivery_place", delivery_place, 300)?;
        let name = parse_text("contact_name", contact_name, 80)?;
        let phone = parse_phone(contact_phone)?;
        let email = parse_email(contact_email)
            .map_err(|e| Invalid {
                field: "contact_email",
                ..e
            })?
            .unwrap_or_default();
        if phone.is_empty() && email.is_empty() {
            return Err(Invalid::new("contact_phone", "phone_or_email"));
        }
        Ok(Self {
            organisation,
            kind,
            quantity,
            needed_by,
            delivery_place,
            contact: Contact { name, phone, email },
        })
    }
}

/// A request as managers see it, contact included.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: RequestId,
    pub campaign: CampaignId,
    pub parent: Option<RequestId>,
    pub organisation: String,
    pub kind: RequestKind,
    pub quantity: i64,
    pub needed_by: Date,
    pub delivery_place: String,
    pub contact: Contact,
    pub status: RequestStatus,
    pub priority: i32,
    pub refusal_reason: String,
    pub delivered: i64,
    pub created_at: Timestamp,
}

impl Request {
    pub fn is_fulfilled(&self) -> bool {
        self.status == RequestStatus::Accepted && self.delivered >= self.quantity
    }
}

/// What the organisation that asked sees through its follow link: no contact details,
/// one line per part of its request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestFollow {
    pub campaign: CampaignId,
    pub campaign_title: String,
    pub item: ItemName,
    pub organisation: String,
    pub parts: Vec<FollowPart>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FollowPart {
    pub quantity: i64,
    pub needed_by: Date,
    pub status: RequestStatus,
    pub refusal_reason: String,
    pub delivered: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PledgeInput {
    pub quantity: i64,
    pub due_by: Date,
    pub place: PledgePlace,
}

impl PledgeInput {
    pub fn parse(quantity: &str, due_by: &str, place: &str) -> Result<Self, Invalid> {
        Ok(Self {
            quantity: parse_quantity("quantity", quantity)?,
            due_by: parse_date("due_by", due_by)?,
            place: place
                .trim()
                .parse()
                .map_err(|()| Invalid::new("place", "choice"))?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pledge {
    pub id: PledgeId,
    pub campaign: CampaignId,
    pub maker: UserId,
    pub maker_name: String,
    pub lab_name: String,
    pub quantity: i64,
    pub due_by: Date,
    pub place: PledgePlace,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Batch {
    pub id: BatchId,
    pub campaign: CampaignId,
    pub lab: LabId,
    pub lab_name: String,
    pub source: BatchSource,
    pub maker: Option<UserId>,
    /// `None` for the lab's own prints.
    pub maker_name: Option<String>,
    pub pledge: Option<PledgeId>,
    pub quantity: i64,
    pub declared_at: Timestamp,
    pub collection_point: String,
    pub dropped_at: Option<Timestamp>,
    pub received_quantity: Option<i64>,
    pub received_at: Option<Timestamp>,
    pub accepted_quantity: Option<i64>,
    pub rejection_reason: String,
    pub checked_at: Option<Timestamp>,
    pub parts_left: i64,
}

text_enum! {
    /// Where a batch stands, furthest step first: the API's `status` and the pages'
    /// `batch_status.*` word.
    BatchStatus {
        Declared = "declared",
        Dropped = "dropped",
        Received = "received",
        Checked = "checked",
    }
}

impl Batch {
    pub fn status(&self) -> BatchStatus {
        if self.checked_at.is_some() {
            BatchStatus::Checked
        } else if self.received_at.is_some() {
            BatchStatus::Received
        } else if self.dropped_at.is_some() {
            BatchStatus::Dropped
        } else {
            BatchStatus::Declared
        }
    }

    pub fn rejected(&self) -> i64 {
        match (self.received_quantity, self.accepted_quantity) {
            (Some(r), Some(a)) => r - a,
            _ => 0,
        }
    }
}

/// A maker's own figures in a campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MakerCounts {
    pub pledged: i64,
    pub declared: i64,
    pub received: i64,
    pub accepted: i64,
    pub rejected: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assembly {
    pub id: AssemblyId,
    pub lab_name: String,
    pub quantity: i64,
    pub items_left: i64,
    pub assembled_by_name: String,
    pub assembled_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryInput {
    pub request: RequestId,
    pub quantity: i64,
    pub delivered_on: Date,
    /// The person who took the items there (a volunteer may have no account).
    pub delivered_by: String,
}

impl DeliveryInput {
    pub fn parse(
        request: RequestId,
        quantity: &str,
        delivered_on: &str,
        delivered_by: &str,
    ) -> Result<Self, Invalid> {
        Ok(Self {
            request,
            quantity: parse_quantity("quantity", quantity)?,
            delivered_on: parse_date("delivered_on", delivered_on)?,
            delivered_by: parse_text("delivered_by", delivered_by, 80)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub request: RequestId,
    pub organisation: String,
    pub lab_name: String,
    pub quantity: i64,
    pub delivered_on: Date,
    pub delivered_by: String,
    pub recorded_at: Timestamp,
}

/// One path from a delivery back to a batch: `quantity` items of the delivery came from an
/// assembly that took `parts` parts of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceLine {
    pub delivery: DeliveryId,
    pub delivered_on: Date,
    pub organisation: String,
    pub request: RequestId,
    pub delivered_from_assembly: i64,
    pub assembly: AssemblyId,
    pub parts_from_batch: i64,
    pub batch: BatchId,
    pub batch_source: BatchSource,
    pub maker_name: Option<String>,
    pub lab_name: String,
}

/// Takes `quantity` from `(id, available)` sources in order, as many from each as it has.
/// Returns what was taken from each, or `None` when they hold less than `quantity`.
pub fn draw_in_order<T: Copy>(sources: &[(T, i64)], quantity: i64) -> Option<Vec<(T, i64)>> {
    let mut left = quantity;
    let mut taken = Vec::new();
    for &(id, available) in sources {
        if left == 0 {
            break;
        }
        let take = available.min(left);
        if take > 0 {
            taken.push((id, take));
            left -= take;
        }
    }
    (left == 0).then_some(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn campaign_states_follow_the_design() {
        use CampaignState::*;
        assert_eq!(Draft.change_to(Open), Ok(Open));
        assert_eq!(Open.change_to(Paused), Ok(Paused));
        assert_eq!(Paused.change_to(Open), Ok(Open));
        assert_eq!(Paused.change_to(Closed), Ok(Closed));
        assert!(Draft.change_to(Paused).is_err(), "nothing to pause yet");
        assert!(
            Closed.change_to(Open).is_err(),
            "a closed campaign stays closed"
        );
        assert!(Open.change_to(Draft).is_err());
        assert!(Paused.require_open().is_err() && Paused.require_running().is_ok());
        assert!(Draft.require_running().is_err() && !Draft.is_public());
    }

    #[test]
    fn a_request_needs_a_way_to_reach_its_contact() {
        let today: Date = "2026-04-01".parse().unwrap();
        let parse = |phone: &str, email: &str, date: &str| {
            RequestInput::parse(
                "EHPAD Les Tilleuls",
                "care_home",
                "200",
                date,
                "12 rue des Lilas, accueil",
                "Mme Martin",
                phone,
                email,
                today,
            )
        };
        assert!(parse("04 78 12 34 56", "", "2026-04-10").is_ok());
        assert!(parse("", "direction@tilleuls.fr", "2026-04-01").is_ok());
        assert_eq!(
            parse("", "", "2026-04-10").unwrap_err(),
            Invalid::new("contact_phone", "phone_or_email")
        );
        assert_eq!(
            parse("call me", "", "2026-04-10").unwrap_err().code,
            "phone"
        );
        assert_eq!(
            parse("0478123456", "", "2026-03-31").unwrap_err().code,
            "date_past"
        );
        assert_eq!(
            parse("0478123456", "nobody", "2026-04-10")
                .unwrap_err()
                .field,
            "contact_email"
        );
    }

    #[test]
    fn campaign_forms_keep_lines_and_refuse_other_control_characters() {
        let c = CampaignInput::parse(
            "Visières pour l'EHPAD",
            ItemName::parse("visière", "", "feminine").unwrap(),
            "Ligne 1\r\nLigne 2",
            "PETG, 0,3 mm",
            "500",
            "Accueil du centre social\n\nPharmacie du marché\n",
        )
        .unwrap();
        assert_eq!(c.description, "Ligne 1\nLigne 2");
        assert_eq!(
            c.collection_points,
            vec!["Accueil du centre social", "Pharmacie du marché"]
        );
        let item = || ItemName::parse("i", "", "").unwrap();
        assert!(CampaignInput::parse("T", item(), "a\u{7}b", "", "5", "").is_err());
        assert!(CampaignInput::parse("T", item(), "", "", "0", "").is_err());
    }

    #[test]
    fn an_item_has_a_plural_and_a_gender() {
        let visor = ItemName::parse(" visière ", "", "feminine").unwrap();
        assert_eq!(
            (visor.singular.as_str(), visor.plural.as_str(), visor.gender),
            ("visière", "visières", WordGender::Feminine)
        );
        let eye = ItemName::parse("œil", "yeux", "").unwrap();
        assert_eq!(
            (eye.plural.as_str(), eye.gender),
            ("yeux", WordGender::Masculine)
        );
        assert_eq!(
            ItemName::parse("visière", "", "neuter").unwrap_err(),
            Invalid::new("item_gender", "choice")
        );
        assert_eq!(
            ItemName::parse("", "visières", "feminine")
                .unwrap_err()
                .field,
            "item"
        );
        assert_eq!(
            ItemName::parse("visière", "a\u{7}b", "").unwrap_err().field,
            "item_plural"
        );
    }

    #[test]
    fn the_stock_allows_as_many_items_as_its_scarcest_material() {
        let m = |name: &str, per_item, stock| Material {
            id: MaterialId(1),
            name: name.into(),
            unit: "pièce".into(),
            per_item,
            stock,
        };
        let bom = [m("feuille PET", 1, 120), m("élastique", 2, 50)];
        assert_eq!(items_the_stock_allows(&bom), Some(25));
        assert_eq!(items_the_stock_allows(&[]), None);
        assert_eq!(check_stock(&bom, 25), Ok(()));
        assert_eq!(
            check_stock(&bom, 30),
            Err(CampaignRefusal::NotEnoughStock {
                material: "élastique".into(),
                missing: 10,
                unit: "pièce".into()
            })
        );
    }

    #[test]
    fn every_refusal_has_a_listed_code() {
        use CampaignRefusal::*;
        let all = [
            NotOpen,
            NotRunning,
            StateChange {
                from: CampaignState::Open,
                to: CampaignState::Draft,
            },
            NotEnoughStock {
                material: "PET".into(),
                missing: 1,
                unit: "pièce".into(),
            },
            NotEnoughParts { available: 0 },
            NotEnoughItems { available: 0 },
            MoreThanAsked { remaining: 0 },
            RequestNotAccepted,
            RequestDecided,
            SplitQuantity { max: 1 },
            AlreadyReceived,
            NotReceived,
            AlreadyChecked,
            AcceptedMoreThanReceived { received: 0 },
            FileNotValidated,
            NoPrintsToCollect,
            TooManyRequests { minutes: 1 },
            UnknownCollectionPoint,
        ];
        let codes: Vec<&str> = all.iter().map(CampaignRefusal::code).collect();
        assert_eq!(codes, CampaignRefusal::CODES);
    }

    proptest! {
        #[test]
        fn drawing_in_order_takes_exactly_what_was_asked(
            sources in proptest::collection::vec(0..20i64, 0..8),
            quantity in 1..60i64,
        ) {
            let sources: Vec<(usize, i64)> = sources.into_iter().enumerate().collect();
            let total: i64 = sources.iter().map(|s| s.1).sum();
            match draw_in_order(&sources, quantity) {
                Some(taken) => {
                    prop_assert!(total >= quantity);
                    prop_assert_eq!(taken.iter().map(|t| t.1).sum::<i64>(), quantity);
                    for (id, n) in &taken {
                        prop_assert!(*n > 0 && *n <= sources[*id].1);
                    }
                    // Oldest first: every source before the last one used is emptied.
                    let last = taken.last().map(|t| t.0).unwrap_or(0);
                    for (id, available) in sources.iter().take(last) {
                        let used = taken.iter().find(|t| t.0 == *id).map_or(0, |t| t.1);
                        prop_assert_eq!(used, *available);
                    }
                }
                None => prop_assert!(total < quantity),
            }
        }
    }
}
