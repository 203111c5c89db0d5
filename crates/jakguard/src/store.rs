//! Durable storage behind a small interface: feedback on cards, the cards issued, and the
//! audit log. SQLite embedded by default (WAL; migrations in `migrations/`, applied on start).
//! PostgreSQL for several replicas would be another `Store` implementation (docs/storage.md).
//!
//! Feedback is written synchronously (`synchronous = FULL`) before the HTTP response is sent,
//! so an acknowledged write survives the process being killed. Audit rows and card rows are
//! queued to one writer thread that commits them in batches: the request path never waits
//! for them, and a crash can lose at most the last batch of audit rows (never feedback).

use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;

const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_init.sql")];

#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// One request answered.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub at: String,
    pub service: String,
    pub hook_instance: String,
    pub patient_hash: Option<String>,
    pub status: u16,
    pub cards: usize,
    pub knowledge_version: String,
}

/// One card issued.
#[derive(Debug, Clone)]
pub struct CardEntry {
    pub uuid: String,
    pub at: String,
    pub service: String,
    pub hook_instance: String,
    pub drug: Option<String>,
    pub decision: Option<String>,
    pub rules: Vec<String>,
}

/// One piece of feedback.
#[derive(Debug, Clone)]
pub struct FeedbackEntry {
    pub service: String,
    pub card: String,
    pub outcome: String,
    pub outcome_timestamp: String,
    pub accepted_suggestions: Vec<String>,
    pub override_code: Option<String>,
    pub override_display: Option<String>,
    pub has_comment: bool,
}

/// Acceptance and override counts of one rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleStats {
    pub rule: String,
    pub cards: u64,
    pub accepted: u64,
    pub overridden: u64,
    /// Override reasons with their counts, most frequent first.
    pub reasons: Vec<(String, u64)>,
}

/// What the server needs from storage.
pub trait Store: Send + Sync {
    /// Stores feedback durably before returning.
    fn record_feedback(&self, items: &[FeedbackEntry], received_at: &str)
    -> Result<(), StoreError>;
    /// Queues an audit row and the cards issued (not waited for).
    fn record_request(&self, audit: AuditEntry, cards: Vec<CardEntry>);
    /// Salted hash of a patient id for the audit log.
    fn patient_hash(&self, patient_id: &str) -> String;
    /// Feedback counts per rule.
    fn feedback_report(&self) -> Result<Vec<RuleStats>, StoreError>;
    /// Waits until queued audit rows are written (for shutdown and tests).
    fn flush(&self);
}

enum Job {
    Request(AuditEntry, Vec<CardEntry>),
    Flush(mpsc::Sender<()>),
}

pub struct SqliteStore {
    /// Feedback writes and reports: one connection, serialised by the mutex (SQLite allows one
    /// writer at a time anyway).
    conn: Mutex<Connection>,
    /// The audit writer thread's queue, bounded (`AUDIT_QUEUE`): when the writer falls
    /// behind, requests wait for room instead of memory growing without end.
    queue: mpsc::SyncSender<Job>,
    /// Audit rows that could not be queued (the writer thread has stopped): counted and
    /// logged, never dropped silently.
    lost: std::sync::atomic::AtomicU64,
    /// Times a request found the queue full and waited for the writer.
    waited: std::sync::atomic::AtomicU64,
    salt: String,
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut conn = open(path)?;
        migrate(&mut conn)?;
        // Feedback must survive a crash right after the response.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let salt: String = match conn.query_row(
            "SELECT value FROM settings WHERE key = 'audit_salt'",
            [],
            |r| r.get(0),
        ) {
            Ok(s) => s,
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                let s = uuid::Uuid::new_v4().simple().to_string();
                conn.execute(
                    "INSERT INTO settings (key, value) VALUES ('audit_salt', ?1)",
                    params![s],
                )?;
                s
            }
            Err(e) => return Err(e.into()),
        };
        let writer = open(path)?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        let (tx, rx) = mpsc::sync_channel::<Job>(AUDIT_QUEUE);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || audit_writer(writer, rx))
            .map_err(|e| StoreError(format!("cannot start the audit writer: {e}")))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            queue: tx,
            lost: std::sync::atomic::AtomicU64::new(0),
            waited: std::sync::atomic::AtomicU64::new(0),
            salt,
        })
    }
}

fn write_batch(
    conn: &mut Connection,
    batch: &[(AuditEntry, Vec<CardEntry>)],
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut a = tx.prepare_cached("INSERT INTO audit (at, service, hook_instance, patient_hash, status, cards, knowledge_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
        let mut c = tx.prepare_cached("INSERT OR IGNORE INTO cards (uuid, at, service, hook_instance, drug, decision, rules) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
        for (audit, cards) in batch {
            a.execute(params![
                audit.at,
                audit.service,
                audit.hook_instance,
                audit.patient_hash,
                audit.status,
                audit.cards as i64,
                audit.knowledge_version
            ])?;
            for card in cards {
                c.execute(params![
                    card.uuid,
                    card.at,
                    card.service,
                    card.hook_instance,
                    card.drug,
                    card.decision,
                    card.rules.join(" ")
                ])?;
            }
        }
    }
    tx.commit()
}

const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Requests written in one transaction at most.
const BATCH_ROWS: usize = 2000;

/// Audit rows waiting for the writer at most: at a few hundred bytes each, a few megabytes,
/// and many seconds of the heaviest load the service sustains.
const AUDIT_QUEUE: usize = 50_000;

/// Commits queued rows in batches: everything arriving within `LINGER` goes in one transaction.
fn audit_writer(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    // True when the last batch was cut at its size limit: more rows are already waiting.
    let mut behind = false;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![];
        let mut flushes = vec![];
        let take = |job, batch: &mut Vec<_>, flushes: &mut Vec<_>| match job {
            Job::Request(a, c) => batch.push((a, c)),
            Job::Flush(done) => flushes.push(done),
        };
        let flush_first = matches!(first, Job::Flush(_));
        take(first, &mut batch, &mut flushes);
        // Under load, sleep a little and then take everything that arrived: one transaction
        // carries many requests (commits, not inserts, are what cost), and a request queued
        // meanwhile finds no writer waiting, so it wakes no thread (waiting in `recv` for
        // each row cost a context switch per request). A flush is not kept waiting.
        if !flush_first && !behind {
            std::thread::sleep(LINGER);
        }
        while batch.len() < BATCH_ROWS
            && let Ok(job) = rx.try_recv()
        {
            take(job, &mut batch, &mut flushes);
        }
        behind = batch.len() >= BATCH_ROWS;
        if !batch.is_empty()
            && let Err(e) = write_batch(&mut conn, &batch)
        {
            tracing::error!(error = %e, rows = batch.len(), "audit rows could not be written");
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

impl Store for SqliteStore {
    fn record_feedback(
        &self,
        items: &[FeedbackEntry],
        received_at: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StoreError("lock poisoned".into()))?;
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT INTO feedback (received_at, service, card, outcome, outcome_timestamp, accepted_suggestions, override_code, override_display, has_comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?;
            for f in items {
                let accepted =
                    serde_json::to_string(&f.accepted_suggestions).unwrap_or_else(|_| "[]".into());
                st.execute(params![
                    received_at,
                    f.service,
                    f.card,
                    f.outcome,
                    f.outcome_timestamp,
                    accepted,
                    f.override_code,
                    f.override_display,
                    f.has_comment
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn record_request(&self, audit: AuditEntry, cards: Vec<CardEntry>) {
        let queued = match self.queue.try_send(Job::Request(audit, cards)) {
            Ok(()) => true,
            Err(mpsc::TrySendError::Full(job)) => {
                // The writer is behind (a slow disk): wait for room rather than lose the row
                // or let the queue grow; the request's answer waits with it (backpressure).
                let waits = self
                    .waited
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                if waits.is_power_of_two() {
                    tracing::warn!(
                        waits,
                        "the audit queue is full: requests wait for the audit writer"
                    );
                }
                self.queue.send(job).is_ok()
            }
            Err(mpsc::TrySendError::Disconnected(_)) => false,
        };
        if !queued {
            let lost = self.lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            // No clinical value, no identifier: only that the audit is failing.
            tracing::error!(
                lost_rows = lost,
                "an audit row was lost: the audit writer has stopped; restart the service"
            );
        }
    }

    fn patient_hash(&self, patient_id: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.salt.as_bytes());
        h.update(b":");
        h.update(patient_id.as_bytes());
        // Hex by hand into one string: a `format!` per byte cost 17 allocations per request.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(32);
        for b in h.finalize().iter().take(16) {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }

    fn feedback_report(&self) -> Result<Vec<RuleStats>, StoreError> {
        self.flush();
        let conn = self
            .conn
            .lock()
            .map_err(|_| StoreError("lock poisoned".into()))?;
        let mut stats: std::collections::BTreeMap<String, RuleStats> = Default::default();
        let mut reasons: std::collections::BTreeMap<(String, String), u64> = Default::default();
        let mut st = conn.prepare("SELECT rules FROM cards")?;
        for row in st.query_map([], |r| r.get::<_, String>(0))? {
            for rule in row?.split_whitespace() {
                stats
                    .entry(rule.to_string())
                    .or_insert_with(|| RuleStats {
                        rule: rule.to_string(),
                        cards: 0,
                        accepted: 0,
                        overridden: 0,
                        reasons: vec![],
                    })
                    .cards += 1;
            }
        }
        let mut st = conn.prepare("SELECT c.rules, f.outcome, COALESCE(f.override_display, f.override_code) FROM feedback f JOIN cards c ON c.uuid = f.card")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        for row in rows {
            let (rules, outcome, reason) = row?;
            for rule in rules.split_whitespace() {
                let s = stats.entry(rule.to_string()).or_insert_with(|| RuleStats {
                    rule: rule.to_string(),
                    cards: 0,
                    accepted: 0,
                    overridden: 0,
                    reasons: vec![],
                });
                if outcome == "accepted" {
                    s.accepted += 1;
                } else {
                    s.overridden += 1;
                    *reasons
                        .entry((
                            rule.to_string(),
                            reason.clone().unwrap_or_else(|| "(no reason given)".into()),
                        ))
                        .or_default() += 1;
                }
            }
        }
        for ((rule, reason), n) in reasons {
            if let Some(s) = stats.get_mut(&rule) {
                s.reasons.push((reason, n));
            }
        }
        let mut out: Vec<RuleStats> = stats.into_values().collect();
        for s in &mut out {
            s.reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
        }
        out.sort_by(|a, b| b.cards.cmp(&a.cards).then(a.rule.cmp(&b.rule)));
        Ok(out)
    }

    fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.queue.send(Job::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("jakguard-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("tmp");
        d.join("t.db")
    }

    #[test]
    fn an_audit_row_that_cannot_be_queued_is_counted_not_dropped_silently() {
        let path = tmp("lost");
        let mut s = SqliteStore::open(&path).expect("open");
        let row = || AuditEntry {
            at: "t".into(),
            service: "svc".into(),
            hook_instance: "h".into(),
            patient_hash: None,
            status: 200,
            cards: 0,
            knowledge_version: "v".into(),
        };
        s.record_request(row(), vec![]);
        assert_eq!(s.lost.load(std::sync::atomic::Ordering::Relaxed), 0);
        // A writer that has stopped: its end of the queue is gone.
        let (tx, rx) = mpsc::sync_channel::<Job>(4);
        drop(rx);
        s.queue = tx;
        s.record_request(row(), vec![]);
        s.record_request(row(), vec![]);
        assert_eq!(s.lost.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn a_full_audit_queue_makes_the_request_wait_and_loses_nothing() {
        use std::sync::atomic::Ordering::Relaxed;
        let path = tmp("full");
        let mut s = SqliteStore::open(&path).expect("open");
        // A writer that is behind: a queue of one row, read only when the test says so.
        let (tx, rx) = mpsc::sync_channel::<Job>(1);
        s.queue = tx;
        let row = |h: &str| AuditEntry {
            at: "t".into(),
            service: "svc".into(),
            hook_instance: h.into(),
            patient_hash: None,
            status: 200,
            cards: 0,
            knowledge_version: "v".into(),
        };
        s.record_request(row("first"), vec![]);
        assert_eq!(s.waited.load(Relaxed), 0);
        let s = std::sync::Arc::new(s);
        let waiting = {
            let s = std::sync::Arc::clone(&s);
            std::thread::spawn(move || s.record_request(row("second"), vec![]))
        };
        // The second row waits for room: the request has not returned.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.waited.load(Relaxed) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(s.waited.load(Relaxed), 1);
        assert!(!waiting.is_finished());
        // The writer catches up: both rows arrive, in order, and none is lost.
        let got: Vec<String> = (0..2)
            .filter_map(
                |_| match rx.recv_timeout(std::time::Duration::from_secs(10)) {
                    Ok(Job::Request(a, _)) => Some(a.hook_instance),
                    _ => None,
                },
            )
            .collect();
        assert_eq!(got, ["first", "second"]);
        waiting.join().expect("the waiting request returns");
        assert_eq!(s.lost.load(Relaxed), 0);
    }

    #[test]
    fn feedback_is_counted_per_rule_and_the_salt_is_stable() {
        let path = tmp("report");
        let s = SqliteStore::open(&path).expect("open");
        let h = s.patient_hash("p1");
        assert_eq!(h.len(), 32);
        assert_ne!(h, s.patient_hash("p2"));
        // The first 16 bytes of SHA-256("salt:id") in lower-case hex, as the audit has always
        // stored it (existing databases keep matching).
        let digest = Sha256::digest(format!("{}:p1", s.salt).as_bytes());
        let expected: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        assert_eq!(h, expected);
        s.record_request(
            AuditEntry {
                at: "t".into(),
                service: "svc".into(),
                hook_instance: "h".into(),
                patient_hash: Some(h.clone()),
                status: 200,
                cards: 1,
                knowledge_version: "v".into(),
            },
            vec![CardEntry {
                uuid: "c1".into(),
                at: "t".into(),
                service: "svc".into(),
                hook_instance: "h".into(),
                drug: Some("tofacitinib".into()),
                decision: Some("caution".into()),
                rules: vec!["r1".into(), "r2".into()],
            }],
        );
        s.flush();
        let fb = |outcome: &str, reason: Option<&str>| FeedbackEntry {
            service: "svc".into(),
            card: "c1".into(),
            outcome: outcome.into(),
            outcome_timestamp: "t".into(),
            accepted_suggestions: vec![],
            override_code: reason.map(str::to_string),
            override_display: reason.map(str::to_string),
            has_comment: false,
        };
        s.record_feedback(
            &[
                fb("accepted", None),
                fb("overridden", Some("benefit outweighs risk")),
            ],
            "t",
        )
        .expect("feedback");
        let report = s.feedback_report().expect("report");
        let r1 = report.iter().find(|r| r.rule == "r1").expect("r1");
        assert_eq!((r1.cards, r1.accepted, r1.overridden), (1, 1, 1));
        assert_eq!(r1.reasons, vec![("benefit outweighs risk".to_string(), 1)]);
        drop(s);
        // Reopening keeps the data and the salt, and does not re-run the migration.
        let s = SqliteStore::open(&path).expect("reopen");
        assert_eq!(s.patient_hash("p1"), h);
        assert_eq!(s.feedback_report().expect("report").len(), 2);
    }
}
