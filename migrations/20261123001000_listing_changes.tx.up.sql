-- A change counter per folder, so that an instance may keep a rendered
-- listing and know, with one index probe, whether it still holds: the sum
-- of a folder's weights goes up by one with every committed change to a
-- child that a listing shows (insert, delete, and an update of a listed
-- column). Rows are only appended by the triggers below, never updated,
-- so concurrent writers into one folder never wait on a shared row; a
-- reader folds a folder's rows into one (same sum) when they pile up.
-- Sums never go down, so a sum seen once names exactly one state of the
-- folder's children.
CREATE TABLE listing_changes (
    id        {{if .PG}}BIGSERIAL{{else}}INTEGER{{end}} PRIMARY KEY,
    folder_id TEXT NOT NULL,
    weight    BIGINT NOT NULL DEFAULT 1
);
--bun:split
CREATE INDEX listing_changes_folder ON listing_changes (folder_id, weight);
--bun:split
{{if .PG}}
CREATE FUNCTION listing_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.parent_id IS NOT NULL THEN
            INSERT INTO listing_changes (folder_id) VALUES (OLD.parent_id);
        END IF;
        DELETE FROM listing_changes WHERE folder_id = OLD.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.parent_id IS NOT DISTINCT FROM OLD.parent_id AND NEW.name = OLD.name
            AND NEW.is_dir = OLD.is_dir AND NEW.size = OLD.size AND NEW.mime_type = OLD.mime_type
            AND NEW.etag = OLD.etag AND NEW.mod_time = OLD.mod_time AND NEW.created_at = OLD.created_at
            AND NEW.status = OLD.status AND NEW.archived_at IS NOT DISTINCT FROM OLD.archived_at THEN
            RETURN NULL;
        END IF;
        IF OLD.parent_id IS NOT NULL AND OLD.parent_id IS DISTINCT FROM NEW.parent_id THEN
            INSERT INTO listing_changes (folder_id) VALUES (OLD.parent_id);
        END IF;
    END IF;
    IF NEW.parent_id IS NOT NULL THEN
        INSERT INTO listing_changes (folder_id) VALUES (NEW.parent_id);
    END IF;
    RETURN NULL;
END
$$;
{{else}}
SELECT 1;
{{end}}
--bun:split
{{if .PG}}
CREATE TRIGGER listing_change AFTER INSERT OR UPDATE OR DELETE ON nodes
    FOR EACH ROW EXECUTE FUNCTION listing_change();
{{else}}
CREATE TRIGGER listing_change_insert AFTER INSERT ON nodes
    WHEN NEW.parent_id IS NOT NULL
BEGIN
    INSERT INTO listing_changes (folder_id) VALUES (NEW.parent_id);
END;
{{end}}
--bun:split
{{if .PG}}
SELECT 1;
{{else}}
CREATE TRIGGER listing_change_delete AFTER DELETE ON nodes
BEGIN
    INSERT INTO listing_changes (folder_id) SELECT OLD.parent_id WHERE OLD.parent_id IS NOT NULL;
    DELETE FROM listing_changes WHERE folder_id = OLD.id;
END;
{{end}}
--bun:split
{{if .PG}}
SELECT 1;
{{else}}
CREATE TRIGGER listing_change_update AFTER UPDATE ON nodes
    WHEN NEW.parent_id IS NOT OLD.parent_id OR NEW.name IS NOT OLD.name
        OR NEW.is_dir IS NOT OLD.is_dir OR NEW.size IS NOT OLD.size OR NEW.mime_type IS NOT OLD.mime_type
        OR NEW.etag IS NOT OLD.etag OR NEW.mod_time IS NOT OLD.mod_time OR NEW.created_at IS NOT OLD.created_at
        OR NEW.status IS NOT OLD.status OR NEW.archived_at IS NOT OLD.archived_at
BEGIN
    INSERT INTO listing_changes (folder_id)
        SELECT OLD.parent_id WHERE OLD.parent_id IS NOT NULL AND OLD.parent_id IS NOT NEW.parent_id;
    INSERT INTO listing_changes (folder_id) SELECT NEW.parent_id WHERE NEW.parent_id IS NOT NULL;
END;
{{end}}
