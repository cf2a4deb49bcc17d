//! One error type for the web layer. A handler returns `AppError`; the response carries only
//! the stable code and a catalogue key, and the `context` middleware renders it in the
//! person's language: JSON `{"error": {"code", "message"}}` under `/api`, an HTML page
//! elsewhere. Internal errors are logged with their whole source chain and shown to nobody.

use crate::i18n::Tr;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fabrique_controller::LabError;
use fabrique_controller::domain::Invalid;
use fabrique_controller::domain::fit::Refusal;

#[derive(Debug, Clone)]
pub struct AppError {
    pub status: StatusCode,
    /// Stable, for programs: `bad_credentials`, `not_found`, `invalid_input`...
    pub code: String,
    /// Catalogue key of the message people read.
    pub key: String,
    pub args: Vec<(String, String)>,
    /// An argument already in words below the web layer, in French and in English (what a
    /// machine's driver said).
    pub words: Option<Box<(String, [String; 2])>>,
    /// A refusal of the fit rule, whose words (machine kinds, states, findings) are
    /// translated too.
    pub refusal: Option<Box<Refusal>>,
    /// Seconds after which trying again makes sense (`Retry-After` on a 429).
    pub retry_after_s: Option<i64>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &str, key: &str) -> Self {
        Self {
            status,
            code: code.to_string(),
            key: key.to_string(),
            args: Vec::new(),
            words: None,
            refusal: None,
            retry_after_s: None,
        }
    }

    /// Whether a form that met this error is shown again with the reason (its status, its
    /// fields as typed): a refusal the person can act on, any 4xx but "not signed in",
    /// "not allowed" and "not found", which go to their own pages.
    pub fn shown_on_the_form(&self) -> bool {
        self.status.is_client_error()
            && !matches!(
                self.status,
                StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED
            )
    }

    /// Adds the `Retry-After` header this error asks for, if any.
    pub fn add_headers(&self, response: &mut Response) {
        if let Some(seconds) = self.retry_after_s
            && let Ok(value) = axum::http::HeaderValue::from_str(&seconds.max(1).to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
    }

    /// What a person reads, in `tr`'s language.
    pub fn text(&self, tr: &Tr) -> String {
        if let Some(refusal) = &self.refusal {
            return tr.refusal(refusal);
        }
        let which = usize::from(tr.lang == fabrique_controller::domain::Lang::En);
        let args: Vec<(&str, &str)> = self
            .args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(
                self.words
                    .iter()
                    .map(|w| (w.0.as_str(), w.1[which].as_str())),
            )
            .collect();
        tr.f(&self.key, &args)
    }

    /// An argument in words, French then English.
    pub fn words(mut self, name: &str, fr: String, en: String) -> Self {
        self.words = Some(Box::new((name.to_string(), [fr, en])));
        self
    }

    pub fn arg(mut self, name: &str, value: impl ToString) -> Self {
        self.args.push((name.to_string(), value.to_string()));
        self
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "error.unauthorized",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "error.forbidden")
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "error.not_found")
    }

    pub fn internal(context: &str, error: &dyn std::error::Error) -> Self {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(e) = source {
            chain.push_str(": ");
            chain.push_str(&e.to_string());
            source = e.source();
        }
        tracing::error!(context, error = %chain, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "error.internal",
        )
    }

    /// The error a bare status stands for, when something below the handlers (a body limit,
    /// a rejected path or JSON body, an unknown route) answered without our error body.
    pub fn from_status(status: StatusCode) -> Self {
        let (code, key) = match status.as_u16() {
            400 => ("bad_request", "error.bad_request"),
            401 => ("unauthorized", "error.unauthorized"),
            403 => ("forbidden", "error.forbidden"),
            404 => ("not_found", "error.not_found"),
            405 => ("method_not_allowed", "error.method_not_allowed"),
            413 => ("payload_too_large", "error.payload_too_large"),
            415 => ("unsupported_media_type", "error.unsupported_media_type"),
            422 => ("invalid_input", "error.invalid_input"),
            429 => ("too_many_requests", "error.too_many_requests"),
            s if s >= 500 => ("internal", "error.internal"),
            _ => ("bad_request", "error.bad_request"),
        };
        Self::new(status, code, key)
    }
}

impl From<Invalid> for AppError {
    fn from(e: Invalid) -> Self {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            &format!("invalid.{}", e.code),
        )
        .arg("field", e.field)
    }
}

impl From<LabError> for AppError {
    fn from(e: LabError) -> Self {
        match e {
            LabError::Invalid(invalid) => invalid.into(),
            LabError::Forbidden => AppError::forbidden(),
            LabError::NotFound => AppError::not_found(),
            LabError::Conflict { what } => AppError::new(
                StatusCode::CONFLICT,
                &format!("{what}_taken"),
                &format!("conflict.{what}"),
            ),
            LabError::BadCredentials => AppError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "login.bad_credentials",
            ),
            LabError::AccountDisabled => AppError::new(
                StatusCode::FORBIDDEN,
                "account_disabled",
                "login.account_disabled",
            ),
            LabError::Throttled { retry_after_s } => {
                let mut error = AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    "login.throttled",
                )
                .arg("minutes", (retry_after_s + 59) / 60);
                error.retry_after_s = Some(retry_after_s);
                error
            }
            LabError::Busy { retry_after_s } => {
                let mut error = AppError::new(StatusCode::TOO_MANY_REQUESTS, "busy", "login.busy");
                error.retry_after_s = Some(retry_after_s);
                error
            }
            LabError::CurrentSecretRequired => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "current_secret_required",
                "account.current_required",
            ),
            LabError::SelfAward => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "self_award",
                "badge.self_award",
            ),
            LabError::CurrentSecretWrong => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "current_secret_wrong",
                "account.current_wrong",
            ),
            LabError::Refused(refusal) => {
                let status = match refusal.code() {
                    "badge_required" | "supervision_not_allowed" => StatusCode::FORBIDDEN,
                    "slot_taken" | "own_booking" | "machine_unavailable" => StatusCode::CONFLICT,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let mut error = AppError::new(
                    status,
                    refusal.code(),
                    &format!("refusal.{}", refusal.code()),
                );
                for (name, value) in refusal.args() {
                    error = error.arg(name, value);
                }
                error
            }
            LabError::Campaign(refusal) => {
                let status = match refusal.code() {
                    "not_enough_stock" | "not_enough_parts" | "not_enough_items"
                    | "request_decided" | "already_received" | "already_checked" => {
                        StatusCode::CONFLICT
                    }
                    "too_many_requests" => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let mut error = AppError::new(
                    status,
                    refusal.code(),
                    &format!("campaign_refusal.{}", refusal.code()),
                );
                for (name, value) in refusal.args() {
                    error = error.arg(name, value);
                }
                error
            }
            LabError::Fit(refusal) => {
                let status = match refusal {
                    Refusal::MachineNotFree { .. } | Refusal::NotQueued { .. } => {
                        StatusCode::CONFLICT
                    }
                    Refusal::BadgeRequired { .. }
                    | Refusal::SupervisorNeeded
                    | Refusal::PersonNeeded => StatusCode::FORBIDDEN,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let mut error =
                    AppError::new(status, refusal.code(), &format!("fit.{}", refusal.code()));
                error.refusal = Some(Box::new(refusal));
                error
            }
            LabError::Hash(e) => AppError::internal("hashing", &e),
            LabError::Store(e) => AppError::internal("store", &e),
        }
    }
}

impl From<fabrique_controller::runtime::RuntimeError> for AppError {
    fn from(e: fabrique_controller::runtime::RuntimeError) -> Self {
        use fabrique_controller::runtime::RuntimeError;
        match e {
            RuntimeError::UnknownMachine => AppError::not_found(),
            RuntimeError::Stopped => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "machine_stopped",
                "board.stopped",
            ),
            RuntimeError::Refused(e) => e.into(),
        }
    }
}

impl From<fabrique_controller::runtime::PanelError> for AppError {
    fn from(e: fabrique_controller::runtime::PanelError) -> Self {
        use fabrique_controller::runtime::PanelError;
        use fabrique_machines::protocol::grbl::Lang;
        let code = e.code();
        let refused = |key: &str| AppError::new(StatusCode::CONFLICT, code, key);
        match e {
            PanelError::Forbidden => AppError::forbidden(),
            PanelError::NotGrbl => refused("panel.error.not_grbl"),
            PanelError::Busy => refused("panel.error.busy"),
            PanelError::HeldBy(name) => refused("panel.error.held").arg("name", name),
            PanelError::NoJob => AppError::new(StatusCode::NOT_FOUND, code, "panel.error.no_job"),
            PanelError::Link(why) => refused("panel.error.link").words(
                "why",
                why.message(Lang::Fr),
                why.message(Lang::En),
            ),
            PanelError::Runtime(e) => e.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

pub type AppResult<T> = Result<T, AppError>;
