-- no-transaction
-- Limit usage: "records of this type at or above N" is one range of this
-- index (counts and samples of records at or near a limit, the records
-- near a limit in order). Built without blocking writers; it leads with
-- what association_counts_by_type held, which the next migration drops.
CREATE INDEX CONCURRENTLY IF NOT EXISTS association_counts_by_usage
    ON association_counts (portal_id, category, type_id, object_type, count, object_id);
