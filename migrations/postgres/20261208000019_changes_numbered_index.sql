-- no-transaction
-- The change feed's index of numbered changes, without the unnumbered
-- ones (see 0018). Built without blocking writers.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS association_changes_numbered
    ON association_changes (portal_id, seq) WHERE seq IS NOT NULL;
