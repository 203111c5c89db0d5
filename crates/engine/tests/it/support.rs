//! Shared helpers: the workspace paths and the shipped knowledge.

use jakguard_engine::{Knowledge, embedded_knowledge};
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn kb() -> &'static Knowledge {
    static KB: OnceLock<Knowledge> = OnceLock::new();
    KB.get_or_init(|| match Knowledge::load(&embedded_knowledge()) {
        Ok(kb) => kb,
        Err(e) => panic!("the shipped knowledge must load:\n{e}"),
    })
}

/// `../shared/data` (or `$JAKGUARD_SHARED_DIR/data`), which CI must provide
/// (JAKGUARD_REQUIRE_SHARED=1) and a fresh clone may not have: then the tests that need it say
/// so and pass without it.
pub fn shared_data() -> Option<PathBuf> {
    let dir = match std::env::var_os("JAKGUARD_SHARED_DIR") {
        Some(d) => PathBuf::from(d).join("data"),
        None => workspace().join("../shared/data"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("JAKGUARD_REQUIRE_SHARED").is_ok_and(|v| v == "1") {
        panic!("{} is missing but JAKGUARD_REQUIRE_SHARED=1", dir.display());
    }
    eprintln!(
        "note: {} not found; skipping tests on external data",
        dir.display()
    );
    None
}
