-- A run may carry the idempotency key its caller started it with: a second start with the
-- same key by the same user returns the first run (Engine::submit). The unique index makes
-- the key hold across processes; the insert of a run row ignores conflicts on it as on the
-- id, so a duplicate never fails the batch it is written in.
ALTER TABLE runs ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX runs_user_idempotency_key ON runs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
