-- no-transaction
-- association_counts_by_usage serves every lookup this index did.
DROP INDEX CONCURRENTLY IF EXISTS association_counts_by_type;
