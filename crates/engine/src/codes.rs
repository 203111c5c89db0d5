//! Codes and value sets: which knowledge value sets a FHIR coding belongs to.
//!
//! A value set is a reviewed list of codes (LOINC, SNOMED CT, ICD-10-CM, RxNorm, CVX…),
//! optionally with prefixes (ICD-10-CM families such as `M45.A`), exclusions, and — for
//! medications — lower-confidence name matches on free text. Matching is precomputed into a
//! hash index so that classifying a resource costs one lookup per coding.

// Keys are short codes from the knowledge and the record; the std SipHash (built to resist
// flooding by untrusted keys) costs more than the lookup itself here, and the table is
// built from the reviewed knowledge, never from input.
use rustc_hash::FxHashMap as HashMap;

/// Index of a value set in the knowledge base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueSetId(pub u16);

/// A code system known to the knowledge base, by FHIR URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SystemId(pub u8);

#[derive(Debug, Clone)]
pub struct ValueSet {
    pub id: String,
    pub title: String,
    /// The exact codes (system URI, code), for building FHIR searches from the knowledge.
    pub codes: Vec<(String, String)>,
    /// Lower-case names matched as whole words in free text (medications only).
    pub text: Vec<String>,
    pub code_count: usize,
}

/// How a resource was matched to a value set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchKind {
    /// By a coded value in a known system.
    Code,
    /// Only by a name in free text: lower confidence.
    Text,
}

/// Codes and prefixes of one code system. Prefixes are looked up by the code's own leading
/// substrings (one hash lookup per distinct prefix length), never by scanning every prefix.
#[derive(Debug, Clone, Default)]
struct SystemIndex {
    exact: HashMap<String, Vec<ValueSetId>>,
    prefixes: HashMap<String, Vec<ValueSetId>>,
    prefix_lens: Vec<usize>,
    excluded: HashMap<String, Vec<ValueSetId>>,
    excluded_prefixes: HashMap<String, Vec<ValueSetId>>,
    excluded_prefix_lens: Vec<usize>,
}

fn add_to(map: &mut HashMap<String, Vec<ValueSetId>>, key: String, vs: ValueSetId) {
    let list = map.entry(key).or_default();
    if !list.contains(&vs) {
        list.push(vs);
    }
}

fn add_len(lens: &mut Vec<usize>, len: usize) {
    if !lens.contains(&len) {
        lens.push(len);
        lens.sort_unstable();
    }
}

impl SystemIndex {
    fn excludes(&self, code: &str, vs: ValueSetId) -> bool {
        if self.excluded.get(code).is_some_and(|l| l.contains(&vs)) {
            return true;
        }
        self.excluded_prefix_lens.iter().any(|&n| {
            code.get(..n)
                .and_then(|p| self.excluded_prefixes.get(p))
                .is_some_and(|l| l.contains(&vs))
        })
    }
}

/// The compiled code index over all value sets.
#[derive(Debug, Clone, Default)]
pub struct CodeIndex {
    systems: HashMap<String, SystemId>,
    system_names: Vec<String>,
    per_system: Vec<SystemIndex>,
    icd10cm: Option<SystemId>,
}

impl CodeIndex {
    pub fn add_system(&mut self, short: &str, uri: &str) -> SystemId {
        let id = SystemId(self.system_names.len() as u8);
        self.system_names.push(short.to_string());
        self.per_system.push(SystemIndex::default());
        self.systems.insert(uri.to_string(), id);
        if short == "icd10cm" {
            self.icd10cm = Some(id);
        }
        id
    }

    pub fn system_by_uri(&self, uri: &str) -> Option<SystemId> {
        self.systems.get(uri.trim_end_matches('/')).copied()
    }

    pub fn system_short_name(&self, id: SystemId) -> &str {
        self.system_names
            .get(id.0 as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    /// ICD-10-CM codes arrive both as `M45.A8` and `M45A8`; compare without dots, upper-case.
    fn normalise<'c>(&self, system: SystemId, code: &'c str) -> std::borrow::Cow<'c, str> {
        let code = crate::trim(code);
        if Some(system) == self.icd10cm {
            code.chars()
                .filter(|c| *c != '.')
                .flat_map(char::to_uppercase)
                .collect::<String>()
                .into()
        } else {
            code.into()
        }
    }

    fn index_mut(&mut self, system: SystemId) -> &mut SystemIndex {
        &mut self.per_system[system.0 as usize]
    }

    pub fn add_code(&mut self, vs: ValueSetId, system: SystemId, code: &str) {
        let key = self.normalise(system, code).into_owned();
        add_to(&mut self.index_mut(system).exact, key, vs);
    }

    pub fn add_prefix(&mut self, vs: ValueSetId, system: SystemId, prefix: &str) {
        let key = self.normalise(system, prefix).into_owned();
        let ix = self.index_mut(system);
        add_len(&mut ix.prefix_lens, key.len());
        add_to(&mut ix.prefixes, key, vs);
    }

    pub fn add_excluded_code(&mut self, vs: ValueSetId, system: SystemId, code: &str) {
        let key = self.normalise(system, code).into_owned();
        add_to(&mut self.index_mut(system).excluded, key, vs);
    }

    pub fn add_excluded_prefix(&mut self, vs: ValueSetId, system: SystemId, prefix: &str) {
        let key = self.normalise(system, prefix).into_owned();
        let ix = self.index_mut(system);
        add_len(&mut ix.excluded_prefix_lens, key.len());
        add_to(&mut ix.excluded_prefixes, key, vs);
    }

    /// Adds to `out` every value set that contains `code` of the system with URI `system_uri`.
    pub fn classify(&self, system_uri: &str, code: &str, out: &mut Vec<ValueSetId>) {
        let Some(system) = self.system_by_uri(system_uri) else {
            return;
        };
        let ix = &self.per_system[system.0 as usize];
        let code = self.normalise(system, code);
        let code = code.as_ref();
        let start = out.len();
        if let Some(list) = ix.exact.get(code) {
            out.extend(list.iter().copied());
        }
        for &n in &ix.prefix_lens {
            match code.get(..n) {
                Some(p) => {
                    if let Some(list) = ix.prefixes.get(p) {
                        out.extend(list.iter().copied());
                    }
                }
                None => break,
            }
        }
        if out.len() == start || (ix.excluded.is_empty() && ix.excluded_prefixes.is_empty()) {
            return;
        }
        let mut i = start;
        while i < out.len() {
            if ix.excludes(code, out[i]) {
                out.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
}

/// True when `name` occurs in `text` as a whole word (case-insensitive; `text` lower-cased).
pub fn contains_word(text_lower: &str, name: &str) -> bool {
    let bytes = text_lower.as_bytes();
    let mut from = 0;
    while let Some(pos) = text_lower[from..].find(name) {
        let start = from + pos;
        let end = start + name.len();
        let before_ok = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
        let after_ok = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if before_ok && after_ok {
            return true;
        }
        from = start + 1;
        while from < text_lower.len() && !text_lower.is_char_boundary(from) {
            from += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> CodeIndex {
        let mut ix = CodeIndex::default();
        let icd = ix.add_system("icd10cm", "http://hl7.org/fhir/sid/icd-10-cm");
        ix.add_prefix(ValueSetId(0), icd, "M45");
        ix.add_excluded_prefix(ValueSetId(0), icd, "M45.A");
        ix.add_prefix(ValueSetId(1), icd, "M45.A");
        ix
    }

    #[test]
    fn icd_prefixes_ignore_dots_and_honour_exclusions() {
        let ix = index();
        let mut out = vec![];
        ix.classify("http://hl7.org/fhir/sid/icd-10-cm", "M45.9", &mut out);
        assert_eq!(out, vec![ValueSetId(0)]);
        out.clear();
        ix.classify("http://hl7.org/fhir/sid/icd-10-cm", "M45A8", &mut out);
        assert_eq!(out, vec![ValueSetId(1)]);
        out.clear();
        ix.classify("http://snomed.info/sct", "M45.9", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn word_matching_needs_word_boundaries() {
        assert!(contains_word("xeljanz xr 11 mg", "xeljanz"));
        assert!(contains_word("take (rinvoq) daily", "rinvoq"));
        assert!(!contains_word("tofacitinibum", "tofacitinib"));
        assert!(!contains_word("", "x"));
    }
}
