-- Replicas keep tokens, tenants, policies and secrets in memory. Every change those copies depend
-- on is announced on the `scaivault_changes` channel; NOTIFY is delivered on commit and dropped on
-- rollback, so an announcement always describes a committed change.
CREATE FUNCTION scaivault_notify_secret() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('scaivault_changes', json_build_object('k', 's', 't', r.tenant_id, 'p', r.path)::text);
    RETURN NULL;
END $$;

CREATE FUNCTION scaivault_notify_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scaivault_changes', '{"k":"k"}');
    RETURN NULL;
END $$;

CREATE FUNCTION scaivault_notify_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('scaivault_changes', json_build_object('k', 'n', 't', r.id)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER secrets_changed AFTER INSERT OR UPDATE OR DELETE ON secrets
    FOR EACH ROW EXECUTE FUNCTION scaivault_notify_secret();
-- A new version always comes with an update of its secret's head, so inserts need no trigger.
CREATE TRIGGER secret_versions_changed AFTER UPDATE OR DELETE ON secret_versions
    FOR EACH ROW EXECUTE FUNCTION scaivault_notify_secret();
CREATE TRIGGER tokens_changed AFTER UPDATE OR DELETE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION scaivault_notify_tokens();
-- Policy and binding changes bump their tenant's epoch, so they are announced through it.
CREATE TRIGGER tenants_changed AFTER UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION scaivault_notify_tenant();
