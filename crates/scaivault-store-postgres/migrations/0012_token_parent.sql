-- The token that issued each token: revoking a token revokes everything issued under it.
ALTER TABLE tokens ADD COLUMN parent_id TEXT;
CREATE INDEX tokens_by_parent ON tokens(parent_id) WHERE parent_id IS NOT NULL;
