-- What every secret write consults, kept in memory by each replica: a tenant's webhook filters (which
-- events the write fans out to) and whether the secret has a rotation schedule (which a write may
-- complete). Replicas cache only the absence of a schedule, so only new assignments are announced.
CREATE FUNCTION scaivault_notify_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('scaivault_changes', json_build_object('k', 'w', 't', r.tenant_id)::text);
    RETURN NULL;
END $$;

CREATE FUNCTION scaivault_notify_assigned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scaivault_changes', json_build_object('k', 'r', 't', NEW.tenant_id, 'p', NEW.path)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER webhooks_changed AFTER INSERT OR UPDATE OR DELETE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION scaivault_notify_webhooks();
CREATE TRIGGER rotation_assigned AFTER INSERT ON rotation_assignments
    FOR EACH ROW EXECUTE FUNCTION scaivault_notify_assigned();
