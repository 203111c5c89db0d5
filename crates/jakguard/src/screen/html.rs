//! The screen's summary files: `screen-summary.csv` (counts), `screen-overdue.csv` (every
//! overdue patient per monitoring test) and `screen-report.html` (the same for people: a
//! self-contained page with CSS bar charts, no script, headings and table captions for
//! screen readers).
//!
//! Patients appear by their FHIR Patient id only: the export is the health system's own and
//! the lists are for its staff.

use super::tally::{Tally, decision_key, decision_label};
use super::{Outcome, Settings};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

/// Bad lines listed in the HTML page (all are in `screen-bad-lines.txt`).
pub const BAD_LINES_LISTED: usize = 100;
/// Patient ids listed per monitoring test in the HTML page (all are in the overdue CSV).
const OVERDUE_LISTED: usize = 500;

pub struct Summary<'a> {
    pub settings: &'a Settings,
    pub knowledge_version: &'a str,
    pub outcome: &'a Outcome,
    pub tally: &'a Tally,
    /// (file, line, reason), the first `BAD_LINES_LISTED`.
    pub bad_lines: &'a [(String, u64, String)],
}

fn csv_writer(path: &Path) -> anyhow::Result<csv::Writer<std::fs::File>> {
    Ok(csv::Writer::from_writer(super::fresh_file(path)?))
}

pub fn write_csv(dir: &Path, s: &Summary<'_>) -> anyhow::Result<()> {
    let path = dir.join("screen-summary.csv");
    let mut w = csv_writer(&path)?;
    w.write_record(["section", "drug", "phase", "key", "title", "patients"])?;
    let o = s.outcome;
    let run: [(&str, u64); 6] = [
        ("patients-in-export", o.patients),
        ("patients-screened", o.screened),
        ("patients-not-assessed", o.not_assessed),
        ("resources", o.resources),
        ("bad-lines", o.bad_lines),
        ("files-skipped", o.skipped_files.len() as u64),
    ];
    for (key, n) in run {
        w.write_record(["run", "", "", key, "", &n.to_string()])?;
    }
    for ((drug, phase, decision), n) in &s.tally.decisions {
        w.write_record([
            "decision",
            drug,
            phase,
            decision_key(*decision),
            decision_label(phase, *decision),
            &n.to_string(),
        ])?;
    }
    for ((drug, rule), (title, n)) in &s.tally.rules {
        w.write_record(["rule", drug, "", rule, title, &n.to_string()])?;
    }
    for ((drug, item), (title, list)) in &s.tally.overdue {
        w.write_record([
            "monitoring-overdue",
            drug,
            "on-treatment",
            item,
            title,
            &list.len().to_string(),
        ])?;
    }
    w.flush()?;

    let path = dir.join("screen-overdue.csv");
    let mut w = csv_writer(&path)?;
    w.write_record([
        "drug",
        "monitoring",
        "title",
        "patient",
        "due_by",
        "last_done",
    ])?;
    for ((drug, item), (title, list)) in &s.tally.overdue {
        for (id, due, last) in list {
            let date = |d: &Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
            w.write_record([drug, item, title, id.as_ref(), &date(due), &date(last)])?;
        }
    }
    w.flush()?;
    Ok(())
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A table cell with a bar whose length is `n / max`; the number is the accessible content,
/// the bar is decoration.
fn bar_cell(n: u64, max: u64) -> String {
    let pct = if max == 0 {
        0.0
    } else {
        n as f64 * 100.0 / max as f64
    };
    format!(
        "<td class=\"num\">{n}</td><td class=\"chart\"><span class=\"bar\" style=\"width:{pct:.1}%\" aria-hidden=\"true\"></span></td>"
    )
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.8rem 0}caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border-bottom:1px solid #e2e2e2;padding:.25rem .5rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;width:6rem}td.chart{width:30%}
.bar{display:inline-block;height:.8rem;background:#3e6fb0;min-width:1px}
.note{background:#fff6d6;border-left:4px solid #d9a400;padding:.6rem 1rem}
ul.ids{columns:4 12rem;font-family:ui-monospace,monospace;font-size:.85rem;padding-left:1.2rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}";

pub fn write_html(dir: &Path, s: &Summary<'_>) -> anyhow::Result<()> {
    let o = s.outcome;
    let t = s.tally;
    let mut h = String::new();
    let as_of = s.settings.as_of;
    // `write!` to a String cannot fail; the results are ignored deliberately.
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>JAKGuard population screening, as of {as_of}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n<h1>JAKGuard population screening</h1>\n<p>As of <strong>{as_of}</strong>; knowledge version {}; cohort: {}.</p>\n<p class=\"note\"><strong>This report supports clinical judgement; it does not replace it.</strong> It reads only what the export holds. Missing or old results are counted as <em>data needed</em>, never as normal. Check each patient's record and the current label before acting.</p>\n</header>\n<main>\n",
        esc(s.knowledge_version),
        if s.settings.all {
            "patients with an active or draft JAK inhibitor order, and every patient with ankylosing spondylitis or nr-axSpA"
        } else {
            "patients with an active or draft JAK inhibitor order (or statement)"
        }
    );

    let _ = write!(
        h,
        "<section aria-labelledby=\"run\">\n<h2 id=\"run\">The run</h2>\n<dl>\n<dt>Patients in the export</dt><dd>{}</dd>\n<dt>Patients screened</dt><dd>{}</dd>\n<dt>Patients not assessed</dt><dd>{}</dd>\n<dt>Resources read</dt><dd>{} in {} files ({:.1} MB)</dd>\n<dt>Bad lines</dt><dd>{}</dd>\n<dt>Files skipped</dt><dd>{}</dd>\n<dt>Time</dt><dd>{:.1} s</dd>\n</dl>\n</section>\n",
        o.patients,
        o.screened,
        o.not_assessed,
        o.resources,
        o.files,
        o.bytes as f64 / 1e6,
        o.bad_lines,
        o.skipped_files.len(),
        o.seconds
    );

    let _ = write!(
        h,
        "<section aria-labelledby=\"decisions\">\n<h2 id=\"decisions\">Decisions per drug</h2>\n<table>\n<caption>Patients by decision, per drug and phase (start: not on the drug yet; on-treatment: taking it)</caption>\n<thead><tr><th scope=\"col\">Drug</th><th scope=\"col\">Phase</th><th scope=\"col\">Decision</th><th scope=\"col\">Patients</th><th scope=\"col\">Share of screened</th></tr></thead>\n<tbody>\n"
    );
    for ((drug, phase, decision), n) in &t.decisions {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
            esc(drug),
            esc(phase),
            decision_label(phase, *decision),
            bar_cell(*n, t.screened)
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");

    let mut rules: Vec<_> = t.rules.iter().collect();
    rules.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(b.0)));
    let max = rules.first().map(|r| r.1.1).unwrap_or(0);
    let _ = write!(
        h,
        "<section aria-labelledby=\"rules\">\n<h2 id=\"rules\">Findings per rule</h2>\n<table>\n<caption>Patients with each finding, per drug, most frequent first</caption>\n<thead><tr><th scope=\"col\">Drug</th><th scope=\"col\">Rule</th><th scope=\"col\">Finding</th><th scope=\"col\">Patients</th><th scope=\"col\"><span class=\"visually-hidden\">Chart</span></th></tr></thead>\n<tbody>\n"
    );
    for ((drug, rule), (title, n)) in rules {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td>{}</tr>",
            esc(drug),
            esc(rule),
            esc(title),
            bar_cell(*n, max)
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");

    let max = t
        .overdue
        .values()
        .map(|v| v.1.len() as u64)
        .max()
        .unwrap_or(0);
    let _ = write!(
        h,
        "<section aria-labelledby=\"overdue\">\n<h2 id=\"overdue\">Monitoring overdue</h2>\n<table>\n<caption>Patients on treatment overdue for each monitoring test</caption>\n<thead><tr><th scope=\"col\">Drug</th><th scope=\"col\">Monitoring</th><th scope=\"col\">Patients</th><th scope=\"col\"><span class=\"visually-hidden\">Chart</span></th></tr></thead>\n<tbody>\n"
    );
    for ((drug, _), (title, list)) in &t.overdue {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td>{}</tr>",
            esc(drug),
            esc(title),
            bar_cell(list.len() as u64, max)
        );
    }
    h.push_str("</tbody>\n</table>\n");
    for ((drug, item), (title, list)) in &t.overdue {
        let _ = writeln!(
            h,
            "<h3 id=\"overdue-{}-{}\">{} ({}): {} patients</h3>",
            esc(drug),
            esc(item),
            esc(title),
            esc(drug),
            list.len()
        );
        if list.len() > OVERDUE_LISTED {
            let _ = writeln!(
                h,
                "<p>The first {OVERDUE_LISTED} by Patient id; every one, with due and last-done dates, is in <code>screen-overdue.csv</code>.</p>"
            );
        }
        h.push_str("<ul class=\"ids\">\n");
        for (id, _, _) in list.iter().take(OVERDUE_LISTED) {
            let _ = writeln!(h, "<li>{}</li>", esc(id));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");

    let _ = write!(
        h,
        "<section aria-labelledby=\"bad\">\n<h2 id=\"bad\">Lines not used</h2>\n<p>{} bad lines (malformed JSON, unknown resource type, missing or unknown patient); every one is in <code>screen-bad-lines.txt</code>.</p>\n",
        o.bad_lines
    );
    if !s.bad_lines.is_empty() {
        h.push_str("<table>\n<caption>The first bad lines, by file and line</caption>\n<thead><tr><th scope=\"col\">File</th><th scope=\"col\">Line</th><th scope=\"col\">Reason</th></tr></thead>\n<tbody>\n");
        for (file, line, reason) in s.bad_lines {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{line}</td><td>{}</td></tr>",
                esc(file),
                esc(reason)
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    if !o.skipped_files.is_empty() {
        h.push_str("<p>Files skipped (the name names no FHIR resource type):</p>\n<ul>\n");
        for f in &o.skipped_files {
            let _ = writeln!(h, "<li>{}</li>", esc(f));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n</main>\n</body>\n</html>\n");

    let path = dir.join("screen-report.html");
    let mut f = super::fresh_file(&path)?;
    f.write_all(h.as_bytes())?;
    Ok(())
}
