-- WebDAV dead properties (PROPPATCH): one row per property of a node, the
-- value kept as self-contained XML (every element declares its namespace)
-- so it can be replayed verbatim in any response. Rows go with their node
-- when it is purged; archived nodes keep theirs for a restore. parent_id
-- copies the node's, kept right by a trigger whichever door moves the
-- node, so a listing finds its children's properties with one index range
-- instead of one probe per child.
CREATE TABLE dead_props (
    node_id   TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    parent_id TEXT NOT NULL DEFAULT '',
    ns        TEXT NOT NULL,
    name      TEXT NOT NULL,
    lang      TEXT NOT NULL DEFAULT '',
    value     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (node_id, ns, name)
);
--bun:split
CREATE INDEX dead_props_parent ON dead_props (parent_id);
--bun:split
{{if .PG}}
CREATE FUNCTION dead_props_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dead_props SET parent_id = COALESCE(NEW.parent_id, '') WHERE node_id = NEW.id;
    RETURN NULL;
END
$$;
{{else}}
SELECT 1;
{{end}}
--bun:split
{{if .PG}}
CREATE TRIGGER dead_props_follow AFTER UPDATE OF parent_id ON nodes
    FOR EACH ROW WHEN (NEW.parent_id IS DISTINCT FROM OLD.parent_id)
    EXECUTE FUNCTION dead_props_follow();
{{else}}
CREATE TRIGGER dead_props_follow AFTER UPDATE OF parent_id ON nodes
    WHEN NEW.parent_id IS NOT OLD.parent_id
BEGIN
    UPDATE dead_props SET parent_id = COALESCE(NEW.parent_id, '') WHERE node_id = NEW.id;
END;
{{end}}
--bun:split
-- WebDAV locks, shared by every instance. root is the clean path the lock
-- was taken on (locks belong to names, not to nodes; see the triggers
-- below); expires_ms is Unix milliseconds so that both databases compare
-- it as a number.
CREATE TABLE dav_locks (
    token       TEXT PRIMARY KEY,
    root        {{.Key}} NOT NULL,
    infinite    BOOLEAN NOT NULL DEFAULT FALSE,
    shared      BOOLEAN NOT NULL DEFAULT FALSE,
    owner_xml   TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    timeout_s   BIGINT NOT NULL,
    created_at  {{.Timestamp}} NOT NULL,
    expires_ms  BIGINT NOT NULL
);
--bun:split
CREATE INDEX dav_locks_root ON dav_locks (root);
--bun:split
CREATE INDEX dav_locks_expiry ON dav_locks (expires_ms);
--bun:split
-- A lock belongs to a name. Whichever door moves, deletes (archives) or
-- purges the node holding that name, the locks on it and below it go, as
-- RFC 4918 says for MOVE and DELETE; without this a lock taken through
-- WebDAV would outlive a deletion through the files API and bind the next
-- file of that name.
{{if .PG}}
CREATE FUNCTION dav_locks_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM dav_locks WHERE root = OLD.path OR (root > OLD.path || '/' AND root < OLD.path || '0');
    RETURN NULL;
END
$$;
{{else}}
SELECT 1;
{{end}}
--bun:split
{{if .PG}}
CREATE TRIGGER dav_locks_moved AFTER UPDATE OF path, archived_at ON nodes
    FOR EACH ROW WHEN (NEW.path IS DISTINCT FROM OLD.path OR (OLD.archived_at IS NULL AND NEW.archived_at IS NOT NULL))
    EXECUTE FUNCTION dav_locks_release();
{{else}}
CREATE TRIGGER dav_locks_moved AFTER UPDATE OF path, archived_at ON nodes
    WHEN NEW.path IS NOT OLD.path OR (OLD.archived_at IS NULL AND NEW.archived_at IS NOT NULL)
BEGIN
    DELETE FROM dav_locks WHERE root = OLD.path OR (root > OLD.path || '/' AND root < OLD.path || '0');
END;
{{end}}
--bun:split
{{if .PG}}
CREATE TRIGGER dav_locks_purged AFTER DELETE ON nodes
    FOR EACH ROW WHEN (OLD.archived_at IS NULL)
    EXECUTE FUNCTION dav_locks_release();
{{else}}
CREATE TRIGGER dav_locks_purged AFTER DELETE ON nodes
    WHEN OLD.archived_at IS NULL
BEGIN
    DELETE FROM dav_locks WHERE root = OLD.path OR (root > OLD.path || '/' AND root < OLD.path || '0');
END;
{{end}}
--bun:split
-- A covering index for WebDAV listings (PROPFIND Depth 1): every column a
-- listing shows, so a folder of 20,000 files is read from the index alone.
{{if .PG}}
CREATE INDEX dav_listing ON nodes (parent_id, name)
    INCLUDE (id, is_dir, size, mime_type, etag, mod_time, created_at)
    WHERE archived_at IS NULL AND status = 'completed';
{{else}}
CREATE INDEX dav_listing ON nodes (parent_id, name, id, is_dir, size, mime_type, etag, mod_time, created_at)
    WHERE archived_at IS NULL AND status = 'completed';
{{end}}
