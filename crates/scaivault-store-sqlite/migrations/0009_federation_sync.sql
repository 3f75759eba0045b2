-- Sync mode: each sync-mode backend's schedule and last outcome, and what the last sync knew of
-- each path it keeps (the backend's and the local current versions). No secret data: values are
-- stored as versions of the secrets themselves.
CREATE TABLE federation_sync_runs (
    tenant_id            TEXT NOT NULL,
    backend_id           TEXT NOT NULL,
    next_sync_at         INTEGER NOT NULL,
    lease_until          INTEGER,
    last_sync_at         INTEGER,
    last_duration_ms     INTEGER,
    report               TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, backend_id)
);
CREATE INDEX federation_sync_runs_due ON federation_sync_runs (next_sync_at);

CREATE TABLE federation_sync_paths (
    tenant_id      TEXT NOT NULL,
    backend_id     TEXT NOT NULL,
    path           TEXT NOT NULL,
    remote_version TEXT NOT NULL,
    local_version  INTEGER NOT NULL,
    conflict       INTEGER NOT NULL DEFAULT 0,
    remote_at      INTEGER,
    local_at       INTEGER,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, backend_id, path)
);
