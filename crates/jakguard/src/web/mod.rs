//! The web app for patients and clinicians: server-rendered HTML pages (askama templates in
//! `crates/jakguard/templates/`), working without JavaScript.
//!
//! Patients: the "before you start" questionnaire and its printable summary (also a FHIR
//! QuestionnaireResponse), the symptom checker, the drug pages and the monitoring calendar
//! (.ics). Clinicians: upload or paste a FHIR Bundle, fill the quick-check form, or try a
//! demo patient, and see the full assessment and a printable pre-treatment checklist; the CDS
//! Hooks cards link to the same view. All clinical text comes from `knowledge/` through
//! `AppState::kb`.
//!
//! Nothing a visitor enters is stored on disk or logged. The only server-side memory is the
//! short-lived assessment cache (`cache.rs`), so that a card link or a "print checklist" link
//! can be opened without sending the record again.

pub mod cache;
mod calendar;
mod clinician;
mod drugs;
mod home;
mod questionnaire;
mod quick;
mod symptoms;
mod view;

use crate::server::AppState;
use askama::Template;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;

pub use cache::AssessmentCache;
pub use clinician::{assessment_link, request_link};
pub use questionnaire::{FhirQuestionnaire, fhir_questionnaire};

/// Content-Security-Policy of every HTML page: our own styles and scripts only, no inline
/// script, no framing, forms only to ourselves.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

const SITE_CSS: &str = include_str!("../../static/site.css");
const SITE_JS: &str = include_str!("../../static/site.js");

/// The web routes, with the security headers of HTML pages. Merged into `server::app`
/// outside the CDS Hooks CORS layer: the pages are same-origin only.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(home::home))
        .route(
            "/patient/before-you-start",
            get(questionnaire::form).post(questionnaire::summary),
        )
        .route(
            "/patient/before-you-start/Questionnaire.json",
            get(questionnaire::questionnaire_json),
        )
        .route(
            "/patient/before-you-start/response",
            axum::routing::post(questionnaire::response_json),
        )
        .route(
            "/patient/symptoms",
            get(symptoms::form).post(symptoms::result),
        )
        .route("/patient/drugs/{drug}", get(drugs::page))
        .route(
            "/patient/calendar",
            get(calendar::form).post(calendar::schedule),
        )
        .route(
            "/patient/calendar.ics",
            axum::routing::post(calendar::ics_download),
        )
        .route("/clinician", get(clinician::form))
        .route(
            "/clinician/assess",
            axum::routing::post(clinician::assess_upload),
        )
        .route(
            "/clinician/demo",
            axum::routing::post(clinician::assess_demo),
        )
        .route("/clinician/quick", axum::routing::post(quick::assess_quick))
        .route(
            "/clinician/assessment/{id}",
            get(clinician::assessment_page),
        )
        .route(
            "/clinician/assessment/{id}/checklist",
            get(clinician::checklist_page),
        )
        .route("/static/site.css", get(css))
        .route("/static/site.js", get(js))
        .fallback(not_found)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // Pages may show a patient's answers or record: never cached by the browser or a proxy.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

async fn css() -> Response {
    static_file("text/css; charset=utf-8", SITE_CSS)
}

async fn js() -> Response {
    static_file("text/javascript; charset=utf-8", SITE_JS)
}

fn static_file(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Renders a page; a template failure is our bug, shown as a plain error page.
pub(crate) fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><html lang=\"en\"><head><title>Error — JAKGuard</title></head><body><main><h1>Something went wrong</h1><p>The page could not be shown. Please try again.</p></main></body></html>".to_string()),
            )
                .into_response()
        }
    }
}

/// An error page: what went wrong in plain words and where to go next.
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub title: String,
    pub message: String,
    pub back: &'static str,
    pub back_label: &'static str,
}

pub(crate) fn error_page(
    status: StatusCode,
    title: impl Into<String>,
    message: impl Into<String>,
    back: &'static str,
    back_label: &'static str,
) -> Response {
    render(
        status,
        &ErrorPage {
            title: title.into(),
            message: message.into(),
            back,
            back_label,
        },
    )
}

async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
        "/",
        "Go to the home page",
    )
}

/// A file download: FHIR JSON or iCalendar, never cached.
pub(crate) fn download(content_type: &'static str, filename: &str, body: String) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
            (
                HeaderName::from_static("x-robots-tag"),
                HeaderValue::from_static("noindex"),
            ),
        ],
        body,
    )
        .into_response()
}
