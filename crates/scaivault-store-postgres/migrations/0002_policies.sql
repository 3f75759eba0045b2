-- Bumped in the same transaction as any policy or binding change, so caches know when to reload.
ALTER TABLE tenants ADD COLUMN policy_epoch BIGINT NOT NULL DEFAULT 0;

CREATE TABLE policies (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT NOT NULL,
    rules       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE policy_bindings (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    policy_id     TEXT NOT NULL,
    identity_type TEXT NOT NULL,
    identity_id   TEXT COLLATE "C" NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, policy_id, identity_type, identity_id),
    FOREIGN KEY (tenant_id, policy_id) REFERENCES policies(tenant_id, id) ON DELETE CASCADE
);
