//! The assessment report: the JSON contract other tools depend on.
//!
//! `docs/assessment.schema.json` documents this shape; a test validates real output against
//! it. Field names are the contract: add fields freely, never rename or remove one.

use crate::codes::MatchKind;
use crate::kb::{Category, Decision, Phase, Severity};
use crate::predicate::Evidence;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(serialize_with = "iso_date::one")]
    pub as_of: NaiveDate,
    pub knowledge: KnowledgeInfo,
    pub patient: PatientSummary,
    pub assessments: Vec<Assessment>,
    pub screening: Vec<ScreeningEntry>,
    pub monitoring: Vec<MonitoringEntry>,
    pub scores: Vec<ScoreResult>,
    /// Parts of the input that could not be used (they also appear as data-quality findings).
    pub errors: Vec<InputProblem>,
    pub disclaimer: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KnowledgeInfo {
    pub version: String,
    pub title: String,
    pub jurisdiction: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PatientSummary {
    pub id: Option<String>,
    pub age: Option<i32>,
    /// `female`, `male`, `other`, `unknown`, or null when not recorded.
    pub sex: Option<&'static str>,
    #[serde(serialize_with = "iso_date::maybe")]
    pub birth_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    pub drug: String,
    pub brands: Vec<String>,
    /// `start` (not on this drug yet) or `on-treatment`.
    pub phase: &'static str,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "iso_date::maybe"
    )]
    pub treatment_start: Option<NaiveDate>,
    pub decision: Decision,
    pub dose: Option<DoseAdvice>,
    pub findings: Vec<Finding>,
    /// True when any finding rests on knowledge marked unverified.
    pub uses_unverified_knowledge: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoseAdvice {
    #[serde(with = "rust_decimal::serde::float")]
    pub mg: Decimal,
    pub times_per_day: u32,
    pub product: String,
    pub text: String,
    /// The rules that set this dose (empty for the usual dose).
    pub basis: Vec<String>,
    /// True while data is still needed: the dose may change once it arrives.
    pub provisional: bool,
    pub citations: Vec<Arc<CitationOut>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule: String,
    pub title: String,
    pub category: Category,
    pub severity: Severity,
    /// What this finding alone would make of the decision.
    pub decision: Decision,
    pub summary: String,
    pub action: String,
    pub citations: Vec<Arc<CitationOut>>,
    pub evidence: Vec<Evidence>,
    /// False when the knowledge behind it could not be checked against the label: the
    /// conservative reading was encoded.
    pub verified: bool,
    /// For data-needed findings: the rules that could not be evaluated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needed_by: Vec<String>,
}

/// A citation as reports give it. Built once per knowledge base; its JSON is written once
/// then and copied into every report (a population screen writes it millions of times).
#[derive(Debug, Clone)]
pub struct CitationOut {
    pub id: String,
    pub short: String,
    pub source: String,
    pub section: String,
    pub url: Option<String>,
    pub verified: bool,
    json: Box<serde_json::value::RawValue>,
}

/// The fields of `CitationOut` as they appear in JSON.
#[derive(Serialize)]
struct CitationFields<'a> {
    id: &'a str,
    short: &'a str,
    source: &'a str,
    section: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    verified: bool,
}

impl CitationOut {
    pub fn new(
        id: String,
        short: String,
        source: String,
        section: String,
        url: Option<String>,
        verified: bool,
    ) -> Self {
        let fields = CitationFields {
            id: &id,
            short: &short,
            source: &source,
            section: &section,
            url: url.as_deref(),
            verified,
        };
        // Serialising plain strings and a bool cannot fail; `null` would only show a bug.
        let json = serde_json::value::to_raw_value(&fields).unwrap_or_default();
        CitationOut {
            id,
            short,
            source,
            section,
            url,
            verified,
            json,
        }
    }
}

impl PartialEq for CitationOut {
    fn eq(&self, other: &Self) -> bool {
        self.json.get() == other.json.get()
    }
}

impl Eq for CitationOut {}

impl Serialize for CitationOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ScreeningStatus {
    DoneNormal,
    Abnormal,
    Missing,
    TooOld,
    NotApplicable,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScreeningEntry {
    pub id: String,
    pub title: String,
    pub status: ScreeningStatus,
    pub detail: String,
    pub evidence: Vec<Evidence>,
    /// Drugs for which a rule found this item abnormal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub abnormal_for: Vec<String>,
    pub action: String,
    pub citations: Vec<Arc<CitationOut>>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MonitoringStatus {
    /// Not started yet: the plan from the start date.
    Planned,
    UpToDate,
    DueSoon,
    Overdue,
    /// A one-off check already done; later checks follow routine care.
    Done,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonitoringEntry {
    pub drug: String,
    pub id: String,
    pub title: String,
    pub labs: Vec<String>,
    pub status: MonitoringStatus,
    /// The next check: due between these dates.
    #[serde(serialize_with = "iso_date::maybe")]
    pub due_from: Option<NaiveDate>,
    #[serde(serialize_with = "iso_date::maybe")]
    pub due_by: Option<NaiveDate>,
    /// The plan from the start date (first check, then the repeats in the first year).
    #[serde(serialize_with = "iso_date::many")]
    pub schedule: Vec<NaiveDate>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "iso_date::maybe"
    )]
    pub last_done: Option<NaiveDate>,
    pub verified: bool,
    pub citations: Vec<Arc<CitationOut>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreInput {
    pub name: String,
    #[serde(with = "rust_decimal::serde::float")]
    pub value: Decimal,
    pub source: String,
    #[serde(serialize_with = "iso_date::one")]
    pub date: NaiveDate,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreResult {
    pub id: String,
    pub name: String,
    #[serde(with = "rust_decimal::serde::float")]
    pub value: Decimal,
    pub state: Option<String>,
    #[serde(serialize_with = "iso_date::one")]
    pub date: NaiveDate,
    pub inputs: Vec<ScoreInput>,
    pub citations: Vec<Arc<CitationOut>>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InputProblem {
    pub kind: String,
    pub location: String,
    pub message: String,
}

pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::OnTreatment => "on-treatment",
        _ => "start",
    }
}

/// For text output: how a finding was matched.
pub fn match_note(m: Option<MatchKind>) -> &'static str {
    match m {
        Some(MatchKind::Text) => " [matched by name only]",
        _ => "",
    }
}

/// A report as a population screen's result line gives it by default: the per-drug
/// decisions, doses and findings exactly as the full report has them, and the screening
/// checklist and monitoring plan as statuses and dates only — each checklist item's status
/// (and the drugs it is abnormal for), each monitoring test's status, due window and last
/// date. Left out: the knowledge's titles, actions and citations of those entries (the same
/// for every patient), and the patient's checklist details and evidence and the first-year
/// monitoring schedule; the findings already name what is missing, old or abnormal. The full
/// report is `assess`'s (and `screen --full-reports`'). About 60 % of the full line's bytes.
pub struct Brief<'a>(pub &'a Report);

impl Report {
    pub fn brief(&self) -> Brief<'_> {
        Brief(self)
    }
}

impl Serialize for Brief<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let r = self.0;
        let mut out = s.serialize_struct("Brief", 9)?;
        out.serialize_field("as_of", &iso_date::One(&r.as_of))?;
        out.serialize_field("knowledge", &r.knowledge)?;
        out.serialize_field("patient", &r.patient)?;
        out.serialize_field("assessments", &r.assessments)?;
        out.serialize_field("screening", &Seq(&r.screening, ScreeningBrief::of))?;
        out.serialize_field("monitoring", &Seq(&r.monitoring, MonitoringBrief::of))?;
        out.serialize_field("scores", &r.scores)?;
        out.serialize_field("errors", &r.errors)?;
        out.serialize_field("disclaimer", &r.disclaimer)?;
        out.end()
    }
}

/// A slice serialised through a view of each element.
struct Seq<'a, T, F>(&'a [T], F);

impl<'a, T, V: Serialize, F: Fn(&'a T) -> V> Serialize for Seq<'a, T, F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(&self.1))
    }
}

#[derive(Serialize)]
struct ScreeningBrief<'a> {
    id: &'a str,
    status: ScreeningStatus,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    abnormal_for: &'a [String],
}

impl<'a> ScreeningBrief<'a> {
    fn of(e: &'a ScreeningEntry) -> Self {
        ScreeningBrief {
            id: &e.id,
            status: e.status,
            abnormal_for: &e.abnormal_for,
        }
    }
}

#[derive(Serialize)]
struct MonitoringBrief<'a> {
    drug: &'a str,
    id: &'a str,
    status: MonitoringStatus,
    #[serde(serialize_with = "iso_date::maybe")]
    due_from: Option<NaiveDate>,
    #[serde(serialize_with = "iso_date::maybe")]
    due_by: Option<NaiveDate>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "iso_date::maybe"
    )]
    last_done: Option<NaiveDate>,
}

impl<'a> MonitoringBrief<'a> {
    fn of(e: &'a MonitoringEntry) -> Self {
        MonitoringBrief {
            drug: &e.drug,
            id: &e.id,
            status: e.status,
            due_from: e.due_from,
            due_by: e.due_by,
            last_done: e.last_done,
        }
    }
}

/// Dates as reports write them, `YYYY-MM-DD`, without going through `fmt` for every digit
/// (a population screen writes millions of them). Years outside 0–9999 take chrono's own
/// serialisation, so the text is always exactly chrono's.
pub(crate) mod iso_date {
    use chrono::{Datelike, NaiveDate};
    use serde::{Serialize, Serializer};

    pub fn one<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        let Ok(year) = u16::try_from(d.year()) else {
            return d.serialize(s);
        };
        if year > 9999 {
            return d.serialize(s);
        }
        let mut b = *b"0000-00-00";
        let digits = |out: &mut [u8], mut v: u32| {
            for slot in out.iter_mut().rev() {
                *slot = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        digits(&mut b[0..4], u32::from(year));
        digits(&mut b[5..7], d.month());
        digits(&mut b[8..10], d.day());
        // Only ASCII digits and dashes were written.
        match std::str::from_utf8(&b) {
            Ok(text) => s.serialize_str(text),
            Err(_) => d.serialize(s),
        }
    }

    /// A date that serialises as `one` writes it.
    pub struct One<'a>(pub &'a NaiveDate);

    impl Serialize for One<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            one(self.0, s)
        }
    }

    pub fn maybe<S: Serializer>(d: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => one(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn many<S: Serializer>(ds: &[NaiveDate], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ds.iter().map(One))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_text_is_chronos_for_every_year() {
            let mut dates: Vec<NaiveDate> = [
                (2026, 3, 1),
                (1, 1, 1),
                (0, 12, 31),
                (999, 7, 4),
                (9999, 12, 31),
                (10000, 1, 1),
                (-1, 6, 15),
                (1975, 12, 5),
            ]
            .iter()
            .filter_map(|&(y, m, d)| NaiveDate::from_ymd_opt(y, m, d))
            .collect();
            dates.push(NaiveDate::MIN);
            dates.push(NaiveDate::MAX);
            assert_eq!(dates.len(), 10);
            for d in &dates {
                let ours = one(d, serde_json::value::Serializer).unwrap();
                assert_eq!(ours, serde_json::to_value(d).unwrap(), "{d:?}");
            }
            let many_ours = many(&dates, serde_json::value::Serializer).unwrap();
            assert_eq!(many_ours, serde_json::to_value(&dates).unwrap());
            assert_eq!(
                maybe(&None, serde_json::value::Serializer).unwrap(),
                serde_json::Value::Null
            );
        }
    }
}
