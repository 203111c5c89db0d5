//! The units table checked against UCUM itself (the `ucum-units` library): every code is
//! valid UCUM, every factor agrees with UCUM's conversion, and every conversion UCUM cannot do
//! (molar ↔ mass, international units) carries a note saying why it is right.

use crate::support::workspace;

#[test]
fn every_unit_is_valid_ucum_and_every_factor_agrees_with_ucum() {
    let text =
        std::fs::read_to_string(workspace().join("knowledge/units.toml")).expect("units.toml");
    let doc: toml::Value = toml::from_str(&text).expect("toml");
    let mut checked = 0;
    for q in doc["quantity"].as_array().expect("quantities") {
        let canonical = q["canonical"].as_str().expect("canonical");
        ucum::validate(canonical).unwrap_or_else(|e| panic!("canonical `{canonical}`: {e}"));
        for u in q["units"].as_array().expect("units") {
            let code = u["ucum"].as_str().expect("ucum");
            ucum::validate(code).unwrap_or_else(|e| panic!("`{code}` is not valid UCUM: {e}"));
            let factor =
                jakguard_engine::units::parse_factor(u["factor"].as_str().expect("factor"))
                    .expect("factor");
            let factor: f64 = factor.try_into().expect("f64");
            if ucum::is_comparable(code, canonical).unwrap_or(false) {
                let ucum_factor = ucum::convert(1.0, code, canonical).expect("convert");
                let rel = ((ucum_factor - factor) / factor).abs();
                assert!(
                    rel < 1e-9,
                    "`{code}` → `{canonical}`: table {factor}, UCUM {ucum_factor}"
                );
                checked += 1;
            } else {
                assert!(
                    u.get("note").is_some(),
                    "`{code}` → `{canonical}` is not a UCUM conversion; the entry needs a note saying why the factor holds"
                );
            }
        }
    }
    assert!(checked >= 25, "only {checked} factors checked");
}

#[test]
fn aliases_point_to_valid_ucum_and_k_per_ul_is_the_known_trap() {
    let text =
        std::fs::read_to_string(workspace().join("knowledge/units.toml")).expect("units.toml");
    let doc: toml::Value = toml::from_str(&text).expect("toml");
    for a in doc["alias"].as_array().expect("aliases") {
        let target = a["ucum"].as_str().expect("ucum");
        ucum::validate(target).unwrap_or_else(|e| panic!("alias target `{target}`: {e}"));
    }
    // Read as UCUM, `K/uL` is kelvin per microlitre — not a cell count. This is why the alias
    // table exists and why aliases are consulted only for the spellings listed.
    assert!(ucum::validate("K/uL").is_ok());
    assert!(!ucum::is_comparable("K/uL", "/uL").unwrap_or(true));
}
