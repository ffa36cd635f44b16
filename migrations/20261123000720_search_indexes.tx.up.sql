-- Indexes for listing and searching files: keyset pages in each sort
-- order, and on PostgreSQL trigram indexes for the approximate match on
-- title and description when pg_trgm can be installed (without it, search
-- falls back to ILIKE and still works).
CREATE INDEX nodes_by_name ON nodes (name, id);
--bun:split
CREATE INDEX nodes_by_size ON nodes (size, id);
--bun:split
CREATE INDEX nodes_by_created ON nodes (created_at, id);
--bun:split
CREATE INDEX nodes_by_updated ON nodes (updated_at, id);
{{if .PG}}
--bun:split
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available; approximate search uses ILIKE';
END
$$;
--bun:split
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX IF NOT EXISTS nodes_title_trgm ON nodes USING gin (title gin_trgm_ops);
        CREATE INDEX IF NOT EXISTS nodes_description_trgm ON nodes USING gin (description gin_trgm_ops);
    END IF;
END
$$;
{{end}}
