-- JAKGuard store, version 1. Applied once on start (PRAGMA user_version tracks it).
-- No patient identifier, name or clinical value is stored: patients appear only as a salted
-- hash, and only in the audit log.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Every CDS Hooks request answered.
CREATE TABLE audit (
    id                INTEGER PRIMARY KEY,
    at                TEXT NOT NULL,      -- RFC 3339 UTC
    service           TEXT NOT NULL,
    hook_instance     TEXT NOT NULL,
    patient_hash      TEXT,               -- salted SHA-256 of the patient id
    status            INTEGER NOT NULL,   -- HTTP status returned
    cards             INTEGER NOT NULL,
    knowledge_version TEXT NOT NULL
);

-- Every card issued, with the rules behind it, so feedback can be counted per rule.
CREATE TABLE cards (
    uuid          TEXT PRIMARY KEY,
    at            TEXT NOT NULL,
    service       TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    drug          TEXT,
    decision      TEXT,
    rules         TEXT NOT NULL            -- space-separated rule ids
);

-- Feedback from the EHR on cards (accepted / overridden).
CREATE TABLE feedback (
    id                  INTEGER PRIMARY KEY,
    received_at         TEXT NOT NULL,
    service             TEXT NOT NULL,
    card                TEXT NOT NULL,
    outcome             TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
    outcome_timestamp   TEXT NOT NULL,
    accepted_suggestions TEXT,            -- JSON array of suggestion ids
    override_code       TEXT,
    override_display    TEXT,
    has_comment         INTEGER NOT NULL DEFAULT 0  -- free-text comments may hold PHI: not stored
);
CREATE INDEX feedback_card ON feedback(card);
