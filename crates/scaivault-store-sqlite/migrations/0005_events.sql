-- Webhooks and subscriptions (one table: a subscription is a webhook with glob paths). The signing
-- secret is stored only sealed (AES-256-GCM envelope), with the previous one kept during a roll.
CREATE TABLE webhooks (
    tenant_id          TEXT NOT NULL,
    id                 TEXT NOT NULL,
    kind               TEXT NOT NULL,
    name               TEXT NOT NULL,
    url                TEXT NOT NULL,
    events             TEXT NOT NULL,
    path_prefix        TEXT,
    paths              TEXT NOT NULL,
    secret_generation  INTEGER NOT NULL,
    secret_key_version INTEGER NOT NULL,
    secret_wrapped_dek BLOB NOT NULL,
    secret_ciphertext  BLOB NOT NULL,
    prev_generation    INTEGER,
    prev_key_version   INTEGER,
    prev_wrapped_dek   BLOB,
    prev_ciphertext    BLOB,
    prev_until         INTEGER,
    active             INTEGER NOT NULL,
    disabled_reason    TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE UNIQUE INDEX webhooks_by_name ON webhooks(tenant_id, kind, name);

-- The outbox: every event, written in the transaction of the change that caused it.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    tenant_id  TEXT NOT NULL,
    event_type TEXT NOT NULL,
    path       TEXT,
    created_at INTEGER NOT NULL,
    body       TEXT NOT NULL
);

CREATE INDEX events_by_tenant ON events(tenant_id, seq);

-- One delivery per event and matching webhook. `order_key` (the secret's path) keeps deliveries to one
-- receiver for one secret in event order: only the oldest pending one of a key may be claimed.
CREATE TABLE deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL,
    webhook_id      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    order_key       TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    retry_step      INTEGER NOT NULL,
    next_attempt_at INTEGER,
    claim_id        TEXT,
    claimed_until   INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_queue ON deliveries(webhook_id, order_key, seq) WHERE status = 'pending';
CREATE INDEX deliveries_by_webhook ON deliveries(tenant_id, webhook_id, seq);
CREATE INDEX deliveries_by_claim ON deliveries(claim_id);

CREATE TABLE delivery_attempts (
    delivery_id   TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    response_code INTEGER,
    error         TEXT,
    duration_ms   INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
