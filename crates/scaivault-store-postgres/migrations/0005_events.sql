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
    secret_generation  BIGINT NOT NULL,
    secret_key_version BIGINT NOT NULL,
    secret_wrapped_dek BYTEA NOT NULL,
    secret_ciphertext  BYTEA NOT NULL,
    prev_generation    BIGINT,
    prev_key_version   BIGINT,
    prev_wrapped_dek   BYTEA,
    prev_ciphertext    BYTEA,
    prev_until         BIGINT,
    active             BIGINT NOT NULL,
    disabled_reason    TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE UNIQUE INDEX webhooks_by_name ON webhooks(tenant_id, kind, name);

-- The outbox: every event, written in the transaction of the change that caused it.
CREATE TABLE events (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    tenant_id  TEXT NOT NULL,
    event_type TEXT NOT NULL,
    path       TEXT COLLATE "C",
    created_at BIGINT NOT NULL,
    body       TEXT NOT NULL
);

CREATE INDEX events_by_tenant ON events(tenant_id, seq);

-- One delivery per event and matching webhook. `order_key` (the secret's path) keeps deliveries to one
-- receiver for one secret in event order: only the oldest pending one of a key may be claimed.
CREATE TABLE deliveries (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL,
    webhook_id      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    order_key       TEXT COLLATE "C" NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    retry_step      BIGINT NOT NULL,
    next_attempt_at BIGINT,
    claim_id        TEXT,
    claimed_until   BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_queue ON deliveries(webhook_id, order_key, seq) WHERE status = 'pending';
CREATE INDEX deliveries_by_webhook ON deliveries(tenant_id, webhook_id, seq);
CREATE INDEX deliveries_by_claim ON deliveries(claim_id);

CREATE TABLE delivery_attempts (
    delivery_id   TEXT NOT NULL,
    attempt       BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    response_code BIGINT,
    error         TEXT,
    duration_ms   BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
