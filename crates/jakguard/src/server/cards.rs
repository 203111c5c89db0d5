//! From an assessment to CDS Hooks cards: one card per drug assessed, its indicator from the
//! decision and findings, markdown detail with the evidence and citations, and suggestions
//! that are orders or order changes (order the missing tests, cancel the order, change the
//! dose).

use super::cds::{Action, Card, Coding, Source, Suggestion};
use engine::Knowledge;
use engine::kb::{Decision, Severity};
use engine::report::{Assessment, Finding, Report, ScreeningStatus};
use serde_json::{Value, json};

/// What the card needs to know about the request.
pub struct CardContext<'a> {
    pub patient_id: &'a str,
    /// The draft MedicationRequest for this drug, when the hook is an order hook.
    pub draft: Option<&'a Value>,
}

const OVERRIDE_SYSTEM: &str = "urn:jakguard:override-reason";
const OVERRIDE_REASONS: &[(&str, &str)] = &[
    (
        "benefit-outweighs-risk",
        "Benefit outweighs the risk for this patient",
    ),
    (
        "data-outside-record",
        "The data is available outside this record",
    ),
    ("already-addressed", "Already addressed or ordered"),
    ("shared-decision", "Discussed and decided with the patient"),
];

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

fn top(a: &Assessment) -> Option<&Finding> {
    a.findings
        .iter()
        .find(|f| f.decision == a.decision && !f.rule.starts_with("data-quality."))
}

fn decision_words(a: &Assessment) -> &'static str {
    match (a.phase, a.decision) {
        ("on-treatment", Decision::DoNotStart) => "hold or stop",
        ("on-treatment", Decision::DataNeeded) => "data needed",
        ("on-treatment", Decision::Caution) => "continue with caution",
        ("on-treatment", Decision::Eligible) => "continue",
        (_, Decision::DoNotStart) => "do not start",
        (_, Decision::DataNeeded) => "data needed before starting",
        (_, Decision::Caution) => "start with caution",
        (_, Decision::Eligible) => "no label safety issue found",
    }
}

fn summary(a: &Assessment) -> String {
    let drug = capitalise(&a.drug);
    let words = decision_words(a);
    let tail = match a.decision {
        Decision::DataNeeded => {
            let needed: Vec<String> = a
                .findings
                .iter()
                .filter(|f| f.rule.starts_with("data-needed.") || f.rule.starts_with("monitoring."))
                .map(|f| {
                    f.title
                        .trim_start_matches("Data needed: ")
                        .trim_start_matches("Monitoring overdue: ")
                        .to_string()
                })
                .collect();
            match needed.len() {
                0 => top(a).map(|f| f.title.clone()).unwrap_or_default(),
                1 => needed[0].clone(),
                n => format!("{n} items, first {}", needed[0]),
            }
        }
        Decision::Eligible => a.dose.as_ref().map(|d| d.text.clone()).unwrap_or_default(),
        _ => {
            let others = a
                .findings
                .iter()
                .filter(|f| f.decision == a.decision)
                .count()
                .saturating_sub(1);
            let title = top(a).map(|f| f.title.clone()).unwrap_or_default();
            if others > 0 {
                format!("{title} (+{others} more)")
            } else {
                title
            }
        }
    };
    // An adjusted dose is the actionable part: say it first.
    let words = match a
        .dose
        .as_ref()
        .filter(|d| !d.basis.is_empty() && a.decision != Decision::DoNotStart)
    {
        Some(d) => format!(
            "{words} at {} mg {}",
            d.mg.normalize(),
            per_day(d.times_per_day)
        ),
        None => words.to_string(),
    };
    truncate(&format!("{drug}: {words} — {tail}"), 139)
}

fn per_day(n: u32) -> String {
    match n {
        1 => "once daily".into(),
        2 => "twice daily".into(),
        n => format!("{n} times daily"),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn indicator(a: &Assessment) -> &'static str {
    let worst = a
        .findings
        .iter()
        .filter(|f| f.decision == a.decision)
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Info);
    match a.decision {
        Decision::DoNotStart => "critical",
        Decision::DataNeeded => "warning",
        Decision::Caution if worst == Severity::Critical => "critical",
        Decision::Caution if worst == Severity::Warning => "warning",
        _ => "info",
    }
}

/// Appends `s` as markdown text that renders as itself, inline or in a table cell. Report
/// text can carry the request's own text (a draft's display or dosage text, a lab's unit),
/// which must not become a link, an image or markup in the clinician's EHR: every ASCII
/// character that starts markup (links, images, emphasis, code, HTML and entities, a cell's
/// end) is backslash-escaped, and so are `:`, `.` and `@`, which start GFM's autolinks; line
/// breaks and other control characters become spaces.
pub(super) fn push_inline(d: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    // Every byte that needs attention is ASCII, so each run ends on a character boundary.
    while let Some(i) = bytes[start..].iter().position(|&b| SPECIAL[usize::from(b)]) {
        let at = start + i;
        d.push_str(&s[start..at]);
        let b = bytes[at];
        if b.is_ascii_control() {
            d.push(' ');
        } else {
            d.push('\\');
            d.push(char::from(b));
        }
        start = at + 1;
    }
    d.push_str(&s[start..]);
}

/// The bytes `push_inline` escapes or replaces.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[0x7f] = true;
    let marks = b"\\`*_[]()!<>#|~&:.@";
    let mut i = 0;
    while i < marks.len() {
        t[marks[i] as usize] = true;
        i += 1;
    }
    t
};

/// The card's markdown, written into one buffer (a card is answered per request; the
/// pieces are not formatted into strings of their own first).
fn detail(report: &Report, a: &Assessment) -> String {
    use std::fmt::Write;
    // `write!` into a `String` cannot fail; the results are ignored for that reason.
    let mut d = String::with_capacity(4096);
    let _ = write!(
        d,
        "**{}** ({}), knowledge {}\n\n",
        capitalise(decision_words(a)),
        a.drug,
        report.knowledge.version
    );
    match &a.dose {
        Some(dose) => {
            d.push_str("**Dose:** ");
            d.push_str(&dose.text);
            if dose.provisional {
                d.push_str(" *(provisional until the data needed arrives)*");
            }
            d.push_str("\n\n");
        }
        None => d.push_str("**Dose:** none — do not start.\n\n"),
    }
    let mut shown = a
        .findings
        .iter()
        .filter(|f| !f.rule.starts_with("data-quality."))
        .peekable();
    if shown.peek().is_some() {
        d.push_str("| Finding | What to do | Evidence | Source |\n|---|---|---|---|\n");
        let mut line = String::new();
        for f in shown {
            d.push_str("| ");
            push_inline(&mut d, &f.summary);
            d.push_str(" | ");
            push_inline(&mut d, &f.action);
            d.push_str(" | ");
            for (i, e) in f.evidence.iter().enumerate() {
                if i > 0 {
                    d.push_str("; ");
                }
                line.clear();
                e.push_line(&mut line);
                push_inline(&mut d, &line);
            }
            d.push_str(" | ");
            for (i, c) in f.citations.iter().enumerate() {
                if i > 0 {
                    d.push_str("; ");
                }
                match &c.url {
                    Some(u) => {
                        d.push('[');
                        push_inline(&mut d, &c.short);
                        d.push_str("](");
                        push_inline(&mut d, u);
                        d.push(')');
                    }
                    None => push_inline(&mut d, &c.short),
                }
                if !c.verified {
                    d.push_str(" *(unverified)*");
                }
            }
            d.push_str(" |\n");
        }
        d.push('\n');
    }
    let quality = a
        .findings
        .iter()
        .filter(|f| f.rule.starts_with("data-quality."))
        .count();
    if quality > 0 {
        let _ = write!(
            d,
            "{quality} value(s) in the record could not be used (unknown unit, future date, impossible value); see the full assessment.\n\n"
        );
    }
    if a.phase == "start" {
        d.push_str("**Screening:** ");
        let items = report
            .screening
            .iter()
            .filter(|s| s.status != ScreeningStatus::NotApplicable);
        for (i, s) in items.enumerate() {
            if i > 0 {
                d.push_str(" · ");
            }
            d.push_str(match s.status {
                ScreeningStatus::DoneNormal => "✓",
                ScreeningStatus::Abnormal => "✗",
                _ => "?",
            });
            d.push(' ');
            d.push_str(&s.title);
        }
        d.push_str("\n\n");
    }
    let mut monitoring = report
        .monitoring
        .iter()
        .filter(|m| m.drug == a.drug)
        .peekable();
    if monitoring.peek().is_some() {
        d.push_str("**Monitoring:** ");
        for (i, m) in monitoring.enumerate() {
            if i > 0 {
                d.push_str("; ");
            }
            d.push_str(&m.title);
            match m.due_by {
                Some(x) => {
                    let _ = write!(d, " (due by {x})");
                }
                None => d.push_str(" (per routine care)"),
            }
        }
        d.push_str("\n\n");
    }
    d.push('*');
    d.push_str(&report.disclaimer);
    d.push('*');
    d
}

/// The ServiceRequest that orders the test a data-needed finding asks for.
fn order_for(kb: &Knowledge, f: &Finding, patient_id: &str) -> Option<Value> {
    let lab_id = f.rule.strip_prefix("data-needed.lab.")?;
    let lab = &kb.labs[kb.lab_by_name(lab_id)?];
    let (system, code) = lab
        .valuesets
        .iter()
        .flat_map(|v| kb.valueset(*v).codes.iter())
        .find(|(s, _)| s == "http://loinc.org")?;
    Some(json!({
        "resourceType": "ServiceRequest",
        "id": uuid::Uuid::new_v4().to_string(),
        "status": "draft",
        "intent": "order",
        "subject": {"reference": format!("Patient/{patient_id}")},
        "code": {"coding": [{"system": system, "code": code, "display": lab.name}], "text": lab.order},
        "reasonCode": [{"text": f.summary}]
    }))
}

fn draft_reference(draft: &Value) -> Option<String> {
    let id = draft.get("id")?.as_str()?;
    Some(format!("MedicationRequest/{id}"))
}

fn suggestions(kb: &Knowledge, a: &Assessment, ctx: &CardContext<'_>) -> Vec<Suggestion> {
    let mut out = vec![];
    // Order what is missing: one suggestion per test (several findings may share one order).
    let mut seen: Vec<String> = vec![];
    for f in a
        .findings
        .iter()
        .filter(|f| f.rule.starts_with("data-needed.lab."))
    {
        if seen.contains(&f.action) {
            continue;
        }
        if let Some(resource) = order_for(kb, f, ctx.patient_id) {
            seen.push(f.action.clone());
            out.push(Suggestion {
                label: truncate(&format!("Order {}", f.action), 80),
                uuid: Some(uuid::Uuid::new_v4().to_string()),
                is_recommended: Some(true),
                actions: vec![Action {
                    kind: "create".into(),
                    description: format!("Order {}", f.action),
                    resource: Some(resource),
                    resource_id: None,
                }],
            });
        }
    }
    if let Some(draft) = ctx.draft
        && let Some(reference) = draft_reference(draft)
    {
        if a.decision == Decision::DoNotStart {
            out.push(Suggestion {
                label: format!("Cancel the {} order", a.drug),
                uuid: Some(uuid::Uuid::new_v4().to_string()),
                is_recommended: Some(true),
                actions: vec![Action {
                    kind: "delete".into(),
                    description: format!("Remove the draft {} order", a.drug),
                    resource: None,
                    resource_id: Some(reference),
                }],
            });
        } else if let Some(dose) = a.dose.as_ref().filter(|d| !d.basis.is_empty()) {
            let mut replacement = draft.clone();
            let id = uuid::Uuid::new_v4().to_string();
            replacement["id"] = json!(id);
            replacement["status"] = json!("draft");
            replacement["dosageInstruction"] = json!([{ "text": dose.text }]);
            out.push(Suggestion {
                label: truncate(&format!("Change to {}", dose.text), 80),
                uuid: Some(uuid::Uuid::new_v4().to_string()),
                is_recommended: Some(true),
                actions: vec![
                    Action {
                        kind: "delete".into(),
                        description: "Remove the draft order at the usual dose".into(),
                        resource: None,
                        resource_id: Some(reference),
                    },
                    Action {
                        kind: "create".into(),
                        description: format!("Order {}", dose.text),
                        resource: Some(replacement),
                        resource_id: None,
                    },
                ],
            });
        }
    }
    out
}

/// The card for one drug's assessment, and the rules behind it (for feedback statistics).
pub fn card(
    kb: &Knowledge,
    report: &Report,
    a: &Assessment,
    ctx: &CardContext<'_>,
) -> (Card, Vec<String>) {
    let suggestions = suggestions(kb, a, ctx);
    let indicator = indicator(a);
    let top_citation = top(a)
        .and_then(|f| f.citations.first())
        .or_else(|| a.dose.as_ref().and_then(|d| d.citations.first()));
    let source = Source {
        label: match top_citation {
            Some(c) => format!("JAKGuard · {}", c.short),
            None => "JAKGuard".to_string(),
        },
        url: top_citation.and_then(|c| c.url.clone()),
        topic: None,
    };
    let rules: Vec<String> = a.findings.iter().map(|f| f.rule.clone()).collect();
    let card = Card {
        uuid: Some(uuid::Uuid::now_v7().to_string()),
        summary: summary(a),
        detail: Some(detail(report, a)),
        indicator: indicator.to_string(),
        source,
        selection_behavior: (!suggestions.is_empty()).then(|| "any".to_string()),
        suggestions,
        override_reasons: if indicator == "info" {
            vec![]
        } else {
            OVERRIDE_REASONS
                .iter()
                .map(|(c, d)| Coding {
                    code: (*c).into(),
                    system: OVERRIDE_SYSTEM.into(),
                    display: Some((*d).into()),
                })
                .collect()
        },
        links: vec![],
    };
    (card, rules)
}

#[cfg(test)]
mod tests {
    use super::push_inline;

    #[test]
    fn a_cell_shows_its_text_and_nothing_in_it_becomes_markup() {
        let cell = |s: &str| {
            let mut d = String::new();
            push_inline(&mut d, s);
            d
        };
        assert_eq!(
            cell("CrCl < 30 mL/min | dose 5 mg\nonce daily — µmol/L"),
            "CrCl \\< 30 mL/min \\| dose 5 mg once daily — µmol/L"
        );
        assert_eq!(
            cell("[Sign](https://evil.example) ![x](y) <img> www.evil.example a@b.example"),
            "\\[Sign\\]\\(https\\://evil\\.example\\) \\!\\[x\\]\\(y\\) \\<img\\> www\\.evil\\.example a\\@b\\.example"
        );
        assert_eq!(
            cell("a\r\tb`c`*d*_e_&amp;"),
            "a  b\\`c\\`\\*d\\*\\_e\\_\\&amp;"
        );
        assert_eq!(cell(""), "");
        assert_eq!(cell("plain text, 5 mg/dL"), "plain text, 5 mg/dL");
    }
}
