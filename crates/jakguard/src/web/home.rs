//! The home page: leads a newcomer to each part, with demo patients to try.

use super::clinician::{DEMO_AS_OF, DEMOS};
use super::render;
use crate::server::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

pub struct DrugLink {
    pub id: String,
    pub name: String,
    pub brands: String,
}

pub struct DemoLink {
    pub id: &'static str,
    pub label: &'static str,
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    drugs: Vec<DrugLink>,
    demos: Vec<DemoLink>,
    demo_as_of: &'static str,
}

pub async fn home(State(state): State<Arc<AppState>>) -> Response {
    let drugs = state
        .kb
        .drugs
        .iter()
        .enumerate()
        .filter(|(i, _)| state.kb.patient.drug_page(*i).is_some())
        .map(|(_, d)| DrugLink {
            id: d.id.clone(),
            name: d.name.clone(),
            brands: d.brands.join(", "),
        })
        .collect();
    let demos = DEMOS
        .iter()
        .map(|d| DemoLink {
            id: d.id,
            label: d.label,
        })
        .collect();
    render(
        StatusCode::OK,
        &Home {
            drugs,
            demos,
            demo_as_of: DEMO_AS_OF,
        },
    )
}
