//! Exact unit conversion for lab values.
//!
//! Values are converted to one canonical UCUM unit per quantity with decimal (not binary
//! floating-point) arithmetic, so that 1.0 10*9/L is exactly 1000 /uL and a threshold such
//! as "ANC < 1000" never fires through rounding error. The table of units and factors is
//! knowledge data (`knowledge/units.toml`); spellings that labs send but that are not UCUM
//! (`K/uL`, which a UCUM parser reads as kelvin per microlitre) go through an explicit alias
//! table. A unit that is in neither is reported, never guessed.

use compact_str::CompactString;
use rust_decimal::Decimal;
// FxHash: the keys are the knowledge's own unit codes, and a lookup is made for every lab
// value of every assessment; nothing iterates these maps into output.
use rustc_hash::FxHashMap as HashMap;
use std::str::FromStr;

/// One quantity (e.g. "cell count per volume") with its canonical unit and known units.
#[derive(Debug, Clone)]
pub struct QuantityDef {
    pub id: String,
    pub title: String,
    pub canonical: String,
    /// UCUM code → factor to the canonical unit.
    pub factors: HashMap<String, Decimal>,
}

/// The whole table: quantities plus the alias spellings.
#[derive(Debug, Clone, Default)]
pub struct UnitTable {
    pub quantities: Vec<QuantityDef>,
    /// Lower-cased, trimmed alias text → UCUM code.
    pub aliases: HashMap<String, String>,
}

/// Why a value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitProblem {
    /// No unit at all on the value.
    Missing,
    /// A unit that is neither a known UCUM code for this quantity nor a known alias.
    Unknown(String),
}

impl std::fmt::Display for UnitProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitProblem::Missing => write!(f, "the value has no unit"),
            UnitProblem::Unknown(u) => write!(f, "unknown unit `{u}`"),
        }
    }
}

/// Parses `"1000"` or a ratio `"1/88.42"` into an exact decimal factor.
pub fn parse_factor(text: &str) -> Option<Decimal> {
    match text.split_once('/') {
        Some((num, den)) => {
            let num = Decimal::from_str(num.trim()).ok()?;
            let den = Decimal::from_str(den.trim()).ok()?;
            if den.is_zero() {
                return None;
            }
            num.checked_div(den)
        }
        None => Decimal::from_str(text.trim()).ok(),
    }
}

impl QuantityDef {
    /// The factor for a UCUM code or an alias of one, if this quantity knows it.
    fn factor(
        &self,
        unit: &str,
        aliases: &HashMap<String, String>,
    ) -> Option<(Decimal, CompactString)> {
        let unit = crate::trim(unit);
        if let Some(f) = self.factors.get(unit) {
            return Some((*f, unit.into()));
        }
        // Lower-cased without an allocation for the usual ASCII unit (inline up to 24 bytes);
        // `to_lowercase` is exact for the rest.
        let lower: CompactString = if unit.is_ascii() {
            unit.bytes()
                .map(|b| char::from(b.to_ascii_lowercase()))
                .collect()
        } else {
            unit.to_lowercase().into()
        };
        let ucum = aliases.get(lower.as_str())?;
        self.factors.get(ucum).map(|f| (*f, ucum.into()))
    }
}

impl UnitTable {
    pub fn quantity(&self, idx: usize) -> &QuantityDef {
        &self.quantities[idx]
    }

    /// Converts `value` measured in `code` (UCUM, preferred) or `text` (the display unit)
    /// to the canonical unit of quantity `idx`. Returns the canonical value and the UCUM code
    /// that was recognised.
    pub fn to_canonical(
        &self,
        idx: usize,
        value: Decimal,
        code: Option<&str>,
        text: Option<&str>,
    ) -> Result<(Decimal, CompactString), UnitProblem> {
        let q = self.quantity(idx);
        let candidates = [code, text];
        let mut seen: Option<&str> = None;
        for unit in candidates.into_iter().flatten() {
            if crate::trim(unit).is_empty() {
                continue;
            }
            seen.get_or_insert(unit);
            if let Some((factor, ucum)) = q.factor(unit, &self.aliases) {
                return Ok((value * factor, ucum));
            }
        }
        match seen {
            Some(u) => Err(UnitProblem::Unknown(u.to_string())),
            // A quantity whose canonical unit is the UCUM unity `1` (scores, INR) may be sent
            // without a unit; every other quantity needs one.
            None if q.factors.contains_key("1") => Ok((value, "1".into())),
            None => Err(UnitProblem::Missing),
        }
    }

    /// Parses a threshold written in the knowledge as `"9 g/dL"` into canonical units.
    pub fn parse_threshold(&self, idx: usize, text: &str) -> Result<Decimal, String> {
        let text = text.trim();
        let (num, unit) = match text.split_once(char::is_whitespace) {
            Some((n, u)) => (n, Some(u.trim())),
            None => (text, None),
        };
        let value =
            Decimal::from_str(num).map_err(|_| format!("`{text}` does not start with a number"))?;
        let q = self.quantity(idx);
        let unit = unit.unwrap_or("1");
        self.to_canonical(idx, value, Some(unit), None)
            .map(|(v, _)| v)
            .map_err(|p| format!("threshold `{text}`: {p} for quantity `{}`", q.id))
    }
}

/// Converts a JSON number to an exact decimal using its shortest round-trip representation,
/// which is exactly the digits the sender wrote for any value with at most 17 significant
/// digits.
pub fn decimal_from_f64(v: f64) -> Option<Decimal> {
    if !v.is_finite() {
        return None;
    }
    // Whole numbers (most lab values) need no formatting: below 2^53 every integer is exact
    // in an f64, and its shortest representation is its digits, scale 0. Negative zero keeps
    // the formatted path, which gives a signed zero.
    if v.fract() == 0.0 && v.abs() < 9.0e15 && (v != 0.0 || v.is_sign_positive()) {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Decimal::from(v as i64));
    }
    // The same digits as `v.to_string()`, in a string kept inline (no allocation) up to 24
    // bytes, which every usual lab value fits.
    Decimal::from_str(&compact_str::format_compact!("{v}"))
        .or_else(|_| Decimal::from_scientific(&format!("{v:e}")))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole-number shortcut gives exactly what the formatted path gives (value, scale
    /// and sign), at its edges too.
    #[test]
    fn whole_numbers_convert_as_their_digits() {
        let formatted = |v: f64| Decimal::from_str(&v.to_string()).ok();
        for v in [
            0.0, -0.0, 1.0, -1.0, 180.0, 1e3, 12345678.0, -42.0, 8.99e15, -8.99e15, 2.5, 0.1,
        ] {
            let got = decimal_from_f64(v);
            let want = formatted(v);
            assert_eq!(got, want, "{v}");
            assert_eq!(
                got.map(|d| (d.scale(), d.is_sign_negative(), d.to_string())),
                want.map(|d| (d.scale(), d.is_sign_negative(), d.to_string())),
                "{v}"
            );
        }
    }

    /// Every value converts to exactly what `v.to_string()` parsed as a decimal gives (or,
    /// past that, the scientific form): fractions, tiny and huge magnitudes, values too long
    /// to be kept inline, and a spread of pseudo-random doubles.
    #[test]
    fn every_value_converts_as_its_shortest_digits() {
        let reference = |v: f64| {
            Decimal::from_str(&v.to_string())
                .or_else(|_| Decimal::from_scientific(&format!("{v:e}")))
                .ok()
        };
        let mut values = vec![
            // `{v}` of these is 62 to 66 characters: far past the inline string.
            1e-60,
            1e-61,
            1e-62,
            1e-63,
            1e-64,
            -1e-62,
            -1e-63,
            6.69,
            2.03,
            0.9,
            -0.25,
            1.0 / 3.0,
            0.1 + 0.2,
            1e-7,
            1.5e-20,
            123456.789,
            9.5e15,
            1e20,
            1.7976931348623157e308,
            5e-324,
            f64::NAN,
            f64::INFINITY,
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            // xorshift: any bit pattern, so every exponent and sign.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(f64::from_bits(x));
            values.push((x % 1_000_000) as f64 / 1000.0);
        }
        for v in values {
            let (got, want) = (decimal_from_f64(v), reference(v));
            // The whole representation: value, scale and the sign of a zero.
            assert_eq!(
                got.map(|d| d.serialize()),
                want.map(|d| d.serialize()),
                "{v:e}"
            );
        }
    }

    /// An alias is found whatever its case, ASCII or not, as `to_lowercase` would find it.
    #[test]
    fn aliases_are_found_in_any_case() {
        let mut t = table();
        t.aliases
            .insert("µl⁻¹ × 10³".to_string(), "10*3/uL".to_string());
        for unit in ["K/uL", "k/ul", " K/UL ", "Μl⁻¹ × 10³", "µL⁻¹ × 10³"] {
            let expect = t.aliases.contains_key(&unit.trim().to_lowercase());
            assert_eq!(
                t.to_canonical(0, Decimal::ONE, Some(unit), None).is_ok(),
                expect,
                "{unit}"
            );
        }
        assert!(t.to_canonical(0, Decimal::ONE, Some("K/UL"), None).is_ok());
        // Only Unicode lower-casing finds this one (Greek capital mu to small mu).
        t.aliases.insert("\u{3bc}l".to_string(), "/uL".to_string());
        assert!(
            t.to_canonical(0, Decimal::ONE, Some("\u{39c}L"), None)
                .is_ok()
        );
    }

    fn table() -> UnitTable {
        let mut factors = HashMap::default();
        factors.insert("/uL".to_string(), Decimal::ONE);
        factors.insert("10*9/L".to_string(), Decimal::from(1000));
        factors.insert("10*3/uL".to_string(), Decimal::from(1000));
        let mut aliases = HashMap::default();
        aliases.insert("k/ul".to_string(), "10*3/uL".to_string());
        UnitTable {
            quantities: vec![QuantityDef {
                id: "cell-count".into(),
                title: "cells".into(),
                canonical: "/uL".into(),
                factors,
            }],
            aliases,
        }
    }

    #[test]
    fn one_giga_per_litre_is_exactly_one_thousand_per_microlitre() {
        let t = table();
        let v = decimal_from_f64(1.0).unwrap_or_default();
        let (c, _) = t
            .to_canonical(0, v, Some("10*9/L"), None)
            .unwrap_or_default();
        assert_eq!(c, Decimal::from(1000));
        assert!(c >= Decimal::from(1000), "must not read as below 1000");
    }

    #[test]
    fn alias_is_case_insensitive_and_ucum_is_not_guessed() {
        let t = table();
        let v = Decimal::new(15, 1);
        assert_eq!(
            t.to_canonical(0, v, None, Some("K/uL")).map(|x| x.0),
            Ok(Decimal::from(1500))
        );
        assert_eq!(
            t.to_canonical(0, v, Some("K/m3"), None),
            Err(UnitProblem::Unknown("K/m3".into()))
        );
        assert_eq!(t.to_canonical(0, v, None, None), Err(UnitProblem::Missing));
    }

    #[test]
    fn ratio_factors_are_exact_decimals() {
        assert_eq!(parse_factor("1000"), Some(Decimal::from(1000)));
        let f = parse_factor("1/88.4").unwrap_or_default();
        assert!((f * Decimal::new(884, 1) - Decimal::ONE).abs() < Decimal::new(1, 20));
        assert_eq!(parse_factor("1/0"), None);
    }

    #[test]
    fn decimals_keep_the_written_digits() {
        assert_eq!(decimal_from_f64(0.1), Some(Decimal::new(1, 1)));
        assert_eq!(decimal_from_f64(0.5), Some(Decimal::new(5, 1)));
        assert_eq!(decimal_from_f64(f64::NAN), None);
    }
}
