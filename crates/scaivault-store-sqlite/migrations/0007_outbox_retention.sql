-- Pruning finished deliveries and old events looks events up by time and deliveries by event.
CREATE INDEX deliveries_by_event ON deliveries(event_id);
CREATE INDEX events_by_time ON events(created_at);
