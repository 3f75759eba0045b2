-- Whether a backend syncs (its mode, or one of its path_mapping rules, is sync), so the scheduler's
-- query needs no knowledge of the configuration's JSON. Rules with a mode of their own are newer
-- than this column, so the backend's mode decides for every row there is.
ALTER TABLE federation_backends ADD COLUMN syncs INTEGER NOT NULL DEFAULT 0;
UPDATE federation_backends SET syncs = 1 WHERE mode = 'sync';
