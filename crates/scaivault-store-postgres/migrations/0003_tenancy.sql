CREATE TABLE partners (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Roles a system administrator granted to a personal access token (partner_admin, system_admin).
ALTER TABLE tokens ADD COLUMN roles_json TEXT NOT NULL DEFAULT '[]';
