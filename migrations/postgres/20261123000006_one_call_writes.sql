-- Writes in one round trip. Each function is the whole transaction of a
-- common write: it takes the locks in the global order (label definitions
-- shared, then counters by object type COLLATE "C", id, category, type id),
-- checks under them what the caller's plan needs, and writes; or it returns
-- without writing a row, and the caller runs its full flow instead.
--
-- PL/pgSQL keeps one plan per statement for the session, often made while
-- the tables were small; so these functions reach rows only through unique
-- keys (upserts, lateral primary-key lookups) or the ctids found that way,
-- never through a join a stale plan could turn into a table scan.

-- The rows an archive removes, with their ctid: for each (from id, to id)
-- pair, the rows from -> to of the chosen types and to -> from of their
-- inverses (every type when p_all). The archive flows' one definition of
-- "what matches".
CREATE FUNCTION association_archive_rows(
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
LANGUAGE sql STABLE AS $$
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
        OFFSET 0) a
$$;

-- A create planned without reading (domain::plan::presume_new_pairs):
-- applies its rows (r_*) and counter additions (k_*, all positive) when,
-- under the locks, every label of p_label_* exists, no pair of p_pair_*
-- holds an association from -> to, every record of p_records holds a
-- primary company (a p_record_type -> p_company_type row of type
-- p_primary_*), and every counter stays within its limit (the admin limit
-- of its type, at most p_ceiling). Returns whether it wrote; when it did
-- not, nothing changed.
CREATE FUNCTION association_create_presumed(
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
        SELECT coalesce(bool_or(r.count > LEAST(COALESCE(
                   (SELECT m.max_to_object_ids FROM association_limits m
                    WHERE m.portal_id = p_portal AND m.category = r.category AND m.type_id = r.type_id),
                   p_ceiling), p_ceiling)), FALSE)
          INTO over_limit
        FROM raised r;
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

    WITH added AS (
        INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type,
                                  to_object_id, category, type_id)
        SELECT p_portal, r.ft, r.fi, r.tt, r.ti, r.c, r.ty
        FROM unnest(r_from_type, r_from_id, r_to_type, r_to_id, r_cat, r_type) AS r(ft, fi, tt, ti, c, ty))
    INSERT INTO association_changes (portal_id, kind, from_object_type, from_object_id,
                                     to_object_type, to_object_id, category, type_id, changed_at_us)
    SELECT p_portal, p_kind, r.ft, r.fi, r.tt, r.ti, r.c, r.ty, p_now_us
    FROM unnest(r_from_type, r_from_id, r_to_type, r_to_id, r_cat, r_type)
         WITH ORDINALITY AS r(ft, fi, tt, ti, c, ty, n)
    ORDER BY r.n;
    RETURN TRUE;
END
$$;

-- An archive: locks the counters of the matching rows in the global order,
-- finds the rows again, and removes exactly those, lowering their counters
-- and appending p_kind changes. Returns the rows removed, or -1 without
-- writing a row when one appeared whose counter it had not locked.
CREATE FUNCTION association_archive(
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
    lk_tid   TID[];
    lk_type  TEXT[];
    lk_id    BIGINT[];
    lk_cat   SMALLINT[];
    lk_tyid  INTEGER[];
    found    TID[];
    unlocked BOOLEAN;
    removed  BIGINT;
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
        RETURNING ctid, object_type, object_id, category, type_id)
    SELECT array_agg(ctid), array_agg(object_type), array_agg(object_id), array_agg(category),
           array_agg(type_id)
      INTO lk_tid, lk_type, lk_id, lk_cat, lk_tyid
    FROM locked;
    IF lk_tid IS NULL THEN
        RETURN 0;
    END IF;

    -- Found again after the locks: every row must be counted in a locked counter.
    SELECT array_agg(m.row_tid),
           coalesce(bool_or((m.from_object_type, m.from_object_id, m.category, m.type_id)
                            NOT IN (SELECT * FROM unnest(lk_type, lk_id, lk_cat, lk_tyid))), FALSE)
      INTO found, unlocked
    FROM association_archive_rows(p_portal, p_from, p_to, p_pair_from, p_pair_to,
                                  p_all, p_fwd_cat, p_fwd_type, p_inv_cat, p_inv_type) m;
    IF unlocked THEN
        RETURN -1;
    END IF;
    IF found IS NULL THEN
        RETURN 0;
    END IF;

    -- Those rows cannot change while their counters are held: remove them by ctid.
    WITH gone AS (
        DELETE FROM associations
        WHERE ctid = ANY(found)
        RETURNING from_object_type, from_object_id, to_object_type, to_object_id, category, type_id),
    lowered AS (
        UPDATE association_counts c SET count = c.count - g.n
        FROM (SELECT from_object_type, from_object_id, category, type_id, count(*) AS n
              FROM gone GROUP BY 1, 2, 3, 4) g
        WHERE c.ctid = ANY(lk_tid) AND c.object_type = g.from_object_type
          AND c.object_id = g.from_object_id AND c.category = g.category AND c.type_id = g.type_id),
    logged AS (
        INSERT INTO association_changes (portal_id, kind, from_object_type, from_object_id,
                                         to_object_type, to_object_id, category, type_id, changed_at_us)
        SELECT p_portal, p_kind, g.from_object_type, g.from_object_id, g.to_object_type,
               g.to_object_id, g.category, g.type_id, p_now_us
        FROM gone g
        ORDER BY g.from_object_type COLLATE "C", g.from_object_id, g.to_object_type COLLATE "C",
                 g.to_object_id, g.category, g.type_id)
    SELECT count(*) INTO removed FROM gone;
    RETURN removed;
END
$$;
