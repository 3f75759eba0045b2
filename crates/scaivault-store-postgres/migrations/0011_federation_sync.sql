-- Sync mode: each sync-mode backend's schedule and last outcome, and what the last sync knew of
-- each path it keeps (the backend's and the local current versions). No secret data: values are
-- stored as versions of the secrets themselves.
CREATE TABLE federation_sync_runs (
    tenant_id            TEXT NOT NULL,
    backend_id           TEXT NOT NULL,
    next_sync_at         BIGINT NOT NULL,
    lease_until          BIGINT,
    last_sync_at         BIGINT,
    last_duration_ms     BIGINT,
    report               TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, backend_id)
);
CREATE INDEX federation_sync_runs_due ON federation_sync_runs (next_sync_at);

CREATE TABLE federation_sync_paths (
    tenant_id      TEXT NOT NULL,
    backend_id     TEXT NOT NULL,
    path           TEXT COLLATE "C" NOT NULL,
    remote_version TEXT NOT NULL,
    local_version  BIGINT NOT NULL,
    conflict       BIGINT NOT NULL DEFAULT 0,
    remote_at      BIGINT,
    local_at       BIGINT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, backend_id, path)
);
