//! Human-readable reports: a terminal view a clinician reads in 20 seconds (colour only on a
//! terminal — `anstream` strips it when piped or when NO_COLOR is set), and Markdown.

use anstyle::{AnsiColor, Style};
use engine::kb::{Decision, Severity};
use engine::report::{Assessment, Finding, MonitoringStatus, Report, ScreeningStatus};
use std::io::{self, Write};

const BOLD: Style = Style::new().bold();
const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const MAGENTA: Style = AnsiColor::Magenta.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default().bold();
const DIM: Style = Style::new().dimmed();

pub fn decision_label(d: Decision) -> &'static str {
    match d {
        Decision::Eligible => "ELIGIBLE",
        Decision::Caution => "START WITH CAUTION",
        Decision::DataNeeded => "DATA NEEDED",
        Decision::DoNotStart => "DO NOT START",
    }
}

fn decision_style(d: Decision) -> Style {
    match d {
        Decision::Eligible => GREEN,
        Decision::Caution => YELLOW,
        Decision::DataNeeded => MAGENTA,
        Decision::DoNotStart => RED,
    }
}

fn mark(f: &Finding) -> &'static str {
    match (f.decision, f.severity) {
        (Decision::DoNotStart, _) => "✗",
        (Decision::DataNeeded, _) => "?",
        (_, Severity::Critical) => "!",
        (_, Severity::Warning) => "!",
        (_, Severity::Info) => "·",
    }
}

/// The data-needed findings grouped by what to order (the action), each with what it
/// gives: the first thing a clinician acts on. Shared by the text report and the web view.
pub fn orders_needed(a: &Assessment) -> Vec<(String, Vec<String>)> {
    let mut orders: Vec<(String, Vec<String>)> = vec![];
    for f in a
        .findings
        .iter()
        .filter(|f| f.rule.starts_with("data-needed."))
    {
        let what = f.title.trim_start_matches("Data needed: ").to_string();
        match orders.iter_mut().find(|(o, _)| *o == f.action) {
            Some((_, w)) => w.push(what),
            None => orders.push((f.action.clone(), vec![what])),
        }
    }
    orders
}

pub fn phase_text(a: &Assessment) -> String {
    match (a.phase, a.treatment_start) {
        ("on-treatment", Some(d)) => format!("on treatment since {d}"),
        ("on-treatment", None) => "on treatment".to_string(),
        _ => "considering a start".to_string(),
    }
}

pub fn decision_text(a: &Assessment) -> &'static str {
    // For a patient already on the drug "do not start" means hold or stop it.
    match (a.phase, a.decision) {
        ("on-treatment", Decision::DoNotStart) => "HOLD OR STOP",
        ("on-treatment", Decision::Eligible) => "CONTINUE",
        ("on-treatment", Decision::Caution) => "CONTINUE WITH CAUTION",
        (_, d) => decision_label(d),
    }
}

pub fn text(r: &Report, out: &mut impl Write) -> io::Result<()> {
    let p = &r.patient;
    let who = format!(
        "patient {} ({}, {})",
        p.id.as_deref().unwrap_or("(no id)"),
        p.age
            .map(|a| format!("{a} y"))
            .unwrap_or_else(|| "age unknown".into()),
        p.sex.unwrap_or("sex unknown")
    );
    writeln!(
        out,
        "{BOLD}JAKGuard assessment{BOLD:#} — {who} — as of {}",
        r.as_of
    )?;
    writeln!(
        out,
        "{DIM}Knowledge {} · {}{DIM:#}",
        r.knowledge.version, r.knowledge.title
    )?;
    for a in &r.assessments {
        writeln!(out)?;
        writeln!(
            out,
            "{BOLD}{} ({}){BOLD:#} — {}",
            a.drug.to_uppercase(),
            a.brands.join(", "),
            phase_text(a)
        )?;
        let ds = decision_style(a.decision);
        writeln!(out, "  Decision: {ds}{}{ds:#}", decision_text(a))?;
        match &a.dose {
            Some(d) => writeln!(
                out,
                "  Dose: {}{}",
                d.text,
                if d.provisional {
                    " (provisional until the data needed arrives)"
                } else {
                    ""
                }
            )?,
            None => writeln!(out, "  Dose: none — do not start")?,
        }
        let orders = orders_needed(a);
        if !orders.is_empty() {
            writeln!(out, "  {MAGENTA}Data needed — order or record:{MAGENTA:#}")?;
            for (order, whats) in &orders {
                // Name what is missing only when the order does not already say it.
                let lower = order.to_lowercase();
                if whats.iter().all(|w| lower.contains(&w.to_lowercase())) {
                    writeln!(out, "    ? {order}")?;
                } else {
                    writeln!(out, "    ? {order} {DIM}({}){DIM:#}", whats.join(", "))?;
                }
            }
        }
        for f in a.findings.iter().filter(|f| {
            f.category != engine::kb::Category::DataQuality && !f.rule.starts_with("data-needed.")
        }) {
            let st = decision_style(f.decision);
            let unverified = if f.verified {
                ""
            } else {
                " [unverified knowledge: conservative reading]"
            };
            writeln!(out, "  {st}{}{st:#} {}{unverified}", mark(f), f.summary)?;
            writeln!(out, "      → {}", f.action)?;
            for e in &f.evidence {
                let mut line = e.line();
                if let Some(res) = &e.resource {
                    line.push_str(&format!(" ({res})"));
                }
                line.push_str(engine::report::match_note(e.matched_by));
                writeln!(out, "      {DIM}evidence: {line}{DIM:#}")?;
            }
            let sources: Vec<String> = f.citations.iter().map(|c| c.short.clone()).collect();
            if !sources.is_empty() {
                writeln!(out, "      {DIM}source: {}{DIM:#}", sources.join("; "))?;
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "{BOLD}Screening before the first dose{BOLD:#}")?;
    for s in &r.screening {
        let (m, st) = match s.status {
            ScreeningStatus::DoneNormal => ("✓ done", GREEN),
            ScreeningStatus::Abnormal => ("✗ abnormal", RED),
            ScreeningStatus::Missing => ("? missing", MAGENTA),
            ScreeningStatus::TooOld => ("? too old", MAGENTA),
            ScreeningStatus::NotApplicable => ("– n/a", DIM),
        };
        writeln!(
            out,
            "  {st}{m:<11}{st:#} {} {DIM}({}){DIM:#}",
            s.title, s.detail
        )?;
    }
    if !r.monitoring.is_empty() {
        writeln!(out)?;
        writeln!(out, "{BOLD}Monitoring{BOLD:#}")?;
        for m in &r.monitoring {
            let status = match m.status {
                MonitoringStatus::Planned => "planned",
                MonitoringStatus::UpToDate => "up to date",
                MonitoringStatus::DueSoon => "due soon",
                MonitoringStatus::Overdue => "OVERDUE",
                MonitoringStatus::Done => "done",
            };
            let when = match (m.due_from, m.due_by) {
                (Some(f), Some(b)) if f != b => format!("due {f} to {b}"),
                (_, Some(b)) => format!("due by {b}"),
                _ => String::new(),
            };
            writeln!(out, "  {:<12} {:<10} {} {when}", m.drug, status, m.title)?;
        }
    }
    if !r.scores.is_empty() {
        writeln!(out)?;
        writeln!(out, "{BOLD}Disease activity{BOLD:#}")?;
        for s in &r.scores {
            writeln!(
                out,
                "  {} {} — {} ({})",
                s.name,
                s.value,
                s.state.as_deref().unwrap_or(""),
                s.date
            )?;
        }
    }
    if !r.errors.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{YELLOW}Data quality: {} value(s) could not be used{YELLOW:#}",
            r.errors.len()
        )?;
        for e in r.errors.iter().take(10) {
            writeln!(out, "  {}: {}", e.location, e.message)?;
        }
        if r.errors.len() > 10 {
            writeln!(
                out,
                "  … and {} more (see --format json)",
                r.errors.len() - 10
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "{DIM}{}{DIM:#}", r.disclaimer)?;
    Ok(())
}

pub fn markdown(r: &Report, out: &mut impl Write) -> io::Result<()> {
    let p = &r.patient;
    writeln!(out, "# JAKGuard assessment\n")?;
    writeln!(
        out,
        "Patient `{}` · age {} · sex {} · as of {} · knowledge {} ({})\n",
        p.id.as_deref().unwrap_or("(no id)"),
        p.age
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into()),
        p.sex.unwrap_or("unknown"),
        r.as_of,
        r.knowledge.version,
        r.knowledge.jurisdiction
    )?;
    for a in &r.assessments {
        writeln!(
            out,
            "## {} ({}) — {}\n",
            a.drug,
            a.brands.join(", "),
            phase_text(a)
        )?;
        writeln!(out, "**Decision: {}**\n", decision_text(a))?;
        match &a.dose {
            Some(d) => writeln!(
                out,
                "**Dose:** {}{}\n",
                d.text,
                if d.provisional {
                    " *(provisional)*"
                } else {
                    ""
                }
            )?,
            None => writeln!(out, "**Dose:** none\n")?,
        }
        if !a.findings.is_empty() {
            writeln!(
                out,
                "| | Finding | Action | Evidence | Source |\n|---|---|---|---|---|"
            )?;
        }
        for f in &a.findings {
            let evidence: Vec<String> = f.evidence.iter().map(|e| e.line()).collect();
            let sources: Vec<String> = f
                .citations
                .iter()
                .map(|c| {
                    format!(
                        "{} {}{}",
                        c.source,
                        c.section,
                        if c.verified { "" } else { " *(unverified)*" }
                    )
                })
                .collect();
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                mark(f),
                cell(&f.summary),
                cell(&f.action),
                cell(&evidence.join("; ")),
                cell(&sources.join("; "))
            )?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "## Screening\n\n| Item | Status | Detail |\n|---|---|---|"
    )?;
    for s in &r.screening {
        let status = serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        writeln!(
            out,
            "| {} | {} | {} |",
            cell(&s.title),
            status,
            cell(&s.detail)
        )?;
    }
    writeln!(
        out,
        "\n## Monitoring\n\n| Drug | Test | Status | Due |\n|---|---|---|---|"
    )?;
    for m in &r.monitoring {
        let status = serde_json::to_value(m.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let due = m.due_by.map(|d| d.to_string()).unwrap_or_default();
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            m.drug,
            cell(&m.title),
            status,
            due
        )?;
    }
    if !r.scores.is_empty() {
        writeln!(out, "\n## Disease activity\n")?;
        for s in &r.scores {
            writeln!(
                out,
                "- {}: {} — {} ({})",
                s.name,
                s.value,
                s.state.as_deref().unwrap_or(""),
                s.date
            )?;
        }
    }
    writeln!(out, "\n> {}", r.disclaimer)?;
    Ok(())
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
