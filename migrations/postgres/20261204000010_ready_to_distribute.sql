-- Ready to distribute by portal (Citus), and unchanged in meaning on a
-- single PostgreSQL: every unique key includes portal_id, and no
-- LANGUAGE sql function over the association tables is planned with
-- parameters (Citus cannot plan those).

-- The logs' keys: (portal_id, id), where id alone was the key.
ALTER TABLE association_changes DROP CONSTRAINT association_changes_pkey;
ALTER TABLE association_changes ADD PRIMARY KEY (portal_id, id);
ALTER TABLE admin_changes DROP CONSTRAINT admin_changes_pkey;
ALTER TABLE admin_changes ADD PRIMARY KEY (portal_id, id);

-- The same rows as before (see 20261123000006), from PL/pgSQL: its query
-- is planned as a statement of its own, with the portal a plain value.
CREATE OR REPLACE FUNCTION association_archive_rows(
    p_portal    BIGINT,
    p_from      TEXT,
    p_to        TEXT,
    p_pair_from BIGINT[],
    p_pair_to   BIGINT[],
    p_all       BOOLEAN,
    p_fwd_cat   SMALLINT[],
    p_fwd_type  INTEGER[],
    p_inv_cat   SMALLINT[],
    p_inv_type  INTEGER[]
) RETURNS TABLE (row_tid TID, from_object_type TEXT, from_object_id BIGINT,
                to_object_type TEXT, to_object_id BIGINT, category SMALLINT, type_id INTEGER)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT a.ctid, a.from_object_type, a.from_object_id, a.to_object_type, a.to_object_id,
           a.category, a.type_id
    FROM unnest(p_pair_from, p_pair_to) AS p(f, t)
    CROSS JOIN LATERAL (
        SELECT ctid, * FROM associations
        WHERE portal_id = p_portal AND from_object_type = p_from AND from_object_id = p.f
          AND to_object_type = p_to AND to_object_id = p.t
          AND (p_all OR (category, type_id) IN (SELECT * FROM unnest(p_fwd_cat, p_fwd_type)))
        OFFSET 0) a
    UNION
    SELECT a.ctid, a.from_object_type, a.from_object_id, a.to_object_type, a.to_object_id,
           a.category, a.type_id
    FROM unnest(p_pair_from, p_pair_to) AS p(f, t)
    CROSS JOIN LATERAL (
        SELECT ctid, * FROM associations
        WHERE portal_id = p_portal AND from_object_type = p_to AND from_object_id = p.t
          AND to_object_type = p_from AND to_object_id = p.f
          AND (p_all OR (category, type_id) IN (SELECT * FROM unnest(p_inv_cat, p_inv_type)))
        OFFSET 0) a;
END
$$;
