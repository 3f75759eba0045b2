-- Timestamps are Unix microseconds (UTC), as in the SQLite backend, so both stores round-trip alike.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    partner_id  TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE master_keys (
    version     BIGINT PRIMARY KEY,
    wrapped     BYTEA NOT NULL,
    wraps       BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE secrets (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    path            TEXT COLLATE "C" NOT NULL,
    secret_type     TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    max_versions    BIGINT NOT NULL,
    current_version BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT,
    PRIMARY KEY (tenant_id, path)
);

CREATE TABLE secret_versions (
    tenant_id    TEXT NOT NULL,
    path         TEXT COLLATE "C" NOT NULL,
    version      BIGINT NOT NULL,
    key_version  BIGINT REFERENCES master_keys(version),
    wrapped_dek  BYTEA,
    ciphertext   BYTEA,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   BIGINT,
    destroyed_at BIGINT,
    PRIMARY KEY (tenant_id, path, version),
    FOREIGN KEY (tenant_id, path) REFERENCES secrets(tenant_id, path) ON DELETE CASCADE
);

CREATE INDEX secret_versions_by_key ON secret_versions(key_version);

CREATE TABLE tokens (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    token_hash    BYTEA NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    identity_type TEXT NOT NULL,
    identity_id   TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    groups_json   TEXT NOT NULL,
    is_root       BOOLEAN NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT
);

CREATE INDEX tokens_by_tenant ON tokens(tenant_id, id);
