-- Ready to distribute by portal (Citus), and unchanged in meaning on a
-- single PostgreSQL: every unique key includes portal_id, and no
-- LANGUAGE sql function over the association tables is planned with
-- parameters (Citus cannot plan those), and every statement of a write
-- function names its portal, so each runs on the one shard that holds it.

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

-- The feed's order of rows, the Rust planner's (`DirectedRow`'s order, in
-- which an object type sorts by its prefix, then its number: "0-3" before
-- "0-14"), so an archive logs its rows in the same order on the fast path
-- and on the full flow (tests/differential.rs holds the two equal).
-- Counters are still locked in text order (COLLATE "C") on both paths.
CREATE FUNCTION association_type_order(t TEXT) RETURNS BIGINT[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[split_part(t, '-', 1)::bigint, split_part(t, '-', 2)::bigint]
$$;

-- The archive of 20261123000006, its rows named by their keys where it
-- named them by ctid (a ctid names no shard), in statements of their own
-- (Citus plans a chain of modifying CTEs recursively, and a ctid not at
-- all): the rows found under the counters' locks cannot change, so they
-- are what is removed, counted down and logged, in the feed's order.
CREATE OR REPLACE FUNCTION association_archive(
    p_portal    BIGINT,
    p_from      TEXT,
    p_to        TEXT,
    p_pair_from BIGINT[],
    p_pair_to   BIGINT[],
    p_all       BOOLEAN,
    p_fwd_cat   SMALLINT[],
    p_fwd_type  INTEGER[],
    p_inv_cat   SMALLINT[],
    p_inv_type  INTEGER[],
    p_kind      SMALLINT,
    p_now_us    BIGINT
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    lk_type  TEXT[];
    lk_id    BIGINT[];
    lk_cat   SMALLINT[];
    lk_tyid  INTEGER[];
    f_ft     TEXT[];
    f_fi     BIGINT[];
    f_tt     TEXT[];
    f_ti     BIGINT[];
    f_c      SMALLINT[];
    f_ty     INTEGER[];
    unlocked BOOLEAN;
BEGIN
    -- The counters of the rows found (each exists: its rows are counted),
    -- locked in the global order by a no-op update.
    WITH locked AS (
        INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
        SELECT p_portal, k.t, k.i, k.c, k.ty, 0
        FROM (SELECT DISTINCT m.from_object_type, m.from_object_id, m.category, m.type_id
              FROM association_archive_rows(p_portal, p_from, p_to, p_pair_from, p_pair_to,
                                            p_all, p_fwd_cat, p_fwd_type, p_inv_cat, p_inv_type) m)
             AS k(t, i, c, ty)
        ORDER BY k.t COLLATE "C", k.i, k.c, k.ty
        ON CONFLICT (portal_id, object_type, object_id, category, type_id)
        DO UPDATE SET count = association_counts.count
        RETURNING object_type, object_id, category, type_id)
    SELECT array_agg(object_type), array_agg(object_id), array_agg(category), array_agg(type_id)
      INTO lk_type, lk_id, lk_cat, lk_tyid
    FROM locked;
    IF lk_type IS NULL THEN
        RETURN 0;
    END IF;

    -- Found again after the locks: every row must be counted in a locked counter.
    SELECT array_agg(m.from_object_type), array_agg(m.from_object_id),
           array_agg(m.to_object_type), array_agg(m.to_object_id),
           array_agg(m.category), array_agg(m.type_id),
           coalesce(bool_or((m.from_object_type, m.from_object_id, m.category, m.type_id)
                            NOT IN (SELECT * FROM unnest(lk_type, lk_id, lk_cat, lk_tyid))), FALSE)
      INTO f_ft, f_fi, f_tt, f_ti, f_c, f_ty, unlocked
    FROM association_archive_rows(p_portal, p_from, p_to, p_pair_from, p_pair_to,
                                  p_all, p_fwd_cat, p_fwd_type, p_inv_cat, p_inv_type) m;
    IF unlocked THEN
        RETURN -1;
    END IF;
    IF f_ft IS NULL THEN
        RETURN 0;
    END IF;

    -- Those rows cannot change while their counters are held: remove them
    -- by their keys, count them down, log them.
    DELETE FROM associations a
    USING unnest(f_ft, f_fi, f_tt, f_ti, f_c, f_ty) AS f(ft, fi, tt, ti, c, ty)
    WHERE a.portal_id = p_portal AND a.from_object_type = f.ft AND a.from_object_id = f.fi
      AND a.to_object_type = f.tt AND a.to_object_id = f.ti AND a.category = f.c
      AND a.type_id = f.ty;
    UPDATE association_counts c SET count = c.count - g.n
    FROM (SELECT f.ft, f.fi, f.c, f.ty, count(*) AS n
          FROM unnest(f_ft, f_fi, f_c, f_ty) AS f(ft, fi, c, ty) GROUP BY 1, 2, 3, 4) g
    WHERE c.portal_id = p_portal AND c.object_type = g.ft AND c.object_id = g.fi
      AND c.category = g.c AND c.type_id = g.ty;
    INSERT INTO association_changes (portal_id, kind, from_object_type, from_object_id,
                                     to_object_type, to_object_id, category, type_id, changed_at_us)
    SELECT p_portal, p_kind, f.ft, f.fi, f.tt, f.ti, f.c, f.ty, p_now_us
    FROM unnest(f_ft, f_fi, f_tt, f_ti, f_c, f_ty) AS f(ft, fi, tt, ti, c, ty)
    ORDER BY association_type_order(f.ft), f.fi, association_type_order(f.tt), f.ti, f.c, f.ty;
    RETURN cardinality(f_ft);
END
$$;
