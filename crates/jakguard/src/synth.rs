//! `jakguard synth`: a synthetic FHIR Bulk Data export of a rheumatology population, for
//! testing and benchmarking `screen` without real patients.
//!
//! Patients with ankylosing spondylitis or nr-axSpA (and some without), comorbidities, TNF
//! blocker histories, NSAIDs, JAK inhibitor orders in every status, vaccines, and lab visits
//! before and during treatment — with the messy parts real exports have: several LOINC codes
//! for one test, mixed and unknown units, values missing, results entered in error, the same
//! resource exported twice, `urn:uuid:` references, drugs named only in text or through a
//! `Medication` resource. Codes and units come from what `knowledge/` recognises, plus the
//! variants the engine must flag rather than guess.
//!
//! Deterministic: patient `i` draws from its own ChaCha stream (`seed`, stream `i`), blocks of
//! patients are generated in parallel and written in order, so the same `--patients`,
//! `--seed` and `--as-of` give byte-identical files on any machine and thread count. With
//! `--gzip`, each block is its own gzip member (the files are multi-member gzip, which
//! readers must handle, as `screen` does).

use anyhow::Context;
use chrono::{Days, NaiveDate};
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct SynthArgs {
    /// How many patients.
    #[arg(long)]
    pub patients: u64,
    /// The random seed: the same seed (and --as-of) gives the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The export date the histories end at (YYYY-MM-DD); default: today.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Write `.ndjson.gz` (multi-member gzip) instead of `.ndjson`.
    #[arg(long)]
    pub gzip: bool,
    /// The directory to write (created if missing).
    pub out_dir: PathBuf,
}

const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const CVX: &str = "http://hl7.org/fhir/sid/cvx";
const UCUM: &str = "http://unitsofmeasure.org";

/// The files written, in this order.
const TYPES: [&str; 7] = [
    "Patient",
    "Medication",
    "Condition",
    "MedicationStatement",
    "MedicationRequest",
    "Observation",
    "Immunization",
];
const PATIENT: usize = 0;
const MEDICATION: usize = 1;
const CONDITION: usize = 2;
const STATEMENT: usize = 3;
const REQUEST: usize = 4;
const OBSERVATION: usize = 5;
const IMMUNIZATION: usize = 6;

/// Patients per parallel block (one gzip member per block and file).
const BLOCK: u64 = 512;

/// One block's lines, per file.
type Buffers = [Vec<u8>; 7];

pub fn run(args: &SynthArgs) -> anyhow::Result<String> {
    let as_of = crate::as_of_date(args.as_of.as_deref())?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create `{}`", args.out_dir.display()))?;
    let ext = if args.gzip { "ndjson.gz" } else { "ndjson" };
    let mut files = Vec::with_capacity(TYPES.len());
    for ty in TYPES {
        let path = args.out_dir.join(format!("{ty}.{ext}"));
        let f = std::fs::File::create(&path)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        files.push(std::io::BufWriter::with_capacity(1 << 20, f));
    }
    // The formulary that some orders reference instead of coding the drug inline.
    let mut formulary = Vec::new();
    for (id, code, display) in FORMULARY {
        let _ = writeln!(
            formulary,
            r#"{{"resourceType":"Medication","id":"{id}","code":{{"coding":[{{"system":"{RXNORM}","code":"{code}","display":"{display}"}}]}}}}"#
        );
    }
    let formulary = if args.gzip {
        gzip(&formulary)?
    } else {
        formulary
    };
    files[MEDICATION].write_all(&formulary)?;

    let blocks = args.patients.div_ceil(BLOCK);
    // A few blocks per core at a time: parallel, yet memory stays a few blocks' worth.
    let wave = (rayon::current_num_threads() as u64 * 4).max(1);
    let mut bytes = formulary.len() as u64;
    let mut resources = FORMULARY.len() as u64;
    let mut b = 0;
    while b < blocks {
        let end = (b + wave).min(blocks);
        let done: Vec<anyhow::Result<(Buffers, u64)>> = (b..end)
            .into_par_iter()
            .map(|block| {
                let mut bufs: Buffers = Default::default();
                let mut count = 0;
                let first = block * BLOCK;
                for i in first..(first + BLOCK).min(args.patients) {
                    count += patient(args.seed, i, as_of, &mut bufs);
                }
                if args.gzip {
                    for buf in bufs.iter_mut() {
                        if !buf.is_empty() {
                            *buf = gzip(buf)?;
                        }
                    }
                }
                Ok((bufs, count))
            })
            .collect();
        for r in done {
            let (bufs, count) = r?;
            resources += count;
            for (f, buf) in files.iter_mut().zip(bufs.iter()) {
                f.write_all(buf)?;
                bytes += buf.len() as u64;
            }
        }
        b = end;
    }
    for mut f in files {
        f.flush()?;
    }
    write_manifest(args, as_of, ext)?;
    Ok(format!(
        "wrote {} patients, {resources} resources, {:.1} MB to {}",
        args.patients,
        bytes as f64 / 1e6,
        args.out_dir.display()
    ))
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = GzEncoder::new(Vec::with_capacity(data.len() / 6), Compression::fast());
    e.write_all(data)?;
    e.finish()
}

/// A Bulk Data `$export` completion manifest, as a server would return it.
fn write_manifest(args: &SynthArgs, as_of: NaiveDate, ext: &str) -> anyhow::Result<()> {
    let output: Vec<serde_json::Value> = TYPES
        .iter()
        .map(|t| serde_json::json!({"type": t, "url": format!("{t}.{ext}")}))
        .collect();
    let manifest = serde_json::json!({
        "transactionTime": format!("{as_of}T00:00:00Z"),
        "request": format!("synthetic: jakguard synth --patients {} --seed {}", args.patients, args.seed),
        "requiresAccessToken": false,
        "output": output,
        "error": [],
    });
    let path = args.out_dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

const FORMULARY: [(&str, &str, &str); 3] = [
    ("med-tofa-5", "1357541", "tofacitinib 5 MG Oral Tablet"),
    (
        "med-upa-15",
        "2196894",
        "24 HR upadacitinib 15 MG Extended Release Oral Tablet",
    ),
    ("med-ada", "327361", "adalimumab"),
];

/// One synthetic patient's random draws and output.
struct Gen<'a> {
    rng: ChaCha8Rng,
    bufs: &'a mut Buffers,
    /// The patient's reference as its resources write it.
    subject: String,
    key: String,
    n: u32,
    as_of: NaiveDate,
    count: u64,
}

impl Gen<'_> {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.rng.random_range(0..items.len())]
    }

    /// A normal draw (Box-Muller).
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let u1: f64 = self.rng.random::<f64>().max(1e-12);
        let u2: f64 = self.rng.random();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn id(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!("{prefix}-{}-{}", self.key, self.n)
    }

    fn emit(&mut self, file: usize, line: &str) {
        self.bufs[file].extend_from_slice(line.as_bytes());
        self.bufs[file].push(b'\n');
        self.count += 1;
    }
}

fn days_before(day: NaiveDate, days: u64) -> NaiveDate {
    day.checked_sub_days(Days::new(days)).unwrap_or(day)
}

/// Writes patient `i`; returns the number of resources written.
fn patient(seed: u64, i: u64, as_of: NaiveDate, bufs: &mut Buffers) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i);
    let hi: u64 = rng.random();
    let lo: u64 = rng.random();
    let uuid = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xfff,
        0x8000 | ((lo >> 48) & 0x3fff),
        lo & 0xffff_ffff_ffff
    );
    let key = format!("{:016x}", lo ^ hi.rotate_left(17));
    // A few exporters write `urn:uuid:` references; most write `Patient/id`.
    let subject = if rng.random_bool(0.02) {
        format!("urn:uuid:{uuid}")
    } else {
        format!("Patient/{uuid}")
    };
    let mut g = Gen {
        rng,
        bufs,
        subject,
        key,
        n: 0,
        as_of,
        count: 0,
    };

    // Who: the diagnosis first, since sex ratios differ (AS is commoner in men).
    let dx = g.rng.random_range(0..100);
    let (axspa, male) = match dx {
        0..78 => (Some(Dx::As), g.chance(0.7)),
        78..92 => (Some(Dx::NrAxSpa), g.chance(0.5)),
        _ => (None, g.chance(0.4)),
    };
    let age = g.rng.random_range(19..84u64);
    let birth = days_before(g.as_of, age * 365 + g.rng.random_range(0..365));
    let gender = if male { "male" } else { "female" };
    let line = format!(
        r#"{{"resourceType":"Patient","id":"{uuid}","meta":{{"lastUpdated":"{as_of}T00:00:00Z"}},"identifier":[{{"system":"urn:oid:2.16.840.1.113883.4.642.99","value":"MRN{i:08}"}}],"name":[{{"family":"Synthetic","given":["Patient{i}"]}}],"gender":"{gender}","birthDate":"{birth}"}}"#
    );
    g.emit(PATIENT, &line);

    // Conditions.
    let onset = days_before(
        g.as_of,
        g.rng
            .random_range(365..(age.saturating_sub(16).max(2)) * 365),
    );
    match axspa {
        Some(Dx::As) => {
            if g.chance(0.7) {
                condition(
                    &mut g,
                    SNOMED,
                    "9631008",
                    "Ankylosing spondylitis (disorder)",
                    onset,
                    "active",
                );
            } else {
                condition(
                    &mut g,
                    ICD10,
                    "M45.9",
                    "Ankylosing spondylitis of unspecified sites in spine",
                    onset,
                    "active",
                );
            }
        }
        Some(Dx::NrAxSpa) => {
            if g.chance(0.5) {
                condition(
                    &mut g,
                    SNOMED,
                    "713777005",
                    "Non-radiographic axial spondyloarthritis",
                    onset,
                    "active",
                );
            } else {
                condition(
                    &mut g,
                    ICD10,
                    "M45.A5",
                    "Non-radiographic axial spondyloarthritis of thoracolumbar region",
                    onset,
                    "active",
                );
            }
        }
        None => {
            let (code, display) = *g.pick(&[
                ("69896004", "Rheumatoid arthritis (disorder)"),
                ("33339001", "Psoriatic arthritis (disorder)"),
                ("64766004", "Ulcerative colitis (disorder)"),
            ]);
            condition(&mut g, SNOMED, code, display, onset, "active");
        }
    }
    for &(p, system, code, display) in COMORBIDITIES {
        // Cardiovascular risk rises with age.
        let p = if age > 50 { p * 1.8 } else { p };
        if g.chance(p) {
            let d = days_before(g.as_of, g.rng.random_range(30..3650));
            let status = if g.chance(0.9) { "active" } else { "resolved" };
            condition(&mut g, system, code, display, d, status);
        }
    }

    // Medication history: NSAIDs, TNF blockers, then (for some) a JAK inhibitor.
    if g.chance(0.5) {
        let (code, display) = *g.pick(&[("7258", "naproxen"), ("5640", "ibuprofen")]);
        let start = days_before(g.as_of, g.rng.random_range(100..3000));
        statement(&mut g, code, display, "active", start, None);
    }
    if axspa.is_some() && g.chance(0.6) {
        let (code, display) = *g.pick(&[
            ("327361", "adalimumab"),
            ("214555", "etanercept"),
            ("191831", "infliximab"),
            ("709271", "certolizumab pegol"),
            ("819300", "golimumab"),
        ]);
        let start = days_before(g.as_of, g.rng.random_range(900..3600));
        let end = start
            .checked_add_days(Days::new(g.rng.random_range(180..800)))
            .unwrap_or(start);
        statement(&mut g, code, display, "completed", start, Some(end));
    }
    let jak_p = if axspa.is_some() { 0.4 } else { 0.2 };
    let jak = if g.chance(jak_p) {
        let status = *g.pick(&[
            "active",
            "active",
            "active",
            "active",
            "active",
            "active",
            "active",
            "active",
            "active",
            "active",
            "active",
            "active",
            "active",
            "draft",
            "draft",
            "draft",
            "stopped",
            "stopped",
            "completed",
            "entered-in-error",
        ]);
        let start = if status == "draft" {
            as_of
        } else {
            days_before(g.as_of, g.rng.random_range(20..1500))
        };
        jak_order(&mut g, status, start);
        Some((status, start))
    } else {
        None
    };

    // Lab visits: a baseline before the drug, then every ~3 months; some patients lapse.
    let on_drug = matches!(jak, Some(("active", _)));
    let last_visit_ago: u64 = if on_drug && g.chance(0.72) {
        g.rng.random_range(0..85)
    } else {
        g.rng.random_range(90..540)
    };
    let first_ago = match jak {
        Some((_, start)) => (as_of - start).num_days().max(0) as u64 + g.rng.random_range(5..30),
        None => last_visit_ago + g.rng.random_range(0..400),
    };
    let mut visits = vec![];
    let mut ago = last_visit_ago;
    while ago <= first_ago && visits.len() < 3 {
        visits.push(ago);
        ago += g.rng.random_range(75..110);
    }
    if visits.last().is_some_and(|&v| v < first_ago) && jak.is_some() {
        visits.push(first_ago);
    }
    // The patient's own levels; a few are cytopenic, and some fall on treatment.
    let alc = if g.chance(0.04) {
        g.normal(0.45, 0.08)
    } else {
        g.normal(1.9, 0.5)
    };
    let anc = if g.chance(0.03) {
        g.normal(0.9, 0.15)
    } else {
        g.normal(4.2, 1.1)
    };
    let hgb = if g.chance(0.02) {
        g.normal(7.6, 0.4)
    } else if male {
        g.normal(14.6, 1.0)
    } else {
        g.normal(13.2, 1.0)
    };
    let weight = if male {
        g.normal(84.0, 12.0)
    } else {
        g.normal(70.0, 12.0)
    };
    let creat = if male {
        g.normal(0.95, 0.18)
    } else {
        g.normal(0.75, 0.15)
    };
    let baseline = visits.last().copied();
    for (k, &ago) in visits.iter().enumerate() {
        let date = days_before(g.as_of, ago);
        let is_baseline = Some(ago) == baseline;
        lab_visit(
            &mut g,
            date,
            k,
            is_baseline,
            Levels {
                alc,
                anc,
                hgb,
                weight,
                creat,
            },
        );
    }
    if g.chance(0.7) {
        let d = days_before(g.as_of, g.rng.random_range(0..700));
        let (code, display) = *g.pick(&[
            ("266919005", "Never smoked tobacco (finding)"),
            ("266919005", "Never smoked tobacco (finding)"),
            ("8517006", "Ex-smoker (finding)"),
            ("77176002", "Smoker (finding)"),
        ]);
        coded_obs(
            &mut g,
            "72166-2",
            "Tobacco smoking status",
            code,
            display,
            d,
        );
    }

    // Vaccines.
    let doses = *g.pick(&[0u64, 0, 1, 2, 2]);
    for k in 0..doses {
        let d = days_before(g.as_of, g.rng.random_range(400..900) - k * 70);
        immunization(&mut g, "187", "zoster vaccine recombinant", d);
    }
    for year in 0..g.rng.random_range(0..3u64) {
        let d = days_before(g.as_of, year * 365 + g.rng.random_range(0..120));
        immunization(&mut g, "141", "Influenza, seasonal, injectable", d);
    }
    g.count
}

#[derive(Clone, Copy)]
enum Dx {
    As,
    NrAxSpa,
}

/// (probability, system, code, display) of comorbidities that rules read.
const COMORBIDITIES: &[(f64, &str, &str, &str)] = &[
    (
        0.18,
        SNOMED,
        "59621000",
        "Essential hypertension (disorder)",
    ),
    (0.15, SNOMED, "55822004", "Hyperlipidemia"),
    (
        0.06,
        SNOMED,
        "44054006",
        "Diabetes mellitus type 2 (disorder)",
    ),
    (
        0.012,
        SNOMED,
        "128053003",
        "Deep venous thrombosis (disorder)",
    ),
    (0.01, SNOMED, "22298006", "Myocardial infarction (disorder)"),
    (
        0.015,
        SNOMED,
        "363346000",
        "Malignant neoplastic disease (disorder)",
    ),
    (0.025, SNOMED, "4740000", "Herpes zoster (disorder)"),
    (0.008, ICD10, "Z22.7", "Latent tuberculosis"),
    (
        0.004,
        SNOMED,
        "61977001",
        "Chronic type B viral hepatitis (disorder)",
    ),
    (0.03, SNOMED, "77176002", "Smoker (finding)"),
    (
        0.02,
        SNOMED,
        "24526004",
        "Inflammatory bowel disease (disorder)",
    ),
    (0.04, SNOMED, "128473001", "Uveitis (disorder)"),
];

fn condition(
    g: &mut Gen<'_>,
    system: &str,
    code: &str,
    display: &str,
    onset: NaiveDate,
    status: &str,
) {
    let id = g.id("c");
    let subject = g.subject.clone();
    let line = format!(
        r#"{{"resourceType":"Condition","id":"{id}","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"{status}"}}]}},"verificationStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}}]}},"code":{{"coding":[{{"system":"{system}","code":"{code}","display":"{display}"}}],"text":"{display}"}},"subject":{{"reference":"{subject}"}},"onsetDateTime":"{onset}","recordedDate":"{onset}"}}"#
    );
    g.emit(CONDITION, &line);
}

fn statement(
    g: &mut Gen<'_>,
    code: &str,
    display: &str,
    status: &str,
    start: NaiveDate,
    end: Option<NaiveDate>,
) {
    let id = g.id("ms");
    let subject = g.subject.clone();
    let period = match end {
        Some(e) => format!(r#"{{"start":"{start}","end":"{e}"}}"#),
        None => format!(r#"{{"start":"{start}"}}"#),
    };
    let line = format!(
        r#"{{"resourceType":"MedicationStatement","id":"{id}","status":"{status}","medicationCodeableConcept":{{"coding":[{{"system":"{RXNORM}","code":"{code}","display":"{display}"}}],"text":"{display}"}},"subject":{{"reference":"{subject}"}},"effectivePeriod":{period},"dateAsserted":"{start}"}}"#
    );
    g.emit(STATEMENT, &line);
}

fn jak_order(g: &mut Gen<'_>, status: &str, start: NaiveDate) {
    let id = g.id("mr");
    let subject = g.subject.clone();
    let intent = if status == "draft" {
        "proposal"
    } else {
        "order"
    };
    let form = g.rng.random_range(0..100);
    let (medication, dosage) = match form {
        0..44 => (
            format!(
                r#""medicationCodeableConcept":{{"coding":[{{"system":"{RXNORM}","code":"1357541","display":"tofacitinib 5 MG Oral Tablet"}}],"text":"Xeljanz 5 mg tablet"}}"#
            ),
            "5 mg by mouth twice daily",
        ),
        44..54 => (
            format!(
                r#""medicationCodeableConcept":{{"coding":[{{"system":"{RXNORM}","code":"1741046","display":"24 HR tofacitinib 11 MG Extended Release Oral Tablet"}}]}}"#
            ),
            "11 mg by mouth once daily",
        ),
        54..94 => (
            format!(
                r#""medicationCodeableConcept":{{"coding":[{{"system":"{RXNORM}","code":"2196894","display":"24 HR upadacitinib 15 MG Extended Release Oral Tablet"}}]}}"#
            ),
            "15 mg by mouth once daily",
        ),
        // Named only in text (a free-text order): matched by name, with lower confidence.
        94..97 => (
            r#""medicationCodeableConcept":{"text":"Rinvoq 15mg ER tablet"}"#.to_string(),
            "15 mg daily",
        ),
        // Through the formulary.
        _ => (
            r#""medicationReference":{"reference":"Medication/med-upa-15"}"#.to_string(),
            "15 mg daily",
        ),
    };
    let line = format!(
        r#"{{"resourceType":"MedicationRequest","id":"{id}","status":"{status}","intent":"{intent}",{medication},"subject":{{"reference":"{subject}"}},"authoredOn":"{start}","dosageInstruction":[{{"text":"{dosage}"}}]}}"#
    );
    g.emit(REQUEST, &line);
}

fn immunization(g: &mut Gen<'_>, code: &str, display: &str, date: NaiveDate) {
    let id = g.id("im");
    let subject = g.subject.clone();
    let line = format!(
        r#"{{"resourceType":"Immunization","id":"{id}","status":"completed","vaccineCode":{{"coding":[{{"system":"{CVX}","code":"{code}","display":"{display}"}}]}},"patient":{{"reference":"{subject}"}},"occurrenceDateTime":"{date}","primarySource":true}}"#
    );
    g.emit(IMMUNIZATION, &line);
}

#[derive(Clone, Copy)]
struct Levels {
    alc: f64,
    anc: f64,
    hgb: f64,
    weight: f64,
    creat: f64,
}

/// A quantity observation; `unit` is (display unit, UCUM code or none).
fn quantity_obs(
    g: &mut Gen<'_>,
    code: &str,
    display: &str,
    value: Option<f64>,
    unit: (&str, Option<&str>),
    date: NaiveDate,
) {
    let id = g.id("o");
    let subject = g.subject.clone();
    // Now and then a result is withdrawn, or still preliminary.
    let status = match g.rng.random_range(0..1000) {
        0..4 => "entered-in-error",
        4..10 => "preliminary",
        _ => "final",
    };
    let value = match value {
        Some(v) => {
            let quantity = match unit.1 {
                Some(c) => format!(r#"{{"value":{v},"unit":"{}","system":"{UCUM}","code":"{c}"}}"#, unit.0),
                None => format!(r#"{{"value":{v},"unit":"{}"}}"#, unit.0),
            };
            format!(r#""valueQuantity":{quantity}"#)
        }
        None => r#""dataAbsentReason":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/data-absent-reason","code":"error"}]}"#.to_string(),
    };
    let line = format!(
        r#"{{"resourceType":"Observation","id":"{id}","status":"{status}","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"{LOINC}","code":"{code}","display":"{display}"}}]}},"subject":{{"reference":"{subject}"}},"effectiveDateTime":"{date}T08:30:00Z",{value}}}"#
    );
    g.emit(OBSERVATION, &line);
    // The same resource exported twice, as happens when exports are stitched together.
    if g.chance(0.004) {
        g.emit(OBSERVATION, &line);
    }
}

fn coded_obs(
    g: &mut Gen<'_>,
    code: &str,
    display: &str,
    answer: &str,
    answer_display: &str,
    date: NaiveDate,
) {
    let id = g.id("o");
    let subject = g.subject.clone();
    let line = format!(
        r#"{{"resourceType":"Observation","id":"{id}","status":"final","code":{{"coding":[{{"system":"{LOINC}","code":"{code}","display":"{display}"}}]}},"subject":{{"reference":"{subject}"}},"effectiveDateTime":"{date}","valueCodeableConcept":{{"coding":[{{"system":"{SNOMED}","code":"{answer}","display":"{answer_display}"}}]}}}}"#
    );
    g.emit(OBSERVATION, &line);
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v.max(0.0) * f).round() / f
}

/// A count in 10*3/uL (thousands per microlitre), written in one of the units labs use.
fn count_obs(g: &mut Gen<'_>, codes: &[(&str, &str)], thousands: f64, date: NaiveDate) {
    let (code, display) = *g.pick(codes);
    let missing = g.chance(0.005);
    let (value, unit) = match g.rng.random_range(0..100) {
        0..55 => (round(thousands, 2), ("10*3/uL", Some("10*3/uL"))),
        55..70 => (round(thousands * 1000.0, 0), ("/uL", Some("/uL"))),
        70..85 => (round(thousands, 2), ("10*9/L", Some("10*9/L"))),
        // The display unit only, in a spelling the unit table lists as an alias.
        85..97 => (round(thousands, 1), ("K/uL", None)),
        // A spelling nobody listed: the engine must report it, not guess.
        _ => (round(thousands, 2), ("x10E3/mcL", None)),
    };
    quantity_obs(g, code, display, (!missing).then_some(value), unit, date);
}

const ALC: &[(&str, &str)] = &[
    (
        "731-0",
        "Lymphocytes [#/volume] in Blood by Automated count",
    ),
    (
        "731-0",
        "Lymphocytes [#/volume] in Blood by Automated count",
    ),
    (
        "731-0",
        "Lymphocytes [#/volume] in Blood by Automated count",
    ),
    ("26474-7", "Lymphocytes [#/volume] in Blood"),
    ("732-8", "Lymphocytes [#/volume] in Blood by Manual count"),
];
const ANC: &[(&str, &str)] = &[
    (
        "751-8",
        "Neutrophils [#/volume] in Blood by Automated count",
    ),
    (
        "751-8",
        "Neutrophils [#/volume] in Blood by Automated count",
    ),
    (
        "751-8",
        "Neutrophils [#/volume] in Blood by Automated count",
    ),
    ("26499-4", "Neutrophils [#/volume] in Blood"),
    ("753-4", "Neutrophils [#/volume] in Blood by Manual count"),
];
const WBC: &[(&str, &str)] = &[(
    "6690-2",
    "Leukocytes [#/volume] in Blood by Automated count",
)];

fn lab_visit(g: &mut Gen<'_>, date: NaiveDate, k: usize, baseline: bool, lv: Levels) {
    // Values drift around the patient's level from visit to visit.
    let alc = g.normal(lv.alc, 0.15);
    let anc = g.normal(lv.anc, 0.4);
    let wbc = alc + anc + g.normal(0.8, 0.2);
    count_obs(g, WBC, wbc, date);
    count_obs(g, ALC, alc, date);
    count_obs(g, ANC, anc, date);
    let hgb = g.normal(lv.hgb, 0.4);
    match g.rng.random_range(0..100) {
        0..90 => quantity_obs(
            g,
            "718-7",
            "Hemoglobin [Mass/volume] in Blood",
            Some(round(hgb, 1)),
            ("g/dL", Some("g/dL")),
            date,
        ),
        90..95 => quantity_obs(
            g,
            "718-7",
            "Hemoglobin [Mass/volume] in Blood",
            Some(round(hgb * 10.0, 0)),
            ("g/L", Some("g/L")),
            date,
        ),
        _ => quantity_obs(
            g,
            "59260-0",
            "Hemoglobin [Moles/volume] in Blood",
            Some(round(hgb / 1.61145, 1)),
            ("mmol/L", Some("mmol/L")),
            date,
        ),
    }
    let plt = g.normal(260.0, 50.0);
    quantity_obs(
        g,
        "777-3",
        "Platelets [#/volume] in Blood by Automated count",
        Some(round(plt, 0)),
        ("10*3/uL", Some("10*3/uL")),
        date,
    );
    let alt = g.normal(24.0, 8.0);
    let ast = g.normal(22.0, 6.0);
    quantity_obs(
        g,
        "1742-6",
        "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        Some(round(alt, 0)),
        ("U/L", Some("U/L")),
        date,
    );
    quantity_obs(
        g,
        "1920-8",
        "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        Some(round(ast, 0)),
        ("U/L", Some("U/L")),
        date,
    );
    let creat = g.normal(lv.creat, 0.05);
    if g.chance(0.8) {
        quantity_obs(
            g,
            "2160-0",
            "Creatinine [Mass/volume] in Serum or Plasma",
            Some(round(creat, 2)),
            ("mg/dL", Some("mg/dL")),
            date,
        );
    } else {
        quantity_obs(
            g,
            "14682-9",
            "Creatinine [Moles/volume] in Serum or Plasma",
            Some(round(creat * 88.42, 0)),
            ("umol/L", Some("umol/L")),
            date,
        );
    }
    let crp = g.normal(6.0, 5.0);
    quantity_obs(
        g,
        "1988-5",
        "C reactive protein [Mass/volume] in Serum or Plasma",
        Some(round(crp, 1)),
        ("mg/L", Some("mg/L")),
        date,
    );
    let w = g.normal(lv.weight, 1.5);
    quantity_obs(
        g,
        "29463-7",
        "Body weight",
        Some(round(w, 1)),
        ("kg", Some("kg")),
        date,
    );
    // Vital signs no rule reads (screen drops them early).
    let hr = g.normal(72.0, 9.0);
    quantity_obs(
        g,
        "8867-4",
        "Heart rate",
        Some(round(hr, 0)),
        ("/min", Some("/min")),
        date,
    );
    // Lipids at baseline and about yearly.
    if baseline || k % 4 == 3 {
        let ldl = g.normal(118.0, 30.0);
        let hdl = g.normal(52.0, 12.0);
        if g.chance(0.85) {
            quantity_obs(
                g,
                "13457-7",
                "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
                Some(round(ldl, 0)),
                ("mg/dL", Some("mg/dL")),
                date,
            );
        } else {
            quantity_obs(
                g,
                "18262-6",
                "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
                Some(round(ldl / 38.67, 2)),
                ("mmol/L", Some("mmol/L")),
                date,
            );
        }
        quantity_obs(
            g,
            "2085-9",
            "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
            Some(round(hdl, 0)),
            ("mg/dL", Some("mg/dL")),
            date,
        );
        quantity_obs(
            g,
            "2093-3",
            "Cholesterol [Mass/volume] in Serum or Plasma",
            Some(round(ldl + hdl + 30.0, 0)),
            ("mg/dL", Some("mg/dL")),
            date,
        );
    }
    // Pre-treatment screening, mostly negative.
    if baseline && g.chance(0.85) {
        for (code, display) in [
            (
                "71773-6",
                "Mycobacterium tuberculosis stimulated gamma interferon [Presence] in Blood",
            ),
            ("5196-1", "Hepatitis B virus surface Ag [Presence] in Serum"),
            ("16933-4", "Hepatitis B virus core Ab [Presence] in Serum"),
            ("16128-1", "Hepatitis C virus Ab [Presence] in Serum"),
        ] {
            let (answer, answer_display) = if g.chance(0.02) {
                ("10828004", "Positive (qualifier value)")
            } else {
                ("260385009", "Negative (qualifier value)")
            };
            coded_obs(g, code, display, answer, answer_display, date);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_is_the_same_for_the_same_seed_and_differs_for_another() {
        let as_of = NaiveDate::from_ymd_opt(2026, 1, 15).unwrap_or_default();
        let mut a: Buffers = Default::default();
        let mut b: Buffers = Default::default();
        let mut c: Buffers = Default::default();
        patient(7, 42, as_of, &mut a);
        patient(7, 42, as_of, &mut b);
        patient(8, 42, as_of, &mut c);
        assert_eq!(a, b);
        assert_ne!(a[PATIENT], c[PATIENT]);
        for buf in &a {
            for line in buf.split(|x| *x == b'\n').filter(|l| !l.is_empty()) {
                assert!(serde_json::from_slice::<serde_json::Value>(line).is_ok());
            }
        }
    }
}
