//! `jakguard knowledge check|list`: what a reviewer runs after editing `knowledge/`.

use crate::ListFormat;
use engine::Knowledge;
use serde::Serialize;
use std::io::Write;

pub fn summary(kb: &Knowledge, source: &str) -> String {
    let unverified = kb.rules.iter().filter(|r| !r.verified).count();
    format!(
        "knowledge OK ({source}): version {}, {} drugs, {} rules ({unverified} marked unverified), {} value sets, {} labs, {} citations, {} screening items, {} monitoring items, {} scores; patient pages: {} questions, {} symptoms, {} drug pages",
        kb.version,
        kb.drugs.len(),
        kb.rules.len(),
        kb.valuesets.len(),
        kb.labs.len(),
        kb.citations.len(),
        kb.screening.len(),
        kb.monitoring.len(),
        kb.scores.len(),
        kb.patient.questions.len(),
        kb.patient.symptoms.len(),
        kb.patient.drug_pages.len()
    )
}

#[derive(Serialize)]
struct RuleRow<'a> {
    id: &'a str,
    drugs: Vec<&'a str>,
    phase: &'static str,
    category: engine::kb::Category,
    decision: engine::kb::Decision,
    severity: engine::kb::Severity,
    dose: Option<&'a str>,
    verified: bool,
    title: &'a str,
    sources: Vec<String>,
}

pub fn list(kb: &Knowledge, format: ListFormat) -> anyhow::Result<()> {
    let rows: Vec<RuleRow<'_>> = kb
        .rules
        .iter()
        .map(|r| RuleRow {
            id: &r.id,
            drugs: r.drugs.iter().map(|&d| kb.drugs[d].id.as_str()).collect(),
            phase: match r.phase {
                engine::kb::Phase::Start => "start",
                engine::kb::Phase::OnTreatment => "on-treatment",
                engine::kb::Phase::Any => "any",
            },
            category: r.category,
            decision: r.decision,
            severity: r.severity,
            dose: r.dose.as_deref(),
            verified: r.verified,
            title: &r.title,
            sources: r
                .citations
                .iter()
                .map(|&c| {
                    let c = &kb.citations[c];
                    format!(
                        "{} {}{}",
                        c.source,
                        c.section,
                        if c.verified { "" } else { " [UNVERIFIED]" }
                    )
                })
                .collect(),
        })
        .collect();
    let mut out = anstream::stdout();
    match format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
        ListFormat::Text => {
            for r in rows {
                let decision = serde_json::to_value(r.decision)?;
                writeln!(
                    out,
                    "{:<40} {:<26} {:<13} {:<13}{}  {}",
                    r.id,
                    r.drugs.join(","),
                    r.phase,
                    decision.as_str().unwrap_or(""),
                    if r.verified { "" } else { " [unverified]" },
                    r.title
                )?;
                for s in r.sources {
                    writeln!(out, "{:<40} source: {s}", "")?;
                }
            }
        }
    }
    Ok(())
}
