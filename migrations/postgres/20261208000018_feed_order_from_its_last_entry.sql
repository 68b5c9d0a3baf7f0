-- Every write's feed order (association_change_order) read from the last
-- entry of the index of changes not numbered yet, whatever the statistics.
-- As max(ord) it was planned on estimates: statistics taken while a
-- portal's changes were all numbered (after a reader caught up) showed
-- `seq IS NULL` as nearly empty, and the planner read every unnumbered
-- change of the portal, through the index of numbered ones, to take their
-- maximum: 13 ms of a 25 ms batch write in the benchmark, 49 ms at 80,000
-- unnumbered changes, growing with the backlog. Now an ordered probe that
-- stops at one entry, and migrations 0019 to 0022 replace the numbered
-- indexes with ones that hold numbered entries only (a lookup by number,
-- `seq = / > / <=`, implies `seq IS NOT NULL`): they cannot serve
-- `seq IS NULL`, and an unnumbered change is indexed twice instead of
-- three times.
CREATE OR REPLACE FUNCTION association_change_order(p_portal BIGINT) RETURNS BIGINT
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((SELECT ord FROM association_changes
                     WHERE portal_id = p_portal AND seq IS NULL
                     ORDER BY ord DESC LIMIT 1), 0) + 1;
END
$$;
