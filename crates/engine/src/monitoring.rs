//! The monitoring schedule of each drug: the plan from the start date for a patient about to
//! start, or — for a patient already on the drug — what is due or overdue now. An overdue
//! test is also a data-needed finding, because missing monitoring is not normal.

use crate::evaluate::citations;
use crate::facts::Facts;
use crate::kb::{Category, Decision, DrugId, Knowledge, MonitoringItem, Severity};
use crate::report::{Finding, MonitoringEntry, MonitoringStatus};
use chrono::{Days, NaiveDate};

/// How close a due date must be to count as "due soon".
const DUE_SOON_DAYS: u64 = 14;
/// How many repeat dates the plan lists.
const PLAN_REPEATS: u32 = 4;

fn weeks(d: NaiveDate, w: u32) -> NaiveDate {
    d.checked_add_days(Days::new(u64::from(w) * 7)).unwrap_or(d)
}

/// One planned check: due from `from`, at the latest by `by` (the same day for the repeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedCheck {
    pub from: NaiveDate,
    pub by: NaiveDate,
}

/// The plan of one monitoring item from a start date: the first check's window, then the
/// repeats of the first year (the plan the reports and the patient calendar both show).
pub fn plan(item: &MonitoringItem, start: NaiveDate) -> Vec<PlannedCheck> {
    let mut checks = vec![PlannedCheck {
        from: weeks(start, item.first_from_week),
        by: weeks(start, item.first_to_week),
    }];
    if let Some(every) = item.every_weeks {
        for i in 1..=PLAN_REPEATS {
            let d = weeks(start, item.first_to_week + every * i);
            checks.push(PlannedCheck { from: d, by: d });
        }
    }
    checks
}

pub fn for_drug(
    kb: &Knowledge,
    facts: &Facts<'_>,
    drug: DrugId,
    treatment_start: Option<NaiveDate>,
) -> (Vec<MonitoringEntry>, Vec<Finding>) {
    let mut entries = vec![];
    let mut findings = vec![];
    let on_treatment = treatment_start.is_some();
    let start = treatment_start.unwrap_or(facts.as_of);
    for item in kb.monitoring.iter().filter(|m| m.drug == drug) {
        let schedule = plan(item, start).into_iter().map(|c| c.from).collect();
        let first_from = weeks(start, item.first_from_week);
        let first_by = weeks(start, item.first_to_week);
        // The last complete check: the oldest of the latest results of the item's labs, on or
        // after the first-check window opened.
        let latest: Option<NaiveDate> = item
            .labs
            .iter()
            .map(|&l| {
                facts.labs[l]
                    .iter()
                    .filter(|r| !r.computed)
                    .map(|r| r.date)
                    .max()
            })
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().min())
            .filter(|d| *d >= first_from);
        let (status, due_from, due_by) = if !on_treatment {
            (MonitoringStatus::Planned, Some(first_from), Some(first_by))
        } else {
            match (latest, item.every_weeks) {
                (Some(_), None) => (MonitoringStatus::Done, None, None),
                (None, _) => (
                    status_for(facts.as_of, first_by),
                    Some(first_from),
                    Some(first_by),
                ),
                (Some(last), Some(every)) => {
                    let due = weeks(last, every);
                    (status_for(facts.as_of, due), None, Some(due))
                }
            }
        };
        let drug_id = kb.drugs[drug].id.clone();
        if status == MonitoringStatus::Overdue {
            let first_lab = item
                .labs
                .first()
                .map(|&l| kb.labs[l].order.clone())
                .unwrap_or_default();
            let by = due_by.map(|d| d.to_string()).unwrap_or_default();
            findings.push(Finding {
                rule: format!("monitoring.{}", item.id),
                title: format!("Monitoring overdue: {}", item.title),
                category: Category::Monitoring,
                severity: Severity::Warning,
                decision: Decision::DataNeeded,
                summary: format!("{} was due by {by} and is overdue", item.title),
                action: format!("Order {first_lab}"),
                citations: citations(kb, &item.citations),
                evidence: vec![],
                verified: item.verified,
                needed_by: vec![],
            });
        }
        entries.push(MonitoringEntry {
            drug: drug_id,
            id: item.id.clone(),
            title: item.title.clone(),
            labs: item.labs.iter().map(|&l| kb.labs[l].id.clone()).collect(),
            status,
            due_from,
            due_by,
            schedule,
            last_done: latest,
            verified: item.verified,
            citations: citations(kb, &item.citations),
        });
    }
    (entries, findings)
}

fn status_for(as_of: NaiveDate, due: NaiveDate) -> MonitoringStatus {
    if as_of > due {
        MonitoringStatus::Overdue
    } else if (due - as_of).num_days() <= DUE_SOON_DAYS as i64 {
        MonitoringStatus::DueSoon
    } else {
        MonitoringStatus::UpToDate
    }
}
