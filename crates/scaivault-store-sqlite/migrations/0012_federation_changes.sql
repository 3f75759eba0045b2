-- One row per tenant that ever changed a federation backend: every create or update of a backend
-- takes it (an upsert) before checking that its mount overlaps no other, so two such changes of
-- one tenant are checked one after the other, on any number of replicas.
CREATE TABLE federation_changes (
    tenant_id TEXT PRIMARY KEY,
    changes INTEGER NOT NULL
);
