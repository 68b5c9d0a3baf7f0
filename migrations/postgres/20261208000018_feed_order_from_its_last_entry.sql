-- Every write's feed order (association_change_order) read from the last
-- entry of the index of changes not numbered yet, whatever the statistics.
-- As max(ord) it was planned on estimates: statistics taken while a
-- portal's changes were all numbered (after a reader caught up) showed
-- `seq IS NULL` as nearly empty, and the planner read every unnumbered
-- change of the portal, through the index of numbered ones, to take their
-- maximum: 13 ms of a 25 ms batch write in the benchmark, 49 ms at 80,000
-- unnumbered changes, growing with the backlog. Now an ordered probe that
-- stops at one entry, and the numbered indexes hold numbered entries only
-- (a lookup by number, `seq = / > / <=`, implies `seq IS NOT NULL`), so
-- they cannot serve `seq IS NULL` and an unnumbered change is indexed
-- twice instead of three times.
CREATE OR REPLACE FUNCTION association_change_order(p_portal BIGINT) RETURNS BIGINT
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((SELECT ord FROM association_changes
                     WHERE portal_id = p_portal AND seq IS NULL
                     ORDER BY ord DESC LIMIT 1), 0) + 1;
END
$$;

DROP INDEX association_changes_by_seq;
CREATE UNIQUE INDEX association_changes_by_seq ON association_changes (portal_id, seq)
    WHERE seq IS NOT NULL;
DROP INDEX admin_changes_by_seq;
CREATE UNIQUE INDEX admin_changes_by_seq ON admin_changes (portal_id, seq)
    WHERE seq IS NOT NULL;
