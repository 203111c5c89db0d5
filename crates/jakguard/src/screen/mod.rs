//! `jakguard screen`: population screening over a FHIR Bulk Data export.
//!
//! Who, among the patients of an export, is on or about to start a JAK inhibitor and now has
//! a contraindication or is overdue for monitoring. The export is streamed, never loaded:
//!
//! 1. the Patient files give the export's patients (id → index) and the Medication files the
//!    formulary that `medicationReference`s point to;
//! 2. the MedicationRequest/MedicationStatement files (and Condition, with `--all`) give the
//!    cohort, each candidate judged by the engine's own matching (`cohort`);
//! 3. every file is read once more and every line checked; where each line about a cohort
//!    patient is (file, byte offset, line number) is noted (`kept`), nothing more;
//! 4. the cohort is assessed on every core in the Patient files' order (`pipeline::ordered`):
//!    each patient's lines are read again (positioned reads from the page cache), the record is
//!    built, assessed and dropped by the same thread, and the report is written as one line
//!    of `screen-results.ndjson` while the summary figures accumulate and the next patients
//!    are assessed.
//!
//! Memory is therefore bounded by the number of patients (their ids, and a few dozen bytes
//! per kept line of the cohort; a gzip file's kept lines are copied), not by the size of the
//! files. Bad lines are counted, reported with file and line, and never stop the run;
//! `Outcome::problems` tells the caller to exit non-zero.

mod cohort;
mod export;
mod html;
mod kept;
mod line;
mod pipeline;
mod reader;
mod tally;

use anyhow::Context;
use chrono::NaiveDate;
use engine::fhir::RecordBuilder;
use engine::{Knowledge, Options};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use line::{Line, PatientIndex};
use reader::Chunk;
use std::collections::HashMap;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;
use tally::{PatientFigures, Tally};

pub use export::{Export, ExportFile};

/// How many bad lines are printed on standard error (all are in `screen-bad-lines.txt`).
const BAD_LINES_SHOWN: usize = 20;

/// Patients handed to a worker at a time: enough to make the hand-over cheap, few enough
/// that a handful of reports is all the memory the writing needs.
const ASSESS_BATCH: usize = 32;

/// A typical full result line's size (about 36 KB with the synthetic exports; a brief one is
/// about 22 KB): a batch's buffer starts with room for that many, so it never grows.
const REPORT_BYTES: usize = 40 << 10;

/// What to screen and where to write.
#[derive(Debug, Clone)]
pub struct Settings {
    pub export_dir: PathBuf,
    pub out_dir: PathBuf,
    pub as_of: NaiveDate,
    /// Also every patient with AS / nr-axSpA, not only those with a JAK inhibitor order.
    pub all: bool,
    /// Each result line the whole report `assess --format json` gives, rather than the
    /// decisions and findings with the checklist and monitoring plan as statuses and dates.
    pub full_reports: bool,
}

/// The run in numbers; the final line and the exit code come from it.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub files: usize,
    pub bytes: u64,
    pub patients: u64,
    pub screened: u64,
    pub not_assessed: u64,
    pub resources: u64,
    pub bad_lines: u64,
    /// `.ndjson` files whose resource type could not be told from the name: not read.
    pub skipped_files: Vec<String>,
    pub seconds: f64,
    /// Seconds per pass: patients, cohort, reading, assessing (and writing).
    pub passes: [f64; 4],
}

impl Outcome {
    /// True when some of the export could not be used: the exit code must say so.
    pub fn problems(&self) -> bool {
        self.bad_lines > 0 || !self.skipped_files.is_empty()
    }

    /// Where the time went, for benchmarks.
    pub fn passes_line(&self) -> String {
        let [a, b, c, d] = self.passes;
        format!(
            "passes: patients {a:.2} s, cohort {b:.2} s, reading {c:.2} s, assessing and writing {d:.2} s"
        )
    }

    pub fn final_line(&self) -> String {
        let mb = self.bytes as f64 / 1e6;
        let secs = self.seconds.max(1e-9);
        format!(
            "screened {} of {} patients ({} not assessed); {} resources in {} files ({:.1} MB); {} bad lines; {} files skipped; {:.2} s ({:.1} MB/s, {:.0} patients/s)",
            self.screened,
            self.patients,
            self.not_assessed,
            self.resources,
            self.files,
            mb,
            self.bad_lines,
            self.skipped_files.len(),
            self.seconds,
            mb / secs,
            self.patients as f64 / secs,
        )
    }
}

/// A bad line, or a file that could not be read to its end.
struct BadLine {
    file: usize,
    line: u64,
    reason: String,
}

/// Bad lines as they are found: every one counted and written to `screen-bad-lines.txt`,
/// the first ones kept for the summaries.
struct BadLines {
    out: BufWriter<std::fs::File>,
    listed: Vec<BadLine>,
    count: u64,
}

impl BadLines {
    fn create(path: &Path) -> anyhow::Result<BadLines> {
        Ok(BadLines {
            out: BufWriter::new(fresh_file(path)?),
            listed: vec![],
            count: 0,
        })
    }

    /// A bad line of export file `file` (named `name`); listed while the list has room.
    fn add(&mut self, file: usize, name: &str, line: u64, reason: String) -> std::io::Result<()> {
        let room = self.listed.len() < html::BAD_LINES_LISTED;
        self.record(file, name, line, reason, room)
    }

    /// A file that could not be read to its end: always listed.
    fn add_failure(
        &mut self,
        file: usize,
        name: &str,
        line: u64,
        reason: String,
    ) -> std::io::Result<()> {
        self.record(file, name, line, reason, true)
    }

    fn record(
        &mut self,
        file: usize,
        name: &str,
        line: u64,
        reason: String,
        list: bool,
    ) -> std::io::Result<()> {
        self.count += 1;
        writeln!(self.out, "{name}:{line}: {reason}")?;
        if list {
            self.listed.push(BadLine { file, line, reason });
        }
        Ok(())
    }
}

/// Creates an output file, removing an earlier run's first. Truncating or renaming over a
/// file makes ext4 write its data out at once (`auto_da_alloc`), which for a gigabyte of
/// results costs seconds the run does not need to wait for.
fn fresh_file(path: &Path) -> anyhow::Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace `{}`", path.display())),
    }
    std::fs::File::create(path).with_context(|| format!("cannot write `{}`", path.display()))
}

/// Lists the export or says why it is unusable (the caller exits 2).
pub fn open_export(dir: &Path) -> Result<Export, String> {
    if !dir.is_dir() {
        return Err(format!("`{}` is not a directory", dir.display()));
    }
    let export = export::discover(dir)
        .map_err(|e| format!("cannot read the export directory `{}`: {e}", dir.display()))?;
    if !export.files.iter().any(|f| f.resource_type == "Patient") {
        return Err(format!(
            "`{}` holds no Patient file (`Patient.ndjson` or `Patient.ndjson.gz`): not a Bulk FHIR export",
            dir.display()
        ));
    }
    Ok(export)
}

/// Bytes read, for the passes over the files.
const BYTES: &str = "{msg:>22} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";
/// Patients assessed, for the last pass.
const PATIENTS: &str = "{msg:>22} [{bar:30}] {pos}/{len} patients {per_sec} ETA {eta}";

/// A progress bar on a terminal (`template` says what it counts); hidden otherwise.
fn progress_bar(total: u64, what: &str, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Runs the screen. Errors are I/O failures writing the results (or an unusable export,
/// as `crate::UnusableInput`); bad input lines are not errors.
pub fn run(kb: &Knowledge, settings: &Settings) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let export = open_export(&settings.export_dir).map_err(crate::unusable)?;
    let cohort = cohort::Cohort::new(kb, settings.as_of, settings.all).map_err(crate::unusable)?;
    std::fs::create_dir_all(&settings.out_dir)
        .with_context(|| format!("cannot create `{}`", settings.out_dir.display()))?;

    // A previous run's results (a gigabyte per 30,000 patients) take the file system most
    // of a second per gigabyte to delete: that happens in the background while the export
    // is read, not in the last pass's way.
    let results_path = settings.out_dir.join("screen-results.ndjson");
    let results_file = {
        let path = results_path.clone();
        std::thread::spawn(move || fresh_file(&path))
    };

    let mut passes = [0.0; 4];
    let mut lap = started;
    let mut split = |i: usize| {
        passes[i] = lap.elapsed().as_secs_f64();
        lap = Instant::now();
    };

    // Pass 1: patients and the formulary.
    let mut patients = PatientIndex::default();
    let mut medications: HashMap<Box<str>, Box<str>> = HashMap::new();
    let first: Vec<&ExportFile> = export.of_type(&["Patient", "Medication"]).collect();
    let bar = progress_bar(first.iter().map(|f| f.size).sum(), "patients", BYTES);
    for file in &first {
        let ty = file.resource_type;
        reader::for_each_chunk(
            file,
            &bar,
            |chunk: &Chunk| {
                let mut ids: Vec<(Box<str>, Option<Box<str>>)> = vec![];
                for (_, bytes) in chunk.lines() {
                    match line::read(bytes, ty, None) {
                        Line::Patient { id, .. } => ids.push((id.as_ref().into(), None)),
                        Line::Medication { id: Some(id), json } => {
                            ids.push((id.as_ref().into(), Some(json.into())))
                        }
                        _ => {}
                    }
                }
                ids
            },
            |ids| -> anyhow::Result<()> {
                for (id, json) in ids {
                    match json {
                        None => patients.insert(&id),
                        // The first of duplicate Medication resources wins, as in a Bundle.
                        Some(json) => {
                            medications.entry(id).or_insert(json);
                        }
                    }
                }
                Ok(())
            },
        )?;
    }
    bar.finish_and_clear();
    split(0);

    // Pass 2: the cohort.
    let mut in_cohort = vec![false; patients.len()];
    let types = cohort.types();
    let second: Vec<&ExportFile> = export.of_type(types).collect();
    let bar = progress_bar(
        second.iter().map(|f| f.size).sum(),
        "finding the cohort",
        BYTES,
    );
    for file in &second {
        let ty = file.resource_type;
        reader::for_each_chunk(
            file,
            &bar,
            |chunk: &Chunk| {
                let mut found = vec![];
                let mut who = line::Resolver::new(&patients);
                for (_, bytes) in chunk.lines() {
                    if let Line::About {
                        patient,
                        json,
                        medication,
                        ..
                    } = line::read(bytes, ty, Some(&mut who))
                    {
                        let med = medication
                            .as_deref()
                            .and_then(|r| formulary(&medications, r));
                        if cohort.admits(json, med) {
                            found.push(patient);
                        }
                    }
                }
                found
            },
            |found| -> anyhow::Result<()> {
                for p in found {
                    in_cohort[p as usize] = true;
                }
                Ok(())
            },
        )?;
    }
    bar.finish_and_clear();
    split(1);

    // Pass 3: every file checked; where the cohort's lines are, noted.
    let mut sources = kept::Sources::default();
    // Each chunk's kept lines as the chunk gave them (`Kept::group` takes them so).
    let mut kept_parts: Vec<Vec<(u32, kept::Span)>> = vec![];
    let mut resources = 0u64;
    let bad_path = settings.out_dir.join("screen-bad-lines.txt");
    let mut bad = BadLines::create(&bad_path)?;
    let bar = progress_bar(export.total_bytes(), "reading the export", BYTES);
    for (fi, file) in export.files.iter().enumerate() {
        let ty = file.resource_type;
        let name = file.name.as_str();
        // A plain file is read again at the kept lines' offsets; a gzip file (or one that
        // cannot be opened twice) has its kept lines copied.
        let disk = match file.gzip {
            false => std::fs::File::open(&file.path).ok().map(|f| {
                sources.add(kept::Source {
                    file: fi,
                    backing: kept::Backing::Disk(f),
                })
            }),
            true => None,
        };
        let failure = reader::for_each_chunk(
            file,
            &bar,
            |chunk: &Chunk| read_chunk(chunk, ty, &patients, &in_cohort, disk.is_none()),
            |part: ChunkPart| -> anyhow::Result<()> {
                resources += part.resources;
                for (line, reason) in part.bad {
                    bad.add(fi, name, line, reason)?;
                }
                if part.kept.is_empty() {
                    return Ok(());
                }
                let source = match (disk, part.text) {
                    (Some(s), _) => s,
                    (None, text) => sources.add(kept::Source {
                        file: fi,
                        backing: kept::Backing::Memory(text.into_boxed_slice()),
                    }),
                };
                let mut part_kept = part.kept;
                for (_, span) in &mut part_kept {
                    *span = span.in_source(source);
                }
                kept_parts.push(part_kept);
                Ok(())
            },
        )?;
        if let Some(f) = failure {
            let reason = format!("cannot read further: {}", f.error);
            bad.add_failure(fi, name, f.after_line + 1, reason)?;
        }
    }
    bar.finish_and_clear();
    let kept = kept::Kept::group(patients.len(), kept_parts);

    split(2);

    // Pass 4: each cohort patient's lines read again, the record built and assessed, in
    // the order of the Patient files. Exports write a patient's resources in that order in
    // every file, as a rule, so the re-reads move forward through each file: read ahead
    // by the kernel when the export no longer fits in the page cache (1M patients: 20 GB),
    // where id order jumped about the files.
    let order: Vec<(&str, u32)> = in_cohort
        .iter()
        .enumerate()
        .filter(|(_, c)| **c)
        .map(|(i, _)| (patients.ids[i].as_ref(), i as u32))
        .collect();
    let results_file = results_file.join().map_err(|_| {
        anyhow::anyhow!(
            "internal error: preparing `{}` failed",
            results_path.display()
        )
    })??;
    // A batch's text (32 brief reports, ~700 KB) is larger than the buffer, so it goes
    // straight to the file without a copy; a smaller one (the last, or short reports) is
    // gathered with the next. (With a 1 MiB buffer, every batch was copied into it first.)
    let mut results = BufWriter::with_capacity(64 << 10, results_file);
    let opts = Options {
        as_of: settings.as_of,
        drugs: vec![],
    };
    let reread = kept::Rereader {
        kb,
        sources: &sources,
        files: &export.files,
        patients: &patients,
        medications: &medications,
    };
    let mut tally = Tally::default();
    let bar = progress_bar(order.len() as u64, "assessing", PATIENTS);
    // A batch's result lines go into one buffer, written in one piece (~1 MB): no buffer per
    // report, no copy through the `BufWriter`. Written buffers come back here for the next
    // batches, so their pages are not handed back and faulted in again each time.
    let spare: Mutex<Vec<Vec<u8>>> = Mutex::new(vec![]);
    pipeline::ordered(
        rayon::current_num_threads(),
        order.chunks(ASSESS_BATCH),
        |batch| -> Assessed<'_> {
            let text = spare
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(ASSESS_BATCH * REPORT_BYTES));
            let mut out = Assessed {
                text,
                patients: Vec::with_capacity(batch.len()),
            };
            // Each worker keeps its read buffer from batch to batch rather than growing a
            // new one (and zeroing it) every time.
            thread_local!(static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
            SCRATCH.with_borrow_mut(|scratch| {
                for &(id, p) in batch {
                    let done = match reread.record(p, kept.of(p), scratch) {
                        Ok(r) => Screened {
                            id,
                            figures: assess_into(
                                kb,
                                &opts,
                                settings.full_reports,
                                id,
                                r.builder,
                                &mut out.text,
                            ),
                            bad_lines: r.bad,
                            resources: r.resources,
                        },
                        Err(e) => {
                            out.text.extend_from_slice(&error_line(id, &e));
                            Screened {
                                id,
                                figures: None,
                                bad_lines: vec![],
                                resources: 0,
                            }
                        }
                    };
                    out.text.push(b'\n');
                    out.patients.push(done);
                }
            });
            out
        },
        |done| -> anyhow::Result<()> {
            for Screened {
                id,
                figures,
                bad_lines,
                resources: more,
            } in done.patients
            {
                resources += more;
                // Bad lines found only now follow the reading pass's, patient by patient.
                for (fi, line, reason) in bad_lines {
                    bad.add(fi, &export.files[fi].name, line, reason)?;
                }
                match figures {
                    Some(f) => tally.add(id, f),
                    None => tally.not_assessed += 1,
                }
                bar.inc(1);
            }
            results.write_all(&done.text)?;
            let mut text = done.text;
            text.clear();
            spare.lock().unwrap_or_else(|e| e.into_inner()).push(text);
            Ok(())
        },
    )?;
    results.flush()?;
    drop(results);
    tally.sort_lists();
    bad.out.flush()?;
    let BadLines {
        listed: bad,
        count: bad_count,
        ..
    } = bad;
    bar.finish_and_clear();
    for b in bad.iter().take(BAD_LINES_SHOWN) {
        eprintln!(
            "jakguard: {}:{}: {}",
            export.files[b.file].name, b.line, b.reason
        );
    }
    if bad_count > BAD_LINES_SHOWN as u64 {
        eprintln!(
            "jakguard: … {} more bad lines in {}",
            bad_count - BAD_LINES_SHOWN as u64,
            bad_path.display()
        );
    }
    for name in &export.skipped {
        eprintln!("jakguard: {name}: skipped: the file name names no FHIR resource type");
    }
    split(3);

    let outcome = Outcome {
        files: export.files.len(),
        bytes: export.total_bytes(),
        patients: patients.len() as u64,
        screened: tally.screened,
        not_assessed: tally.not_assessed,
        resources,
        bad_lines: bad_count,
        skipped_files: export.skipped.clone(),
        seconds: started.elapsed().as_secs_f64(),
        passes,
    };
    let bad_listed: Vec<(String, u64, String)> = bad
        .into_iter()
        .map(|b| (export.files[b.file].name.clone(), b.line, b.reason))
        .collect();
    let report = html::Summary {
        settings,
        knowledge_version: &kb.version,
        outcome: &outcome,
        tally: &tally,
        bad_lines: &bad_listed,
    };
    html::write_csv(&settings.out_dir, &report)?;
    html::write_html(&settings.out_dir, &report)?;
    // The final line counts everything, the summaries included.
    let mut outcome = outcome;
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// The Medication a reference names, with the full URL to register it under when the
/// reference is not `Medication/id`.
fn formulary<'m>(
    medications: &'m HashMap<Box<str>, Box<str>>,
    reference: &'m str,
) -> Option<(&'m str, Option<&'m str>)> {
    if let Some(id) = reference.strip_prefix("urn:uuid:") {
        return medications.get(id).map(|j| (j.as_ref(), Some(reference)));
    }
    let (before, id) = reference.rsplit_once('/')?;
    if before != "Medication" {
        return None;
    }
    medications.get(id).map(|j| (j.as_ref(), None))
}

/// What one chunk contributes: resources, bad lines, and where the cohort's lines are.
struct ChunkPart {
    resources: u64,
    bad: Vec<(u64, String)>,
    /// The cohort's lines (their `source` is set when the part is merged).
    kept: Vec<(u32, kept::Span)>,
    /// When the lines are copied (gzip): their text, which the spans' offsets point into.
    text: Vec<u8>,
}

/// Checks every line of a chunk and notes the cohort's: their offset in the file, or with
/// `copy`, their text.
fn read_chunk(
    chunk: &Chunk,
    ty: &'static str,
    patients: &PatientIndex,
    in_cohort: &[bool],
    copy: bool,
) -> ChunkPart {
    let mut part = ChunkPart {
        resources: 0,
        bad: vec![],
        kept: vec![],
        text: vec![],
    };
    let mut who = line::Resolver::new(patients);
    let quick = line::QuickSubject::for_type(ty);
    let mut scratch = vec![];
    for (n, at, bytes) in chunk.lines_at() {
        if let Some(quick) = &quick
            && let Some(subject) = quick.find(bytes)
            && let Some(p) = who.resolve(subject.reference)
        {
            // A line whose bytes say it is about a cohort patient is checked when it is
            // read in full in the last pass, not parsed twice.
            if in_cohort[p as usize] && bytes.len() < kept::MAX_LINE {
                let len = bytes.len() as u32;
                let span = if copy {
                    let start = part.text.len() as u64;
                    part.text.extend_from_slice(bytes);
                    part.text.push(b'\n');
                    kept::Span::unchecked(len, start, n)
                } else {
                    kept::Span::unchecked(len, at, n)
                };
                part.kept.push((p, span));
                continue;
            }
            // Another patient's line, written as exporters write them: checked whole.
            if !in_cohort[p as usize] && quick.confirms(bytes, &subject, &mut scratch) {
                part.resources += 1;
                continue;
            }
        }
        // Every other line is read member by member.
        let keep = match line::read(bytes, ty, Some(&mut who)) {
            Line::Blank => continue,
            Line::Bad(reason) => {
                part.bad.push((n, reason));
                continue;
            }
            Line::Other | Line::Medication { .. } => None,
            Line::Patient { id, .. } => patients.get(&id),
            Line::About { patient, .. } => Some(patient),
        };
        part.resources += 1;
        let Some(p) = keep.filter(|p| in_cohort[*p as usize]) else {
            continue;
        };
        if bytes.len() >= kept::MAX_LINE {
            // A single resource over 2 GB: not something any record could hold.
            part.bad.push((n, "a line longer than 2 GB".into()));
            part.resources -= 1;
            continue;
        }
        let len = bytes.len() as u32;
        let at = if copy {
            let start = part.text.len() as u64;
            part.text.extend_from_slice(bytes);
            part.text.push(b'\n');
            start
        } else {
            at
        };
        part.kept.push((p, kept::Span::checked(len, at, n)));
    }
    part
}

/// `file:line`, formatted only if a message names it.
struct LineAt<'a> {
    file: &'a str,
    line: u64,
}

impl std::fmt::Display for LineAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Appends one patient's result line (without its newline) to `out`, the whole report or
/// its brief form; returns the patient's figures (none when the record could not be built).
fn assess_into(
    kb: &Knowledge,
    opts: &Options,
    full: bool,
    id: &str,
    builder: RecordBuilder,
    out: &mut Vec<u8>,
) -> Option<PatientFigures> {
    match builder.finish() {
        Ok(record) => {
            let report = engine::assess(kb, &record, opts);
            let start = out.len();
            let written = if full {
                serde_json::to_writer(&mut *out, &report)
            } else {
                serde_json::to_writer(&mut *out, &report.brief())
            };
            if let Err(e) = written {
                out.truncate(start);
                out.extend_from_slice(&error_line(
                    id,
                    &format!("cannot serialise the report: {e}"),
                ));
            }
            Some(PatientFigures::of(&report))
        }
        Err(e) => {
            out.extend_from_slice(&error_line(id, &e.to_string()));
            None
        }
    }
}

/// A batch of patients assessed: their result lines, each ending in a newline, and per
/// patient what the summaries and the bad-line list need.
struct Assessed<'a> {
    text: Vec<u8>,
    patients: Vec<Screened<'a>>,
}

/// One patient of a batch, in the batch's order.
struct Screened<'a> {
    id: &'a str,
    /// None when the patient could not be assessed.
    figures: Option<PatientFigures>,
    /// Lines found bad only now: (export file index, line, reason).
    bad_lines: Vec<(usize, u64, String)>,
    /// Lines read only now that were good resources.
    resources: u64,
}

/// The result line of a patient who could not be assessed, and why.
fn error_line(id: &str, error: &str) -> Vec<u8> {
    serde_json::json!({"patient": {"id": id}, "error": error})
        .to_string()
        .into_bytes()
}

/// `--parse-only`: the bare cost of reading every file and parsing every line as JSON,
/// with the same reader and parallelism as the screen; the benchmark's baseline.
pub fn parse_only(dir: &Path) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let export = open_export(dir).map_err(crate::unusable)?;
    let bar = progress_bar(export.total_bytes(), "parsing", BYTES);
    let mut outcome = Outcome {
        files: export.files.len(),
        bytes: export.total_bytes(),
        skipped_files: export.skipped.clone(),
        ..Outcome::default()
    };
    for file in &export.files {
        let failure = reader::for_each_chunk(
            file,
            &bar,
            |chunk: &Chunk| {
                let (mut ok, mut bad) = (0u64, 0u64);
                for (_, bytes) in chunk.lines() {
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                        Ok(_) => ok += 1,
                        Err(_) => bad += 1,
                    }
                }
                (ok, bad)
            },
            |(ok, bad)| -> anyhow::Result<()> {
                outcome.resources += ok;
                outcome.bad_lines += bad;
                Ok(())
            },
        )?;
        if failure.is_some() {
            outcome.bad_lines += 1;
        }
    }
    bar.finish_and_clear();
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::kb::Knowledge;

    fn kb() -> Knowledge {
        match Knowledge::load(&engine::embedded_knowledge()) {
            Ok(kb) => kb,
            Err(e) => unreachable!("the embedded knowledge loads: {e}"),
        }
    }

    fn opts() -> Options {
        Options {
            as_of: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap_or_default(),
            drugs: vec![],
        }
    }

    #[test]
    fn a_batch_holds_each_patients_line_after_the_last() {
        let kb = kb();
        let mut text = b"earlier line\n".to_vec();
        let mut b = RecordBuilder::new();
        b.add_json(
            r#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1980-02-03"}"#,
            "Patient.ndjson:1",
            None,
        );
        let figures = assess_into(&kb, &opts(), false, "p1", b, &mut text);
        assert!(figures.is_some());
        let line = text
            .strip_prefix(b"earlier line\n".as_slice())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
        assert_eq!(v["patient"]["id"], "p1");
        assert_eq!(v["as_of"], "2026-03-01");
        assert_eq!(v["assessments"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_patient_that_cannot_be_assessed_gets_an_error_line_and_no_figures() {
        let kb = kb();
        let mut text = vec![];
        let mut b = RecordBuilder::new();
        for id in ["p1", "p2"] {
            b.add_json(
                &format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#),
                "Patient.ndjson:1",
                None,
            );
        }
        assert!(assess_into(&kb, &opts(), false, "p1", b, &mut text).is_none());
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        assert_eq!(v["patient"]["id"], "p1");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("2 Patient")),
            "{v}"
        );
    }
}
