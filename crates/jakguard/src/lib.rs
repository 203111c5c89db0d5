//! The JAKGuard application: the command line's building blocks, the CDS Hooks server, the
//! web app, the store. `main.rs` is a thin dispatcher over this library; tests use it directly.

pub mod config;
pub mod knowledge_cmd;
pub mod render;
pub mod screen;
pub mod serve;
pub mod server;
pub mod store;
pub mod synth;
pub mod web;

use clap::ValueEnum;
use engine::{Knowledge, Source};
use std::path::Path;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

/// An error that is the user's input, not a failure of ours: exit code 2.
#[derive(Debug)]
pub struct UnusableInput(pub String);

impl std::fmt::Display for UnusableInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnusableInput {}

pub fn unusable(msg: impl Into<String>) -> anyhow::Error {
    UnusableInput(msg.into()).into()
}

/// `--as-of`: the given date, or today by the system clock.
pub fn as_of_date(text: Option<&str>) -> anyhow::Result<chrono::NaiveDate> {
    match text {
        Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| unusable(format!("--as-of `{s}` is not a date (YYYY-MM-DD)"))),
        None => Ok(chrono::Local::now().date_naive()),
    }
}

/// Reads every `.toml` file under `dir` (sorted, for stable messages).
fn read_knowledge_dir(dir: &Path) -> anyhow::Result<Vec<Source>> {
    fn walk(dir: &Path, out: &mut Vec<Source>) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| {
                unusable(format!(
                    "cannot read knowledge directory `{}`: {e}",
                    dir.display()
                ))
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| unusable(format!("cannot read `{}`: {e}", p.display())))?;
                out.push(Source {
                    path: p.display().to_string(),
                    text,
                });
            }
        }
        Ok(())
    }
    let mut out = vec![];
    walk(dir, &mut out)?;
    Ok(out)
}

pub fn load_knowledge(dir: Option<&Path>) -> anyhow::Result<Knowledge> {
    let sources = match dir {
        Some(d) => read_knowledge_dir(d)?,
        None => engine::embedded_knowledge(),
    };
    Knowledge::load(&sources).map_err(|e| unusable(e.to_string()))
}
