-- Quotas sum the sizes of a user's live files at every write of a user who
-- has one. The creator index now carries the columns that sum reads, so
-- it is answered from the index alone instead of one table row per file;
-- it still serves lookups by creator, and the table keeps the same number
-- of indexes to update on each insert.
DROP INDEX nodes_creator;
--bun:split
CREATE INDEX nodes_creator ON nodes (creator_id, archived_at, status, is_dir, size);
