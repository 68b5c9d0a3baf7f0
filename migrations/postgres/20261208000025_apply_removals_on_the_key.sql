-- The full flow's write (association_apply, as in 20261206000013) with
-- its removals and its lowered counters one key lookup each. Joined with
-- the arrays in one statement, they were planned on estimates, and for a
-- portal that statistics show as empty (a new portal, or one filled by an
-- import since the last ANALYZE) the planner could scan the portal's rows
-- and probe the arrays for each, even with nothing to remove: each batch
-- of an import into a new portal read every row the batches before it
-- had written (tests/plans_at_scale.rs). A statement whose every key
-- column is a value has one plan, the key's. The rest is one statement as
-- before.
CREATE OR REPLACE FUNCTION association_apply(
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
    -- its counter changes are net per counter), so the order of the parts
    -- does not matter.
    FOR n IN 1..coalesce(cardinality(d_ft), 0) LOOP
        DELETE FROM associations
        WHERE portal_id = p_portal AND from_object_type = d_ft[n] AND from_object_id = d_fi[n]
          AND to_object_type = d_tt[n] AND to_object_id = d_ti[n] AND category = d_c[n]
          AND type_id = d_ty[n];
    END LOOP;
    FOR n IN 1..coalesce(cardinality(k_t), 0) LOOP
        IF k_d[n] < 0 THEN
            UPDATE association_counts SET count = count + k_d[n]
            WHERE portal_id = p_portal AND object_type = k_t[n] AND object_id = k_i[n]
              AND category = k_c[n] AND type_id = k_ty[n];
        END IF;
    END LOOP;
    WITH added AS (
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
        DO UPDATE SET count = association_counts.count + EXCLUDED.count)
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
