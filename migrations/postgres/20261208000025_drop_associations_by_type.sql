-- no-transaction
-- associations_of_type serves every lookup of a type this index did.
DROP INDEX CONCURRENTLY IF EXISTS associations_by_type;
