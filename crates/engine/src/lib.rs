//! JAKGuard engine: medication-safety assessment for JAK inhibitors in axial
//! spondyloarthritis, as a pure function of (knowledge, patient record, date).
//!
//! The engine reads no files, clock, environment or network. Callers pass the knowledge
//! text (`kb::Knowledge::load`), a record (`fhir::parse_bundle` or `fhir::RecordBuilder`)
//! and an explicit `as_of` date, and get back a `report::Report` with decisions, doses,
//! findings with evidence and citations, the screening checklist, the monitoring schedule
//! and disease-activity scores. See ARCHITECTURE.md for the map.

pub mod codes;
pub mod date;
pub mod evaluate;
pub mod facts;
pub mod fhir;
pub mod kb;
pub mod monitoring;
pub mod predicate;
pub mod record;
pub mod report;
pub mod scores;
pub mod screening;
pub mod units;

pub use evaluate::{Options, assess};
pub use kb::{Knowledge, Source};

/// The knowledge shipped with this build (`knowledge/`), embedded at compile time.
pub fn embedded_knowledge() -> Vec<Source> {
    embedded::FILES
        .iter()
        .map(|(path, text)| Source {
            path: format!("knowledge/{path}"),
            text: (*text).to_string(),
        })
        .collect()
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_knowledge.rs"));
}
