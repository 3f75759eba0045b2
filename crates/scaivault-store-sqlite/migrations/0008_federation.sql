-- Federation backends. `config` is JSON (connection, path mapping, sync settings); it names the
-- secret holding the backend's credential, never the credential itself.
CREATE TABLE federation_backends (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    backend_type TEXT NOT NULL,
    mode         TEXT NOT NULL,
    mount        TEXT NOT NULL,
    config       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, mount)
);
