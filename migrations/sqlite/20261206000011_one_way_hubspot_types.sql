-- Pairs whose one direction only HubSpot's official clients list (lead to
-- call 596, …; ONE_WAY in src/domain/builtin.rs, tests/type_ids.rs holds the
-- two equal) take HubSpot's id for that direction; the other direction
-- keeps the id the portal allocated. Until now both directions were
-- allocated. Labels and the admin change log stay as they are.
CREATE TABLE hubspot_one_way_types (
    from_object_type TEXT    NOT NULL,
    to_object_type   TEXT    NOT NULL,
    type_id          INTEGER NOT NULL
);
INSERT INTO hubspot_one_way_types (from_object_type, to_object_type, type_id) VALUES
        ('0-101', '0-69', 393),
        ('0-136', '0-48', 596),
        ('0-136', '0-49', 598),
        ('0-136', '0-47', 600),
        ('0-136', '0-18', 602),
        ('0-136', '0-27', 646),
        ('0-123', '0-27', 726),
        ('0-142', '0-27', 728),
        ('0-136', '0-46', 854),
        ('0-53', '0-5', 986),
        ('0-19', '0-142', 1157);

-- The allocated type of each listed direction, per portal.
CREATE TABLE one_way_moves (
    portal_id   BIGINT  NOT NULL,
    from_type   TEXT    NOT NULL,
    to_type     TEXT    NOT NULL,
    old_type_id INTEGER NOT NULL,
    new_type_id INTEGER NOT NULL
);
INSERT INTO one_way_moves (portal_id, from_type, to_type, old_type_id, new_type_id)
SELECT d.portal_id, d.from_object_type, d.to_object_type, d.type_id, n.type_id
  FROM association_definitions AS d
  JOIN hubspot_one_way_types AS n
    ON n.from_object_type = d.from_object_type AND n.to_object_type = d.to_object_type
 WHERE d.category = 1 AND d.type_id >= 1000000000;

UPDATE association_definitions AS d SET inverse_type_id = m.new_type_id
  FROM one_way_moves AS m
 WHERE d.portal_id = m.portal_id AND d.category = 1 AND d.from_object_type = m.to_type
   AND d.to_object_type = m.from_type AND d.inverse_type_id = m.old_type_id;
UPDATE association_definitions AS d SET type_id = m.new_type_id
  FROM one_way_moves AS m
 WHERE d.portal_id = m.portal_id AND d.category = 1 AND d.type_id = m.old_type_id;
UPDATE associations AS a SET type_id = m.new_type_id
  FROM one_way_moves AS m
 WHERE a.portal_id = m.portal_id AND a.category = 1 AND a.type_id = m.old_type_id;
UPDATE association_counts AS c SET type_id = m.new_type_id
  FROM one_way_moves AS m
 WHERE c.portal_id = m.portal_id AND c.category = 1 AND c.type_id = m.old_type_id;
UPDATE association_limits AS l SET type_id = m.new_type_id
  FROM one_way_moves AS m
 WHERE l.portal_id = m.portal_id AND l.category = 1 AND l.type_id = m.old_type_id;
UPDATE association_changes AS f SET type_id = m.new_type_id
  FROM one_way_moves AS m
 WHERE f.portal_id = m.portal_id AND f.category = 1 AND f.type_id = m.old_type_id;
DROP TABLE one_way_moves;
DROP TABLE hubspot_one_way_types;
