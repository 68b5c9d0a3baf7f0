-- The feed's order of changes wherever their ids are drawn. The feed
-- numbers a portal's committed changes in the order they were logged, and a
-- change must come after every change it waited for. Ids from one sequence
-- gave that on one PostgreSQL; on Citus each node draws ids from a range of
-- its own (the coordinator its own too), and after a portal's shard moves to
-- a node of a lower range its new changes would sort before the ones they
-- waited for. So every write, under its locks, logs its changes with an
-- order one above the greatest order of the portal's changes not numbered
-- yet (what it waited for has committed then, so it is seen), and the feed
-- numbers changes by (ord, id). A change already numbered needs no order:
-- whatever commits later gets a later number.
ALTER TABLE association_changes ADD COLUMN ord BIGINT NOT NULL DEFAULT 0;
DROP INDEX association_changes_unnumbered;
CREATE INDEX association_changes_unnumbered ON association_changes (portal_id, ord, id)
    WHERE seq IS NULL;

-- The order of portal p_portal's next changes (a probe of the index of
-- changes not numbered yet).
-- PL/pgSQL, so Citus plans its query with the portal a plain value.
CREATE FUNCTION association_change_order(p_portal BIGINT) RETURNS BIGINT
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(max(ord), 0) + 1 FROM association_changes
            WHERE portal_id = p_portal AND seq IS NULL);
END
$$;

-- The full flow's write (the plan: rows removed and added, counters moved,
-- changes logged in the plan's order), under the flow's locks.
CREATE FUNCTION association_apply(
    p_portal BIGINT,
    d_ft TEXT[], d_fi BIGINT[], d_tt TEXT[], d_ti BIGINT[], d_c SMALLINT[], d_ty INTEGER[],
    i_ft TEXT[], i_fi BIGINT[], i_tt TEXT[], i_ti BIGINT[], i_c SMALLINT[], i_ty INTEGER[],
    k_t TEXT[], k_i BIGINT[], k_c SMALLINT[], k_ty INTEGER[], k_d BIGINT[],
    f_kind SMALLINT[], f_ft TEXT[], f_fi BIGINT[], f_tt TEXT[], f_ti BIGINT[], f_c SMALLINT[],
    f_ty INTEGER[],
    p_now_us BIGINT
) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    v_ord BIGINT := association_change_order(p_portal);
BEGIN
    -- Every part touches different rows (the plan's sets are disjoint and
    -- its counter changes are net per counter), so one statement does it.
    WITH removed AS (
        DELETE FROM associations a
        USING unnest(d_ft, d_fi, d_tt, d_ti, d_c, d_ty) AS d(ft, fi, tt, ti, c, ty)
        WHERE a.portal_id = p_portal AND a.from_object_type = d.ft AND a.from_object_id = d.fi
          AND a.to_object_type = d.tt AND a.to_object_id = d.ti AND a.category = d.c
          AND a.type_id = d.ty),
    added AS (
        INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type,
                                  to_object_id, category, type_id)
        SELECT p_portal, d.ft, d.fi, d.tt, d.ti, d.c, d.ty
        FROM unnest(i_ft, i_fi, i_tt, i_ti, i_c, i_ty) AS d(ft, fi, tt, ti, c, ty)
        ON CONFLICT DO NOTHING),
    raised AS (
        INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
        SELECT p_portal, k.t, k.i, k.c, k.ty, k.d
        FROM unnest(k_t, k_i, k_c, k_ty, k_d) AS k(t, i, c, ty, d)
        WHERE k.d > 0
        ON CONFLICT (portal_id, object_type, object_id, category, type_id)
        DO UPDATE SET count = association_counts.count + EXCLUDED.count),
    lowered AS (
        UPDATE association_counts a SET count = a.count + k.d
        FROM unnest(k_t, k_i, k_c, k_ty, k_d) AS k(t, i, c, ty, d)
        WHERE k.d < 0 AND a.portal_id = p_portal AND a.object_type = k.t AND a.object_id = k.i
          AND a.category = k.c AND a.type_id = k.ty)
    INSERT INTO association_changes (portal_id, kind, from_object_type, from_object_id,
                                     to_object_type, to_object_id, category, type_id,
                                     changed_at_us, ord)
    SELECT p_portal, k.kind, k.ft, k.fi, k.tt, k.ti, k.c, k.ty, p_now_us,
           v_ord
    FROM unnest(f_kind, f_ft, f_fi, f_tt, f_ti, f_c, f_ty)
         WITH ORDINALITY AS k(kind, ft, fi, tt, ti, c, ty, n)
    ORDER BY k.n;
END
$$;

-- The create of 20261123000006, logging its order, its limit check a
-- statement of its own.
CREATE OR REPLACE FUNCTION association_create_presumed(
    p_portal      BIGINT,
    p_from        TEXT,
    p_to          TEXT,
    p_pair_from   BIGINT[],
    p_pair_to     BIGINT[],
    p_label_cat   SMALLINT[],
    p_label_type  INTEGER[],
    p_ceiling     INTEGER,
    p_records     BIGINT[],
    p_record_type TEXT,
    p_company_type TEXT,
    p_primary_cat SMALLINT,
    p_primary_type INTEGER,
    r_from_type   TEXT[],
    r_from_id     BIGINT[],
    r_to_type     TEXT[],
    r_to_id       BIGINT[],
    r_cat         SMALLINT[],
    r_type        INTEGER[],
    k_type        TEXT[],
    k_id          BIGINT[],
    k_cat         SMALLINT[],
    k_type_id     INTEGER[],
    k_delta       BIGINT[],
    p_kind        SMALLINT,
    p_now_us      BIGINT
) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    labels_found INTEGER;
    over_limit   BOOLEAN;
    with_primary INTEGER;
    raised_cat   SMALLINT[];
    raised_type  INTEGER[];
    raised_count BIGINT[];
    v_ord        BIGINT;
BEGIN
    -- The label definitions, shared: a label delete waits for us, or we see it gone.
    IF cardinality(p_label_cat) > 0 THEN
        SELECT count(*) INTO labels_found FROM (
            SELECT 1 FROM unnest(p_label_cat, p_label_type) AS l(c, ty)
            CROSS JOIN LATERAL (
                SELECT 1 FROM association_definitions
                WHERE portal_id = p_portal AND category = l.c AND type_id = l.ty
                OFFSET 0) d
            ORDER BY l.c, l.ty
            FOR KEY SHARE OF d) found;
        IF labels_found < cardinality(p_label_cat) THEN
            RETURN FALSE;
        END IF;
    END IF;

    -- A presumption that fails rolls this block back (a subtransaction).
    BEGIN
        -- Every counter raised in the global order (created when missing):
        -- the update takes the row lock and returns the new count.
        WITH raised AS (
            INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
            SELECT p_portal, k.t, k.i, k.c, k.ty, k.d
            FROM unnest(k_type, k_id, k_cat, k_type_id, k_delta) AS k(t, i, c, ty, d)
            ORDER BY k.t COLLATE "C", k.i, k.c, k.ty
            ON CONFLICT (portal_id, object_type, object_id, category, type_id)
            DO UPDATE SET count = association_counts.count + EXCLUDED.count
            RETURNING category, type_id, count)
        SELECT array_agg(category), array_agg(type_id), array_agg(count)
          INTO raised_cat, raised_type, raised_count
        FROM raised;
        -- Held to the limits in a statement of its own: one that reads the
        -- limits beside the modifying CTE makes Citus ship the raised rows
        -- over a connection and commit in two phases.
        SELECT coalesce(bool_or(r.count > LEAST(COALESCE(
                   (SELECT m.max_to_object_ids FROM association_limits m
                    WHERE m.portal_id = p_portal AND m.category = r.category AND m.type_id = r.type_id),
                   p_ceiling), p_ceiling)), FALSE)
          INTO over_limit
        FROM unnest(raised_cat, raised_type, raised_count) AS r(category, type_id, count);
        IF over_limit THEN
            RAISE EXCEPTION USING ERRCODE = 'AS001';
        END IF;

        -- The pairs hold nothing yet (read after the locks: a new snapshot).
        IF EXISTS (
            SELECT 1 FROM unnest(p_pair_from, p_pair_to) AS p(f, t)
            CROSS JOIN LATERAL (
                SELECT 1 FROM associations
                WHERE portal_id = p_portal AND from_object_type = p_from AND from_object_id = p.f
                  AND to_object_type = p_to AND to_object_id = p.t
                LIMIT 1) a) THEN
            RAISE EXCEPTION USING ERRCODE = 'AS001';
        END IF;

        -- Every record already holds its primary company.
        IF cardinality(p_records) > 0 THEN
            SELECT count(*) INTO with_primary
            FROM unnest(p_records) AS r(id)
            CROSS JOIN LATERAL (
                SELECT 1 FROM associations
                WHERE portal_id = p_portal AND from_object_type = p_record_type
                  AND from_object_id = r.id AND to_object_type = p_company_type
                  AND category = p_primary_cat AND type_id = p_primary_type
                LIMIT 1) a;
            IF with_primary < cardinality(p_records) THEN
                RAISE EXCEPTION USING ERRCODE = 'AS001';
            END IF;
        END IF;
    EXCEPTION WHEN SQLSTATE 'AS001' THEN
        RETURN FALSE;
    END;

    v_ord := association_change_order(p_portal);
    WITH added AS (
        INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type,
                                  to_object_id, category, type_id)
        SELECT p_portal, r.ft, r.fi, r.tt, r.ti, r.c, r.ty
        FROM unnest(r_from_type, r_from_id, r_to_type, r_to_id, r_cat, r_type) AS r(ft, fi, tt, ti, c, ty))
    INSERT INTO association_changes (portal_id, kind, from_object_type, from_object_id,
                                     to_object_type, to_object_id, category, type_id,
                                     changed_at_us, ord)
    SELECT p_portal, p_kind, r.ft, r.fi, r.tt, r.ti, r.c, r.ty, p_now_us,
           v_ord
    FROM unnest(r_from_type, r_from_id, r_to_type, r_to_id, r_cat, r_type)
         WITH ORDINALITY AS r(ft, fi, tt, ti, c, ty, n)
    ORDER BY r.n;
    RETURN TRUE;
END
$$;

-- The archive of 20261204000010, logging its order.
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
    v_ord    BIGINT;
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
    v_ord := association_change_order(p_portal);
    INSERT INTO association_changes (portal_id, kind, from_object_type, from_object_id,
                                     to_object_type, to_object_id, category, type_id,
                                     changed_at_us, ord)
    SELECT p_portal, p_kind, f.ft, f.fi, f.tt, f.ti, f.c, f.ty, p_now_us,
           v_ord
    FROM unnest(f_ft, f_fi, f_tt, f_ti, f_c, f_ty) AS f(ft, fi, tt, ti, c, ty)
    ORDER BY association_type_order(f.ft), f.fi, association_type_order(f.tt), f.ti, f.c, f.ty;
    RETURN cardinality(f_ft);
END
$$;
