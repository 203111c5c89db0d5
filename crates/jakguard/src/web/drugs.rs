//! The drug pages for patients (`knowledge/patient/drug-pages.toml`).

use super::render;
use super::view::{Source, sources};
use crate::server::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

struct SectionView {
    id: String,
    heading: String,
    text: Vec<String>,
    points: Vec<String>,
    srcs: Vec<Source>,
}

#[derive(Template)]
#[template(path = "drug.html")]
struct DrugPage {
    name: String,
    brands: String,
    summary: String,
    sections: Vec<SectionView>,
}

pub async fn page(State(state): State<Arc<AppState>>, Path(drug): Path<String>) -> Response {
    let kb = &state.kb;
    let Some((di, page)) = kb
        .drugs
        .iter()
        .position(|d| d.id == drug)
        .and_then(|di| kb.patient.drug_page(di).map(|p| (di, p)))
    else {
        return super::error_page(
            StatusCode::NOT_FOUND,
            "No page for this medicine",
            "JAKGuard has pages for tofacitinib and upadacitinib only.",
            "/",
            "Go to the home page",
        );
    };
    let d = &kb.drugs[di];
    render(
        StatusCode::OK,
        &DrugPage {
            name: d.name.clone(),
            brands: d.brands.join(", "),
            summary: page.summary.clone(),
            sections: page
                .sections
                .iter()
                .map(|s| SectionView {
                    id: s.id.clone(),
                    heading: s.heading.clone(),
                    text: s.text.clone(),
                    points: s.points.clone(),
                    srcs: sources(kb, &s.citations),
                })
                .collect(),
        },
    )
}
