//! The feedback endpoint: accepted and overridden cards, stored durably before the answer.
//! Free-text override comments may hold patient details, so only their presence is kept.

use super::cds::{FeedbackRequest, feedback_problems};
use super::hooks::authorize;
use super::{AppError, AppState};
use crate::store::FeedbackEntry;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use std::sync::Arc;

pub async fn feedback(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    if !state.services.iter().any(|s| s.id == id) {
        return Err(AppError::NotFound(format!("no CDS service `{id}`")));
    }
    // The audience is the feedback URL (as the sandbox signs it); the service URL is also
    // accepted, since the spec names only service URLs.
    let path = format!("/cds-services/{id}/feedback");
    if authorize(&state, &headers, &path).await.is_err() {
        authorize(&state, &headers, &format!("/cds-services/{id}")).await?;
    }
    let req: FeedbackRequest = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(vec![format!("body: {e}")]))?;
    let problems = feedback_problems(&req);
    if !problems.is_empty() {
        return Err(AppError::BadRequest(problems));
    }
    let entries: Vec<FeedbackEntry> = req
        .feedback
        .into_iter()
        .map(|f| FeedbackEntry {
            service: id.clone(),
            card: f.card,
            outcome: f.outcome,
            outcome_timestamp: f.outcome_timestamp,
            accepted_suggestions: f.accepted_suggestions.into_iter().map(|s| s.id).collect(),
            override_code: f
                .override_reason
                .as_ref()
                .and_then(|r| r.reason.as_ref())
                .map(|c| c.code.clone()),
            override_display: f
                .override_reason
                .as_ref()
                .and_then(|r| r.reason.as_ref())
                .and_then(|c| c.display.clone()),
            has_comment: f.override_reason.as_ref().is_some_and(|r| {
                r.user_comment
                    .as_ref()
                    .is_some_and(|c| !c.trim().is_empty())
            }),
        })
        .collect();
    let store = Arc::clone(&state.store);
    let received = chrono::Utc::now().to_rfc3339();
    tokio::task::spawn_blocking(move || store.record_feedback(&entries, &received))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(Json(serde_json::json!({})))
}
