-- no-transaction
-- Feed retention finds each portal's cut (the last change older than the
-- retention) in this index instead of scanning the changes table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS association_changes_by_time
    ON association_changes (portal_id, changed_at_us) INCLUDE (seq);
