//! The cohort's lines, kept as places rather than as records.
//!
//! The reading pass checks every line and notes where each line of a cohort patient is
//! (`Span`: which file, which byte, which line number). Nothing of the resource itself is
//! held: the assessing pass reads each patient's lines again (from the page cache, one
//! positioned read per run of adjacent lines), builds that patient's record, assesses it and
//! drops it. Memory is therefore a few dozen bytes per kept line instead of the record, and
//! each record is built and freed by the thread that assesses it.
//!
//! A gzip file cannot be read at an offset: the lines it keeps are copied, per chunk, into
//! memory (`Backing::Memory`), which costs what the text of those lines costs.
//!
//! If the export changes between the two passes, a line read again may no longer be the
//! resource the first pass saw; that is detected (the line no longer reads, or names another
//! patient) and the patient's result says so instead of assessing a mixed record.

use super::export::ExportFile;
use super::line::{self, Line, PatientIndex};
use super::{LineAt, formulary};
use engine::Knowledge;
use engine::fhir::RecordBuilder;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Kept lines at most this many bytes apart are read in one go.
const RUN_GAP: u64 = 4 << 10;
/// The most one read takes in.
const RUN_MAX: u64 = 8 << 20;

/// Where one kept line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Index into `Sources`.
    pub source: u32,
    /// Length in bytes, without the line ending (below `MAX_LINE`); the top bit is set for a
    /// line not yet checked (see `Span::unchecked`).
    len: u32,
    /// Byte offset of the line in its source.
    pub at: u64,
    /// The line's number in its file, for messages.
    pub line: u64,
}

/// Kept lines are shorter than this (2 GiB); a longer one is a bad line.
pub const MAX_LINE: usize = 1 << 31;
const UNCHECKED: u32 = 1 << 31;

impl Span {
    /// A line the reading pass checked: it is a valid resource about its patient.
    pub fn checked(len: u32, at: u64, line: u64) -> Span {
        Span {
            source: 0,
            len: len & !UNCHECKED,
            at,
            line,
        }
    }

    /// A line whose bytes name its patient beyond doubt (`line::QuickSubject`) and which
    /// the reading pass therefore did not parse: it is checked when read again, and is a bad
    /// line then if it is not a valid resource.
    pub fn unchecked(len: u32, at: u64, line: u64) -> Span {
        Span {
            len: (len & !UNCHECKED) | UNCHECKED,
            ..Span::checked(len, at, line)
        }
    }

    /// The same line in another source.
    pub fn in_source(self, source: u32) -> Span {
        Span { source, ..self }
    }

    pub fn len(&self) -> u32 {
        self.len & !UNCHECKED
    }

    pub fn is_checked(&self) -> bool {
        self.len & UNCHECKED == 0
    }
}

/// A patient's record as read again, with what the unchecked lines turned out to be.
#[derive(Default)]
pub struct Reread {
    pub builder: RecordBuilder,
    /// Unchecked lines that are not valid resources: (export file index, line, reason).
    pub bad: Vec<(usize, u64, String)>,
    /// Unchecked lines that are valid resources (checked ones were counted when read).
    pub resources: u64,
}

/// What one kept line turned out to be.
enum Added {
    Kept,
    Bad(String),
    /// Not this patient's line (any more): the export changed.
    NotTheirs,
}

/// What a span's bytes are read from.
pub enum Backing {
    /// A plain file of the export, read again at the span's offset.
    Disk(File),
    /// Kept lines of one chunk of a gzip file.
    Memory(Box<[u8]>),
}

/// One source of kept lines, with the export file it came from.
pub struct Source {
    /// Index of the export file (for its resource type and name).
    pub file: usize,
    pub backing: Backing,
}

/// Every source of kept lines.
#[derive(Default)]
pub struct Sources {
    list: Vec<Source>,
}

impl Sources {
    /// Adds a source and returns its index for spans.
    pub fn add(&mut self, source: Source) -> u32 {
        self.list.push(source);
        (self.list.len() - 1) as u32
    }

    fn get(&self, i: u32) -> Option<&Source> {
        self.list.get(i as usize)
    }
}

/// The kept lines of every cohort patient, grouped by patient in the order they were read.
pub struct Kept {
    spans: Vec<Span>,
    /// For patient `p` (export index), `starts[p]..starts[p + 1]` in `spans`.
    starts: Vec<u32>,
}

impl Kept {
    /// Groups `(patient, span)` pairs (in reading order, as the reading pass's chunks gave
    /// them) by patient, keeping that order within each patient: a counting sort, linear in
    /// the number of spans. The chunks' lists are taken as they are: one list of them all
    /// would be grown, and copied at each growth, through a million lines and more.
    pub fn group(patients: usize, parts: Vec<Vec<(u32, Span)>>) -> Kept {
        let mut starts = vec![0u32; patients + 1];
        for (p, _) in parts.iter().flatten() {
            starts[*p as usize + 1] += 1;
        }
        for i in 0..patients {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let total = parts.iter().map(Vec::len).sum();
        let mut spans = vec![Span::checked(0, 0, 0); total];
        for (p, span) in parts.into_iter().flatten() {
            let slot = &mut next[p as usize];
            spans[*slot as usize] = span;
            *slot += 1;
        }
        Kept { spans, starts }
    }

    /// The kept lines of patient `p`, in reading order.
    pub fn of(&self, p: u32) -> &[Span] {
        let p = p as usize;
        match (self.starts.get(p), self.starts.get(p + 1)) {
            (Some(&a), Some(&b)) => &self.spans[a as usize..b as usize],
            _ => &[],
        }
    }
}

/// What the assessing pass needs to read kept lines back.
pub struct Rereader<'a> {
    pub kb: &'a Knowledge,
    pub sources: &'a Sources,
    /// The export's files (a source's `file` indexes them).
    pub files: &'a [ExportFile],
    pub patients: &'a PatientIndex,
    pub medications: &'a HashMap<Box<str>, Box<str>>,
}

impl Rereader<'_> {
    /// Builds patient `p`'s record from its kept lines. `scratch` is reused between calls.
    /// An error means the export could not be read again as it was read before.
    pub fn record(&self, p: u32, spans: &[Span], scratch: &mut Vec<u8>) -> Result<Reread, String> {
        let mut out = Reread::default();
        let mut i = 0;
        while i < spans.len() {
            // A run of lines that follow each other in the same source: one read.
            let first = spans[i];
            let mut end = i + 1;
            let mut stop = first.at + u64::from(first.len());
            // Lines close together are read together, with the few lines between them:
            // bytes from the page cache are cheaper than a system call each.
            while end < spans.len()
                && spans[end].source == first.source
                && spans[end].at >= stop
                && spans[end].at - stop <= RUN_GAP
                && spans[end].at + u64::from(spans[end].len()) - first.at <= RUN_MAX
            {
                stop = spans[end].at + u64::from(spans[end].len());
                end += 1;
            }
            let source = self
                .sources
                .get(first.source)
                .ok_or_else(|| "internal error: a kept line has no source".to_string())?;
            let (ty, name) = self
                .files
                .get(source.file)
                .map(|f| (f.resource_type, f.name.as_str()))
                .ok_or_else(|| "internal error: a kept line has no file".to_string())?;
            let changed = |line: u64| {
                format!(
                    "{name}:{line} changed while the export was being screened; screen it again"
                )
            };
            let bytes: &[u8] = match &source.backing {
                Backing::Disk(file) => {
                    let len = usize::try_from(stop - first.at).map_err(|_| changed(first.line))?;
                    // Grown, never cleared: old bytes are read over, not zeroed first.
                    if scratch.len() < len {
                        scratch.resize(len, 0);
                    }
                    let into = &mut scratch[..len];
                    file.read_exact_at(into, first.at)
                        .map_err(|e| format!("{name}:{}: cannot read again: {e}", first.line))?;
                    into
                }
                Backing::Memory(buf) => usize::try_from(first.at)
                    .ok()
                    .and_then(|a| buf.get(a..a + (stop - first.at) as usize))
                    .ok_or_else(|| "internal error: a kept line is out of its chunk".to_string())?,
            };
            let strict = line::strict_readable(ty);
            for span in &spans[i..end] {
                let from = (span.at - first.at) as usize;
                let text = bytes
                    .get(from..from + span.len() as usize)
                    .ok_or_else(|| changed(span.line))?;
                match self.add_line(&mut out.builder, p, text, ty, name, span.line, strict) {
                    Added::Kept if !span.is_checked() => out.resources += 1,
                    Added::Kept => {}
                    Added::Bad(reason) if !span.is_checked() => {
                        out.bad.push((source.file, span.line, reason));
                    }
                    Added::Bad(_) | Added::NotTheirs => return Err(changed(span.line)),
                }
            }
            i = end;
        }
        // Observations no lab reads (vital signs, surveys…) add nothing to an assessment.
        out.builder
            .retain_observations(|o| !engine::facts::labs_of(self.kb, &o.code).is_empty());
        Ok(out)
    }

    /// Adds one kept line of patient `p`: the engine's strict one-pass reading when the line
    /// allows it, else the careful reading (which says why a bad line is bad).
    #[allow(clippy::too_many_arguments)]
    fn add_line(
        &self,
        builder: &mut RecordBuilder,
        p: u32,
        bytes: &[u8],
        ty: &'static str,
        name: &str,
        n: u64,
        strict: bool,
    ) -> Added {
        if strict && let Some((q, mut resource)) = line::read_strict(bytes, ty, self.patients, p) {
            if q != p {
                return Added::NotTheirs;
            }
            // Checked: the builder is this patient's alone and needs no copy of it.
            resource.forget_subject();
            builder.add_strict(
                resource,
                &LineAt {
                    file: name,
                    line: n,
                },
            );
            return Added::Kept;
        }
        match line::read(bytes, ty, Some(&mut line::Resolver::new(self.patients))) {
            Line::Patient { id, json } if self.patients.get(&id) == Some(p) => {
                builder.add_json(json, &format!("{name}:{n}"), None);
                Added::Kept
            }
            Line::About {
                patient,
                json,
                medication,
            } if patient == p => {
                if let Some((m, full_url)) = medication
                    .as_deref()
                    .and_then(|r| formulary(self.medications, r))
                {
                    builder.add_json(m, "Medication", full_url);
                }
                builder.add_json(json, &format!("{name}:{n}"), None);
                Added::Kept
            }
            Line::Bad(reason) => Added::Bad(reason),
            _ => Added::NotTheirs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(line: u64) -> Span {
        Span::checked(1, line * 10, line)
    }

    /// Spans for every line of `text`, all for patient 0, from source 0.
    fn spans_of(text: &str) -> Vec<Span> {
        let mut at = 0u64;
        let mut out = vec![];
        for (i, l) in text.split('\n').enumerate() {
            if !l.is_empty() {
                out.push(Span::checked(l.len() as u32, at, i as u64 + 1));
            }
            at += l.len() as u64 + 1;
        }
        out
    }

    /// One source: `text` held in memory, as a gzip file's kept lines are.
    fn in_memory(text: &str) -> Sources {
        let mut sources = Sources::default();
        sources.add(Source {
            file: 0,
            backing: Backing::Memory(text.as_bytes().into()),
        });
        sources
    }

    #[test]
    fn a_patients_lines_read_again_build_the_record_and_a_changed_file_is_noticed() {
        let kb = crate::load_knowledge(None).expect("embedded knowledge");
        let mut patients = PatientIndex::default();
        patients.insert("p1");
        patients.insert("p2");
        let lymph = |who: &str, v: u32| {
            format!(
                r#"{{"resourceType":"Observation","id":"o-{v}","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"731-0"}}]}},"subject":{{"reference":"Patient/{who}"}},"effectiveDateTime":"2026-01-0{v}","valueQuantity":{{"value":{v}00,"unit":"/uL","system":"http://unitsofmeasure.org","code":"/uL"}}}}"#
            )
        };
        // Two of p1's lines, one line between them that is not kept, and a vital sign.
        let vital = r#"{"resourceType":"Observation","id":"v","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":70}}"#;
        let text = format!(
            "{}\n{}\n{}\n{vital}\n",
            lymph("p1", 1),
            lymph("p2", 2),
            lymph("p1", 3)
        );
        let dir = std::env::temp_dir().join(format!("jakguard-kept-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join("Observation.ndjson");
        std::fs::write(&path, &text).expect("write");
        let mut spans = spans_of(&text);
        spans.remove(1);

        let mut sources = Sources::default();
        let disk = Source {
            file: 0,
            backing: Backing::Disk(File::open(&path).expect("open")),
        };
        assert_eq!(sources.add(disk), 0);
        let files = vec![ExportFile {
            path: path.clone(),
            name: "Observation.ndjson".to_string(),
            resource_type: "Observation",
            gzip: false,
            size: text.len() as u64,
        }];
        let medications = HashMap::new();
        let reread = Rereader {
            kb: &kb,
            sources: &sources,
            files: &files,
            patients: &patients,
            medications: &medications,
        };
        let mut scratch = vec![];
        let record = reread
            .record(0, &spans, &mut scratch)
            .expect("readable")
            .builder
            .finish()
            .expect("a record");
        let refs: Vec<&str> = record
            .observations
            .iter()
            .map(|o| o.reference.as_str())
            .collect();
        // Both lymphocyte counts, in file order; the vital sign is read but not kept.
        assert_eq!(refs, vec!["Observation/o-1", "Observation/o-3"]);
        assert_eq!(record.resource_count, 3);

        // The same lines from memory (a gzip file's copy) build the same record.
        let memory = in_memory(&text);
        let from_memory = Rereader {
            sources: &memory,
            ..reread
        };
        let again = from_memory
            .record(0, &spans, &mut scratch)
            .expect("readable")
            .builder
            .finish()
            .expect("a record");
        assert_eq!(
            format!("{:?}", again.observations),
            format!("{:?}", record.observations)
        );

        // Unchecked lines (their patient told by their bytes) are checked now: the valid ones
        // count as resources, a bad one is a bad line, not a failure.
        let bad_line =
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"code":"#;
        let mixed = format!("{}\n{bad_line}\n", lymph("p1", 4));
        let memory = in_memory(&mixed);
        let unchecked: Vec<Span> = spans_of(&mixed)
            .iter()
            .map(|s| Span::unchecked(s.len(), s.at, s.line))
            .collect();
        assert!(unchecked.iter().all(|s| !s.is_checked() && s.len() > 0));
        let from_memory = Rereader {
            sources: &memory,
            ..reread
        };
        let got = from_memory
            .record(0, &unchecked, &mut scratch)
            .expect("a bad unchecked line is not a failure");
        assert_eq!(got.resources, 1);
        assert_eq!(got.bad.len(), 1);
        assert_eq!((got.bad[0].0, got.bad[0].1), (0, 2));
        assert!(got.bad[0].2.contains("JSON"), "{}", got.bad[0].2);
        assert_eq!(got.builder.finish().expect("record").observations.len(), 1);
        // The same bad line, checked in the reading pass, can only mean a changed export.
        let err = from_memory
            .record(0, &spans_of(&mixed), &mut scratch)
            .err()
            .unwrap_or_default();
        assert!(err.contains("Observation.ndjson:2 changed"), "{err}");

        // The file changes under the screen: p1's first line is now p2's. Not assessed.
        let changed = text.replacen("Patient/p1", "Patient/p2", 1);
        std::fs::write(&path, &changed).expect("write");
        let err = reread
            .record(0, &spans, &mut scratch)
            .err()
            .unwrap_or_default();
        assert!(err.contains("Observation.ndjson:1 changed"), "{err}");
        // Cut short: the line cannot be read again at all.
        std::fs::write(&path, &text[..20]).expect("write");
        let err = reread
            .record(0, &spans, &mut scratch)
            .err()
            .unwrap_or_default();
        assert!(err.contains("cannot read again"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn grouping_keeps_each_patients_lines_in_reading_order() {
        // Three chunks' lists, one of them empty.
        let parts = vec![
            vec![(2, span(1)), (0, span(2))],
            vec![],
            vec![(2, span(3)), (1, span(4)), (0, span(5))],
        ];
        let kept = Kept::group(4, parts);
        let lines = |p| kept.of(p).iter().map(|s| s.line).collect::<Vec<_>>();
        assert_eq!(lines(0), vec![2, 5]);
        assert_eq!(lines(1), vec![4]);
        assert_eq!(lines(2), vec![1, 3]);
        assert!(lines(3).is_empty());
        // A patient beyond the index has nothing, rather than a panic.
        assert!(lines(9).is_empty());
    }
}
