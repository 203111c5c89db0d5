//! The HTTP server: the CDS Hooks 2.0 service (discovery, the three hooks, feedback, with JWT
//! security and CORS) and the web app (`crate::web`), with body and time limits, a
//! concurrency limit and graceful shutdown.
//!
//! `app(state)` is the whole HTTP surface as a `Router` (tests call it through a real socket
//! with `run`); `run(listener, state, shutdown)` serves it until `shutdown` completes, letting
//! requests in flight finish.

pub mod auth;
pub mod cards;
pub mod cds;
pub mod discovery;
mod feedback;
mod fhir_client;
pub(crate) mod hooks;

use crate::config::Config;
use crate::store::Store;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use engine::Knowledge;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Everything a request needs. Shared read-only by all requests; the fields that change
/// (the store, the JWT replay cache inside `verifier`) synchronise themselves.
pub struct AppState {
    pub kb: Knowledge,
    pub config: Config,
    /// Durable feedback and the audit log.
    pub store: Arc<dyn Store>,
    /// `None` only in insecure (local demo) mode.
    pub verifier: Option<auth::Verifier>,
    /// Client for fetching FHIR data the prefetch did not bring.
    pub http: reqwest::Client,
    pub services: Vec<cds::Service>,
    /// Fixed "today" (tests, demos); `None`: the system date at each request.
    pub as_of: Option<NaiveDate>,
    /// Records behind the web app's assessment links (CDS Hooks cards, uploads): in memory
    /// only, for an hour, under unguessable ids (see `web::cache`).
    pub assessments: crate::web::AssessmentCache,
}

impl AppState {
    pub fn today(&self) -> NaiveDate {
        self.as_of
            .unwrap_or_else(|| chrono::Utc::now().date_naive())
    }
}

/// The one error type of the handlers: logged with its details, shown as JSON.
#[derive(Debug)]
pub enum AppError {
    BadRequest(Vec<String>),
    Unauthorized(String),
    NotFound(String),
    PreconditionFailed(String),
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (error, problems) = match self {
            AppError::BadRequest(p) => (
                "the request is not a usable CDS Hooks request".to_string(),
                p,
            ),
            AppError::Unauthorized(m) | AppError::NotFound(m) | AppError::PreconditionFailed(m) => {
                (m, vec![])
            }
            AppError::Internal(m) => {
                // The details go to the log, not to the client.
                tracing::error!(error = %m, "internal error");
                ("internal error".to_string(), vec![])
            }
        };
        let body = serde_json::json!({ "error": error, "problems": problems });
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

const INSECURE_HEADER: &str = "x-jakguard-security";

pub fn app(state: Arc<AppState>) -> Router {
    let cors = {
        let origins = &state.config.cors_origins;
        let allow = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600))
    };
    let insecure = state.verifier.is_none();
    let limits = (
        axum::extract::DefaultBodyLimit::max(state.config.max_body_bytes),
        tower::limit::ConcurrencyLimitLayer::new(state.config.concurrency_limit),
        tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(state.config.request_timeout_secs),
        ),
    );
    let routes = Router::new()
        .route("/cds-services", get(hooks::discovery))
        .route("/cds-services/{id}", post(hooks::service))
        .route("/cds-services/{id}/feedback", post(feedback::feedback))
        .route("/healthz", get(|| async { "ok" }))
        .layer(cors)
        // The web pages are merged after the CORS layer: they are same-origin only and carry
        // their own security headers (`web::routes`).
        .merge(crate::web::routes())
        .with_state(state);
    // The limits wrap the whole router, once: `Router::layer` would wrap every route on its
    // own, giving each route its own concurrency limit (the sum of them being no limit), and
    // every request would clone each layer's boxed service.
    Router::new().fallback_service(
        tower::ServiceBuilder::new()
            .option_layer(insecure.then(|| {
                tower_http::set_header::SetResponseHeaderLayer::overriding(
                    HeaderName::from_static(INSECURE_HEADER),
                    HeaderValue::from_static("INSECURE: development mode, JWT not verified"),
                )
            }))
            .layer(limits)
            .service(routes),
    )
}

/// Serves `app(state)` on `listener` until `shutdown` completes; requests in flight finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = Arc::clone(&state.store);
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    // The audit queue is written before the process ends.
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .ok();
    Ok(())
}

/// Unix seconds now (for JWT time checks).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
