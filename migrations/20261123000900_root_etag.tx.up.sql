-- The root folder was created without an ETag; clients that compare
-- collection ETags (Finder, rclone) need one like every other folder's.
UPDATE nodes SET etag = '"droot-1"' WHERE id = 'root' AND etag = '';
