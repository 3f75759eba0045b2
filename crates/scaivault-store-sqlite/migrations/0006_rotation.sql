-- Rotation policies. Durations are kept as written ("90d"), so they display as given.
CREATE TABLE rotation_policies (
    tenant_id        TEXT NOT NULL,
    id               TEXT NOT NULL,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    interval_spec    TEXT NOT NULL,
    grace_period     TEXT NOT NULL,
    warn_before      TEXT NOT NULL,
    rotation_timeout TEXT NOT NULL,
    auto_generate    INTEGER NOT NULL,
    generator        TEXT,
    webhook_ids      TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- One schedule per assigned secret. `wake_at` is when the scheduler next has work for it (NULL while
-- failed); the scheduler finds due work through its index, never by scanning. Every change is a
-- conditional update on `revision`, so replicas never apply one transition twice.
CREATE TABLE rotation_assignments (
    tenant_id        TEXT NOT NULL,
    path             TEXT NOT NULL,
    policy_id        TEXT NOT NULL,
    state            TEXT NOT NULL,
    next_rotation_at INTEGER NOT NULL,
    warned           INTEGER NOT NULL,
    due_since        INTEGER,
    last_rotated_at  INTEGER,
    wake_at          INTEGER,
    revision         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, path)
);

CREATE INDEX rotation_wake ON rotation_assignments(wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX rotation_by_policy ON rotation_assignments(tenant_id, policy_id, path);
