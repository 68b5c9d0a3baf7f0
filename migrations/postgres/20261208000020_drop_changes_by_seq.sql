-- no-transaction
-- association_changes_numbered serves every lookup this index did.
DROP INDEX CONCURRENTLY IF EXISTS association_changes_by_seq;
