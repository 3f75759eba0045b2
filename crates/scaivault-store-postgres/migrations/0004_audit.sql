-- One hash chain per tenant. `body` is the canonical record (what is hashed and what queries return);
-- the other columns are indexes over it, which verification checks against the body.
CREATE TABLE audit_log (
    tenant_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    id          TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    identity_id TEXT NOT NULL,
    action      TEXT NOT NULL,
    secret_path TEXT COLLATE "C",
    outcome     TEXT NOT NULL,
    body        TEXT NOT NULL,
    prev_hash   BYTEA NOT NULL,
    hash        BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

CREATE INDEX audit_by_path ON audit_log(tenant_id, secret_path, seq);

-- The newest record of each chain, signed, so truncation is detectable.
CREATE TABLE audit_heads (
    tenant_id TEXT PRIMARY KEY,
    seq       BIGINT NOT NULL,
    hash      BYTEA NOT NULL,
    mac       BYTEA NOT NULL
);
