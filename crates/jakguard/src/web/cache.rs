//! The short-lived, in-memory assessment cache behind the links `/clinician/assessment/{id}`
//! (from a CDS Hooks card, or from an upload to its printable checklist).
//!
//! Privacy: a record is kept only in this process's memory, for at most `TTL`, under an id of
//! 122 random bits (UUID v4 from a CSPRNG) that only the link's holder knows; it is never
//! written to disk or logged, and a restart forgets everything. The cache is bounded: when it
//! is full the oldest entry goes. The long-term answer is a SMART on FHIR launch, where the
//! EHR hands the app a token to read the record itself (see ARCHITECTURE.md).

use chrono::NaiveDate;
use engine::record::Record;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a link works.
pub const TTL: Duration = Duration::from_secs(60 * 60);
/// At most this many records are held; the oldest is dropped first.
pub const MAX_ENTRIES: usize = 1000;

/// What a link opens: the record and the date it was assessed for.
#[derive(Clone)]
pub struct Cached {
    pub held: Held,
    pub as_of: NaiveDate,
}

/// What is kept for a link.
#[derive(Clone)]
pub enum Held {
    /// A record built from an upload, a form, or a hook request plus data fetched from the
    /// EHR's FHIR server.
    Record(Arc<Record>),
    /// The bytes of a CDS Hooks request whose prefetch held the whole record: the hook path
    /// pays nothing to keep them (the buffer is shared, not copied) and they are freed in
    /// one piece; the record is rebuilt only if the link is opened.
    HookRequest(axum::body::Bytes),
}

struct Entry {
    cached: Cached,
    created: Instant,
}

pub struct AssessmentCache {
    ttl: Duration,
    max: usize,
    entries: Mutex<Entries>,
}

/// The entries by id, and their ids oldest first (so expiry and eviction cost O(1) per entry
/// on the CDS Hooks path, instead of a scan of the whole map).
#[derive(Default)]
struct Entries {
    by_id: HashMap<String, Entry>,
    order: VecDeque<String>,
}

impl Default for AssessmentCache {
    fn default() -> Self {
        AssessmentCache::new(TTL, MAX_ENTRIES)
    }
}

impl AssessmentCache {
    pub fn new(ttl: Duration, max: usize) -> Self {
        AssessmentCache {
            ttl,
            max: max.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Keeps `record` and returns its new unguessable id. Cheap (no rendering, no clone of
    /// the record), so the CDS Hooks fast path can call it.
    pub fn insert(&self, record: Record, as_of: NaiveDate) -> String {
        self.keep(Held::Record(Arc::new(record)), as_of)
    }

    pub fn insert_request(&self, body: axum::body::Bytes, as_of: NaiveDate) -> String {
        self.keep(Held::HookRequest(body), as_of)
    }

    fn keep(&self, held: Held, as_of: NaiveDate) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-insert; the map is still
        // a valid map, so keep serving.
        // Evicted records are freed after the lock is released: freeing thousands of small
        // allocations under the lock would hold up every other hook request.
        let mut evicted = vec![];
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Forget what has expired, then the oldest while full: nothing outlives the TTL.
        while let Some(oldest) = e.order.front().cloned() {
            let expired = e
                .by_id
                .get(&oldest)
                .is_none_or(|x| now.duration_since(x.created) >= self.ttl);
            if !expired && e.by_id.len() < self.max {
                break;
            }
            e.order.pop_front();
            evicted.extend(e.by_id.remove(&oldest));
        }
        e.by_id.insert(
            id.clone(),
            Entry {
                cached: Cached { held, as_of },
                created: now,
            },
        );
        e.order.push_back(id.clone());
        drop(e);
        drop(evicted);
        id
    }

    /// The record behind `id`, unless it has expired (or never existed).
    pub fn get(&self, id: &str) -> Option<Cached> {
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.by_id
            .get(id)
            .filter(|e| e.created.elapsed() < self.ttl)
            .map(|e| e.cached.clone())
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record() -> Record {
        engine::fhir::parse_bundle(
            r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p"}}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn ids_are_long_random_and_distinct() {
        let c = AssessmentCache::default();
        let d = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let a = c.insert(record(), d);
        let b = c.insert(record(), d);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(c.get(&a).is_some());
        assert!(c.get("not-an-id").is_none());
    }

    #[test]
    fn bounded_size_drops_the_oldest() {
        let c = AssessmentCache::new(TTL, 2);
        let d = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let first = c.insert(record(), d);
        let second = c.insert(record(), d);
        let third = c.insert(record(), d);
        assert_eq!(c.len(), 2);
        assert!(c.get(&first).is_none());
        assert!(c.get(&second).is_some() && c.get(&third).is_some());
    }

    #[test]
    fn entries_expire_and_are_forgotten() {
        let c = AssessmentCache::new(Duration::from_millis(1), 10);
        let d = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let id = c.insert(record(), d);
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.get(&id).is_none());
        // The next insert drops the expired record from memory.
        c.insert(record(), d);
        assert_eq!(c.len(), 1);
    }
}
