//! Small view models shared by the pages: citations as the templates show them.

use engine::Knowledge;
use engine::kb::CitationId;
use engine::report::CitationOut;
use std::sync::Arc;

/// A source as a page shows it: short name, section, link, and whether it was verified
/// against the label.
pub struct Source {
    pub short: String,
    pub section: String,
    pub url: Option<String>,
    pub verified: bool,
}

impl Source {
    pub fn from_out(c: &CitationOut) -> Source {
        Source {
            short: c.short.clone(),
            section: c.section.clone(),
            url: c.url.clone(),
            verified: c.verified,
        }
    }
}

pub fn sources(kb: &Knowledge, ids: &[CitationId]) -> Vec<Source> {
    ids.iter()
        .filter_map(|&i| kb.citations_out.get(i))
        .map(|c| Source::from_out(c))
        .collect()
}

pub fn sources_out(list: &[Arc<CitationOut>]) -> Vec<Source> {
    list.iter().map(|c| Source::from_out(c)).collect()
}
