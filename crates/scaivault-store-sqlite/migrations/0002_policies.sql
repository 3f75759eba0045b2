-- Bumped in the same transaction as any policy or binding change, so caches know when to reload.
ALTER TABLE tenants ADD COLUMN policy_epoch INTEGER NOT NULL DEFAULT 0;

CREATE TABLE policies (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    rules       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE policy_bindings (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    policy_id     TEXT NOT NULL,
    identity_type TEXT NOT NULL,
    identity_id   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, policy_id, identity_type, identity_id),
    FOREIGN KEY (tenant_id, policy_id) REFERENCES policies(tenant_id, id) ON DELETE CASCADE
);
