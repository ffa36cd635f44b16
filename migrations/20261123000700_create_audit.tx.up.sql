-- The audit trail: one row per authorization decision, from every door.
-- Rows form a hash chain: each row's hash covers its own fields and the
-- hash of the row before, so editing, removing or reordering a row breaks
-- every hash after it, which `filegate audit verify` reports. seq is
-- assigned by the appender under a lock on audit_head, so it has no gaps.
CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    at         {{.Timestamp}} NOT NULL,
    door       TEXT NOT NULL DEFAULT '',
    subject    TEXT NOT NULL,
    action     TEXT NOT NULL,
    object     TEXT NOT NULL,
    node_id    TEXT NOT NULL DEFAULT '',
    decision   TEXT NOT NULL,
    rule       TEXT NOT NULL DEFAULT '',
    remote     TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
--bun:split
CREATE INDEX audit_at ON audit (at);
--bun:split
CREATE INDEX audit_subject ON audit (subject, seq);
--bun:split
CREATE INDEX audit_node ON audit (node_id, seq);
--bun:split
CREATE INDEX audit_request ON audit (request_id);
--bun:split
-- The head of the chain: the last seq and hash. Appenders lock this one
-- row (FOR UPDATE on PostgreSQL; SQLite write transactions are serial), so
-- concurrent appends from several instances form one chain.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
--bun:split
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
--bun:split
-- Rows are append-only for the application: the database refuses UPDATE
-- and DELETE of audit rows. (Someone who drops the trigger can still edit
-- a row; the hash chain is what catches that.)
{{if .PG}}
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit rows are append-only';
END
$$;
--bun:split
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
--bun:split
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
{{else}}
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;
--bun:split
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;
{{end}}
