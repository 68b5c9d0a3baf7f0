-- A record's primary company looked up on the key whatever the statistics.
-- Asked as "this record's row of the primary type", the lookup let the
-- planner choose between the primary key (portal, record, company type)
-- and associations_by_type (portal, category, type id). Where statistics
-- show few primary rows in the portal (a new portal, or one whose records
-- got their primaries since the last ANALYZE, as during a large import),
-- it took the by-type index and filtered every primary row of the portal
-- for each record: a cost that grows with every batch of an import. The
-- type is now tested outside an OFFSET 0 fence around the record's rows to
-- the company type, so only the primary key can serve the read (its cost
-- the record's degree to companies). The store's own primary lookups
-- (src/store/postgres/steps.rs) read alike. Otherwise this is the function
-- of 20261207000017; tests/differential.rs holds it equal to the Rust flow
-- and tests/plans_at_scale.rs holds the plans.
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
    v_count      BIGINT;
    v_limit      INTEGER;
    kr           RECORD;
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
        -- Every counter raised in the global order (created when missing),
        -- the update taking the row lock and returning the new count, and
        -- held to its limit. A few counters one statement each: on Citus a
        -- statement of one row routes straight to its shard, while one over
        -- unnest() goes through an intermediate result.
        IF cardinality(k_type) <= 4 THEN
            FOR kr IN SELECT * FROM unnest(k_type, k_id, k_cat, k_type_id, k_delta) AS k(t, i, c, ty, d)
                     ORDER BY k.t COLLATE "C", k.i, k.c, k.ty LOOP
                INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
                VALUES (p_portal, kr.t, kr.i, kr.c, kr.ty, kr.d)
                ON CONFLICT (portal_id, object_type, object_id, category, type_id)
                DO UPDATE SET count = association_counts.count + EXCLUDED.count
                RETURNING count INTO v_count;
                SELECT m.max_to_object_ids INTO v_limit FROM association_limits m
                WHERE m.portal_id = p_portal AND m.category = kr.c AND m.type_id = kr.ty;
                IF v_count > LEAST(COALESCE(v_limit, p_ceiling), p_ceiling) THEN
                    RAISE EXCEPTION USING ERRCODE = 'AS001';
                END IF;
            END LOOP;
        ELSE
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
        END IF;

        -- The pairs hold nothing yet (read after the locks: a new snapshot);
        -- a few pairs one probe each.
        IF cardinality(p_pair_from) <= 4 THEN
            FOR n IN 1..coalesce(cardinality(p_pair_from), 0) LOOP
                IF EXISTS (
                    SELECT 1 FROM associations
                    WHERE portal_id = p_portal AND from_object_type = p_from
                      AND from_object_id = p_pair_from[n] AND to_object_type = p_to
                      AND to_object_id = p_pair_to[n]) THEN
                    RAISE EXCEPTION USING ERRCODE = 'AS001';
                END IF;
            END LOOP;
        ELSIF EXISTS (
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
            -- The record's rows to companies, read on the key; the type
            -- tested outside the fence (see the head of this migration).
            SELECT count(*) INTO with_primary
            FROM unnest(p_records) AS r(id)
            WHERE EXISTS (
                SELECT 1 FROM (
                    SELECT category, type_id FROM associations
                    WHERE portal_id = p_portal AND from_object_type = p_record_type
                      AND from_object_id = r.id AND to_object_type = p_company_type
                    OFFSET 0) a
                WHERE a.category = p_primary_cat AND a.type_id = p_primary_type);
            IF with_primary < cardinality(p_records) THEN
                RAISE EXCEPTION USING ERRCODE = 'AS001';
            END IF;
        END IF;
    EXCEPTION WHEN SQLSTATE 'AS001' THEN
        RETURN FALSE;
    END;

    v_ord := association_change_order(p_portal);
    -- A few rows (a single create's two) a statement each, logged in order.
    IF cardinality(r_from_type) <= 4 THEN
        FOR n IN 1..coalesce(cardinality(r_from_type), 0) LOOP
            INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type,
                                      to_object_id, category, type_id)
            VALUES (p_portal, r_from_type[n], r_from_id[n], r_to_type[n], r_to_id[n], r_cat[n], r_type[n]);
            INSERT INTO association_changes (portal_id, kind, from_object_type, from_object_id,
                                             to_object_type, to_object_id, category, type_id,
                                             changed_at_us, ord)
            VALUES (p_portal, p_kind, r_from_type[n], r_from_id[n], r_to_type[n], r_to_id[n],
                    r_cat[n], r_type[n], p_now_us, v_ord);
        END LOOP;
        RETURN TRUE;
    END IF;
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

