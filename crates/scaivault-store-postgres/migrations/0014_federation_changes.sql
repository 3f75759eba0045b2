-- One row per tenant that ever changed a federation backend: every create or update of a backend
-- takes it (an upsert, which holds the row until commit) before checking that its mount overlaps no
-- other, so two such changes of one tenant are checked one after the other, on any number of
-- replicas.
CREATE TABLE federation_changes (
    tenant_id TEXT PRIMARY KEY,
    changes BIGINT NOT NULL
);

-- Every replica keeps each tenant's mounts in memory (every secret request consults them): a
-- change to a backend is announced so that each drops its copy at once.
CREATE FUNCTION scaivault_notify_federation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('scaivault_changes', json_build_object('k', 'f', 't', r.tenant_id)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER federation_backends_changed AFTER INSERT OR UPDATE OR DELETE ON federation_backends
    FOR EACH ROW EXECUTE FUNCTION scaivault_notify_federation();
