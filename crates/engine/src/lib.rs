//! JAKGuard engine: medication-safety assessment for JAK inhibitors in axial
//! spondyloarthritis, as a pure function of (knowledge, patient record, date).
//!
//! The engine reads no files, clock, environment or network. Callers pass the knowledge
//! text (`kb::Knowledge::load`), a record (`fhir::parse_bundle` or `fhir::RecordBuilder`)
//! and an explicit `as_of` date, and get back a `report::Report` with decisions, doses,
//! findings with evidence and citations, the screening checklist, the monitoring schedule
//! and disease-activity scores. See ARCHITECTURE.md for the map.

pub mod codes;
pub mod date;
pub mod evaluate;
pub mod facts;
pub mod fhir;
pub mod kb;
pub mod monitoring;
pub mod predicate;
pub mod record;
pub mod report;
pub mod scores;
pub mod screening;
pub mod units;

pub use evaluate::{Options, assess};
pub use kb::{Knowledge, Source};

/// `str::trim`, with a shortcut for the usual case of a code, unit or date that neither
/// starts nor ends with white space. `str::trim` decodes characters at both ends to test them
/// for Unicode white space; every lab value's unit, code and date passes through here.
pub(crate) fn trim(s: &str) -> &str {
    // ASCII bytes other than the white space characters (tab to carriage return, space):
    // no Unicode white space starts or ends with such a byte, so nothing would be trimmed.
    let plain = |b: u8| b.is_ascii() && !matches!(b, b'\t'..=b'\r' | b' ');
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(&a), Some(&z)) if plain(a) && plain(z) => s,
        _ => s.trim(),
    }
}

#[cfg(test)]
mod trim_tests {
    /// The shortcut trims exactly what `str::trim` trims: ASCII and Unicode white space at
    /// either end, control characters that are not white space, multi-byte ends.
    #[test]
    fn trim_is_str_trim() {
        let cases = [
            "",
            " ",
            "mg/dL",
            " mg/dL",
            "mg/dL ",
            "\tM45.9\n",
            "\u{a0}10*3/uL",
            "10*3/uL\u{a0}",
            "\u{2003}x\u{3000}",
            "\u{85}x",
            "\u{1c}x\u{1f}",
            "µL",
            "Lµ",
            "µ",
            "\u{b}x\u{c}",
            "2026-02-19T08:30:00Z",
            "a b",
            "\u{200b}x",
        ];
        for s in cases {
            assert_eq!(super::trim(s), s.trim(), "{s:?}");
        }
        for b in 0u8..=0x7f {
            let s = String::from(char::from(b));
            assert_eq!(super::trim(&s), s.trim(), "byte {b:#x}");
        }
    }
}

/// The knowledge shipped with this build (`knowledge/`), embedded at compile time.
pub fn embedded_knowledge() -> Vec<Source> {
    embedded::FILES
        .iter()
        .map(|(path, text)| Source {
            path: format!("knowledge/{path}"),
            text: (*text).to_string(),
        })
        .collect()
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_knowledge.rs"));
}
