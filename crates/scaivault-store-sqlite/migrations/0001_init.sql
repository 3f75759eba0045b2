-- Timestamps are Unix microseconds (UTC).
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    partner_id  TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TABLE master_keys (
    version     INTEGER PRIMARY KEY,
    wrapped     BLOB NOT NULL,
    wraps       INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE secrets (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    path            TEXT NOT NULL,
    secret_type     TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    max_versions    INTEGER NOT NULL,
    current_version INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deleted_at      INTEGER,
    PRIMARY KEY (tenant_id, path)
) WITHOUT ROWID;

CREATE TABLE secret_versions (
    tenant_id    TEXT NOT NULL,
    path         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    key_version  INTEGER REFERENCES master_keys(version),
    wrapped_dek  BLOB,
    ciphertext   BLOB,
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   INTEGER,
    destroyed_at INTEGER,
    PRIMARY KEY (tenant_id, path, version),
    FOREIGN KEY (tenant_id, path) REFERENCES secrets(tenant_id, path) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE INDEX secret_versions_by_key ON secret_versions(key_version);

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    token_hash    BLOB NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    identity_type TEXT NOT NULL,
    identity_id   TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    groups_json   TEXT NOT NULL,
    is_root       INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER
);

CREATE INDEX tokens_by_tenant ON tokens(tenant_id, id);
