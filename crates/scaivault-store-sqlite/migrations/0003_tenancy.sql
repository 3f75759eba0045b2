CREATE TABLE partners (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Roles a system administrator granted to a personal access token (partner_admin, system_admin).
ALTER TABLE tokens ADD COLUMN roles_json TEXT NOT NULL DEFAULT '[]';
