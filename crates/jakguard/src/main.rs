//! `jakguard`: the command line over the JAKGuard engine.
//!
//! This binary does the IO the engine may not: it reads files and stdin, the clock (for the
//! default `--as-of`), the knowledge directory, and writes reports. Exit codes: 0 when the
//! command did its job (an assessment was produced, whatever the decision; the knowledge is
//! valid); 2 when the input cannot be used, with a one-line error naming the problem.

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use engine::{Knowledge, Options};
use jakguard::{
    Format, ListFormat, UnusableInput, knowledge_cmd, load_knowledge, render, serve, unusable,
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
    let as_of = match as_of {
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| unusable(format!("--as-of `{s}` is not a date (YYYY-MM-DD)")))?,
        None => chrono::Local::now().date_naive(),
    };
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
