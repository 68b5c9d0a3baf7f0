-- no-transaction
-- The index of a type's rows, led by the type instead of the portal.
-- Led by the portal, it served any statement that names a portal, and for
-- a portal that statistics show as empty (a new portal, or one filled
-- since the last ANALYZE, as by a large import) the planner took it over
-- the primary key even for a lookup of one association, reading every row
-- of the portal per lookup: each batch of an import into a new portal read
-- all the rows the batches before it had written (tests/plans_at_scale.rs).
-- Led by the type, it serves only statements that name a type, as a label
-- delete does. Built without blocking writers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS associations_of_type
    ON associations (category, type_id, portal_id);
