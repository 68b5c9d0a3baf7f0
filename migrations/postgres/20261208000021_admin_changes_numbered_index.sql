-- no-transaction
-- The admin change log's index of numbered changes, without the unnumbered
-- ones (see 0018). Built without blocking writers.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS admin_changes_numbered
    ON admin_changes (portal_id, seq) WHERE seq IS NOT NULL;
