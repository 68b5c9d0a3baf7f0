-- no-transaction
-- admin_changes_numbered serves every lookup this index did.
DROP INDEX CONCURRENTLY IF EXISTS admin_changes_by_seq;
