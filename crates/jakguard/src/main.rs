//! `jakguard`: the command line over the JAKGuard engine.
//!
//! This binary does the IO the engine may not: it reads files and stdin, the clock (for the
//! default `--as-of`), the knowledge directory, and writes reports. Exit codes: 0 when the
//! command did its job (an assessment was produced, whatever the decision; the knowledge is
//! valid); 2 when the input cannot be used, with a one-line error naming the problem; 3 when
//! `screen` finished but some lines of the export were bad (counted and reported).

use anyhow::Context;
use clap::{Parser, Subcommand};
use engine::{Knowledge, Options};
use jakguard::{
    Format, ListFormat, UnusableInput, as_of_date, knowledge_cmd, load_knowledge, render, screen,
    serve, synth, unusable,
};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

// The engine allocates many small strings per resource; mimalloc serves them faster than
// the system allocator (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "jakguard",
    version,
    about = "Medication-safety checks for JAK inhibitors (tofacitinib, upadacitinib) in axial spondyloarthritis.\nSupports clinical judgement; does not replace it."
)]
struct Cli {
    /// Load the knowledge base from this directory instead of the embedded one.
    #[arg(long, global = true, value_name = "DIR")]
    knowledge: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Assess a patient from a FHIR R4 Bundle (a file, or `-` for stdin).
    Assess {
        /// The date that counts as "today" (YYYY-MM-DD); default: today.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Assess only this drug (generic or brand name); repeatable. Default: every drug.
        #[arg(long = "drug", value_name = "NAME")]
        drugs: Vec<String>,
        /// The FHIR Bundle file, or `-` for standard input.
        file: String,
    },
    /// Validate or list the knowledge base.
    Knowledge {
        #[command(subcommand)]
        command: KnowledgeCommand,
    },
    /// Run the CDS Hooks 2.0 service.
    Serve(serve::ServeArgs),
    /// Screen a FHIR Bulk Data export: every patient on (or about to start) a JAK inhibitor.
    ///
    /// Writes screen-results.ndjson (one line per patient: the decisions and findings of
    /// `assess --format json`, the checklist and monitoring plan as statuses and dates),
    /// screen-summary.csv, screen-overdue.csv, screen-report.html and screen-bad-lines.txt.
    /// Exit code 0: clean; 3: finished, but some lines or files could not be used;
    /// 2: the export cannot be used at all.
    Screen {
        /// The directory of NDJSON files (`Patient.ndjson`, `Observation.ndjson.gz`, …).
        export_dir: PathBuf,
        /// Where to write the results (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// The date that counts as "today" (YYYY-MM-DD); default: today.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Also screen every patient with ankylosing spondylitis or nr-axSpA.
        #[arg(long)]
        all: bool,
        /// Write each patient's whole report (as `assess --format json`, ~36 KB a line)
        /// instead of the decisions and findings with the screening checklist and the
        /// monitoring plan as statuses and dates (~22 KB, 60 % of the bytes).
        #[arg(long)]
        full_reports: bool,
        /// Only read and parse every line (the benchmark baseline); writes nothing.
        #[arg(long)]
        parse_only: bool,
    },
    /// Write a synthetic Bulk FHIR export of axSpA patients (deterministic for a seed).
    Synth(synth::SynthArgs),
    /// Feedback the EHR sent on cards.
    Feedback {
        #[command(subcommand)]
        command: FeedbackCommand,
    },
}

#[derive(Subcommand)]
enum FeedbackCommand {
    /// Acceptance and override rates per rule (the alert-fatigue figure).
    Report {
        /// The SQLite database the server writes.
        #[arg(long, default_value = "jakguard.db")]
        db: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
}

#[derive(Subcommand)]
enum KnowledgeCommand {
    /// Validate a knowledge directory (default: the embedded knowledge).
    Check {
        /// The directory to check.
        dir: Option<PathBuf>,
    },
    /// List the rules with their decisions and sources.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A reader that stops early (`| head`) is not an error of ours.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            let code = if e.downcast_ref::<UnusableInput>().is_some() {
                2
            } else {
                1
            };
            eprintln!("jakguard: error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Assess {
            as_of,
            format,
            drugs,
            file,
        } => {
            let kb = load_knowledge(cli.knowledge.as_deref())?;
            assess(&kb, as_of.as_deref(), format, &drugs, &file)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Knowledge {
            command: KnowledgeCommand::Check { dir },
        } => {
            let dir = dir.or(cli.knowledge);
            let kb = load_knowledge(dir.as_deref())?;
            let source = dir
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "embedded knowledge".into());
            println!("{}", knowledge_cmd::summary(&kb, &source));
            Ok(ExitCode::SUCCESS)
        }
        Command::Knowledge {
            command: KnowledgeCommand::List { format },
        } => {
            let kb = load_knowledge(cli.knowledge.as_deref())?;
            knowledge_cmd::list(&kb, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let kb = load_knowledge(cli.knowledge.as_deref())?;
            serve::serve(kb, args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Screen {
            export_dir,
            out,
            as_of,
            all,
            full_reports,
            parse_only,
        } => {
            let outcome = if parse_only {
                let o = screen::parse_only(&export_dir)?;
                println!(
                    "parse-only: {} lines parsed, {} not JSON, in {} files ({:.1} MB); {:.2} s ({:.1} MB/s)",
                    o.resources,
                    o.bad_lines,
                    o.files,
                    o.bytes as f64 / 1e6,
                    o.seconds,
                    o.bytes as f64 / 1e6 / o.seconds.max(1e-9)
                );
                o
            } else {
                let kb = load_knowledge(cli.knowledge.as_deref())?;
                let settings = screen::Settings {
                    export_dir,
                    out_dir: out,
                    as_of: as_of_date(as_of.as_deref())?,
                    all,
                    full_reports,
                };
                let o = screen::run(&kb, &settings)?;
                eprintln!("jakguard: {}", o.passes_line());
                println!("{}", o.final_line());
                o
            };
            Ok(if outcome.problems() {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Synth(args) => {
            let written = synth::run(&args)?;
            println!("{written}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Feedback {
            command: FeedbackCommand::Report { db, format },
        } => {
            serve::feedback_report(&db, format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn assess(
    kb: &Knowledge,
    as_of: Option<&str>,
    format: Format,
    drug_names: &[String],
    file: &str,
) -> anyhow::Result<()> {
    let as_of = as_of_date(as_of)?;
    let mut drugs = vec![];
    for name in drug_names {
        match kb.drug_by_name(name) {
            Some(d) => drugs.push(d),
            None => {
                let known: Vec<&str> = kb.drugs.iter().map(|d| d.id.as_str()).collect();
                return Err(unusable(format!(
                    "unknown drug `{name}` (known: {})",
                    known.join(", ")
                )));
            }
        }
    }
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| unusable(format!("cannot read standard input: {e}")))?;
        s
    } else {
        let bytes =
            std::fs::read(file).map_err(|e| unusable(format!("cannot read `{file}`: {e}")))?;
        String::from_utf8(bytes).map_err(|_| unusable(format!("`{file}` is not UTF-8 text")))?
    };
    let record =
        engine::fhir::parse_bundle(&text).map_err(|e| unusable(format!("`{file}`: {e}")))?;
    let report = engine::assess(kb, &record, &Options { as_of, drugs });
    let mut out = anstream::stdout();
    match format {
        Format::Json => {
            let json =
                serde_json::to_string_pretty(&report).context("cannot serialise the report")?;
            use std::io::Write;
            writeln!(out, "{json}").context("cannot write the report")?;
        }
        Format::Text => render::text(&report, &mut out).context("cannot write the report")?,
        Format::Markdown => {
            render::markdown(&report, &mut out).context("cannot write the report")?
        }
    }
    Ok(())
}
