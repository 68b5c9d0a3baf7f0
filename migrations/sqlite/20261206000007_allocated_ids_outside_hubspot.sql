-- Ids the service allocates leave HubSpot's numeric space. Until now a pair
-- without a HubSpot-defined unlabeled type got HUBSPOT_DEFINED ids from the
-- portal's counter (1000 up), where HubSpot defines ids too (up to about
-- 1,200). From this version the allocated ids sit 1,000,000,000 above the
-- counter (ALLOCATED_UNLABELED_BASE in src/domain/builtin.rs), and the pairs
-- of the later standard objects whose types HubSpot defines take HubSpot's
-- ids. Labels (USER_DEFINED, a namespace of their own) keep their ids; the
-- admin change log keeps its history as it was written.

-- 1. Every allocated HUBSPOT_DEFINED id moves up by the base (no id is at
--    or above it yet, so no key collides on the way).
UPDATE association_definitions
   SET type_id = type_id + 1000000000, inverse_type_id = inverse_type_id + 1000000000
 WHERE category = 1 AND type_id >= 1000 AND type_id < 1000000000;
UPDATE associations SET type_id = type_id + 1000000000
 WHERE category = 1 AND type_id >= 1000 AND type_id < 1000000000;
UPDATE association_counts SET type_id = type_id + 1000000000
 WHERE category = 1 AND type_id >= 1000 AND type_id < 1000000000;
UPDATE association_limits SET type_id = type_id + 1000000000
 WHERE category = 1 AND type_id >= 1000 AND type_id < 1000000000;
UPDATE association_changes SET type_id = type_id + 1000000000
 WHERE category = 1 AND type_id >= 1000 AND type_id < 1000000000;

-- 2. The pairs HubSpot now defines an unlabeled type for (the built-in table
--    of src/domain/builtin.rs; tests/type_ids.rs holds the two equal): their
--    allocated type becomes HubSpot's, one id per direction.
CREATE TABLE hubspot_types_added (
    from_object_type TEXT    NOT NULL,
    to_object_type   TEXT    NOT NULL,
    type_id          INTEGER NOT NULL
);
INSERT INTO hubspot_types_added (from_object_type, to_object_type, type_id) VALUES
        ('0-18', '0-1', 81),
        ('0-1', '0-18', 82),
        ('0-18', '0-5', 83),
        ('0-5', '0-18', 84),
        ('0-18', '0-3', 85),
        ('0-3', '0-18', 86),
        ('0-18', '0-2', 87),
        ('0-2', '0-18', 88),
        ('0-1', '0-19', 97),
        ('0-19', '0-1', 98),
        ('0-5', '0-19', 99),
        ('0-19', '0-5', 100),
        ('0-53', '0-3', 175),
        ('0-3', '0-53', 176),
        ('0-53', '0-1', 177),
        ('0-1', '0-53', 178),
        ('0-53', '0-2', 179),
        ('0-2', '0-53', 180),
        ('0-69', '0-1', 295),
        ('0-1', '0-69', 296),
        ('0-69', '0-2', 297),
        ('0-2', '0-69', 298),
        ('0-69', '0-3', 299),
        ('0-3', '0-69', 300),
        ('0-69', '0-8', 301),
        ('0-8', '0-69', 302),
        ('0-69', '0-14', 303),
        ('0-14', '0-69', 304),
        ('0-101', '0-1', 387),
        ('0-1', '0-101', 388),
        ('0-101', '0-2', 389),
        ('0-2', '0-101', 390),
        ('0-101', '0-3', 391),
        ('0-3', '0-101', 392),
        ('0-101', '0-8', 395),
        ('0-8', '0-101', 396),
        ('0-101', '0-14', 397),
        ('0-14', '0-101', 398),
        ('0-48', '0-47', 399),
        ('0-47', '0-48', 400),
        ('0-53', '0-14', 407),
        ('0-14', '0-53', 408),
        ('0-53', '0-8', 409),
        ('0-8', '0-53', 410),
        ('0-116', '0-1', 453),
        ('0-1', '0-116', 454),
        ('0-116', '0-5', 455),
        ('0-5', '0-116', 456),
        ('0-116', '0-3', 457),
        ('0-3', '0-116', 458),
        ('0-116', '0-2', 459),
        ('0-2', '0-116', 460),
        ('0-123', '0-1', 507),
        ('0-1', '0-123', 508),
        ('0-123', '0-2', 509),
        ('0-2', '0-123', 510),
        ('0-3', '0-123', 511),
        ('0-123', '0-3', 512),
        ('0-123', '0-8', 513),
        ('0-8', '0-123', 514),
        ('0-69', '0-123', 515),
        ('0-123', '0-69', 516),
        ('0-53', '0-123', 517),
        ('0-123', '0-53', 518),
        ('0-123', '0-101', 523),
        ('0-101', '0-123', 524),
        ('0-123', '0-5', 525),
        ('0-5', '0-123', 526),
        ('0-53', '0-101', 541),
        ('0-101', '0-53', 542),
        ('0-142', '0-1', 586),
        ('0-1', '0-142', 587),
        ('0-142', '0-8', 590),
        ('0-8', '0-142', 591),
        ('0-142', '0-123', 592),
        ('0-123', '0-142', 593),
        ('0-136', '0-1', 608),
        ('0-1', '0-136', 609),
        ('0-136', '0-2', 610),
        ('0-2', '0-136', 611),
        ('0-53', '0-69', 622),
        ('0-69', '0-53', 623),
        ('0-123', '0-14', 730),
        ('0-14', '0-123', 731),
        ('0-142', '0-14', 732),
        ('0-14', '0-142', 733),
        ('0-162', '0-2', 792),
        ('0-2', '0-162', 793),
        ('0-162', '0-3', 794),
        ('0-3', '0-162', 795),
        ('0-162', '0-5', 796),
        ('0-5', '0-162', 797),
        ('0-162', '0-1', 798),
        ('0-1', '0-162', 799),
        ('0-162', '0-46', 836),
        ('0-46', '0-162', 837),
        ('0-162', '0-47', 838),
        ('0-47', '0-162', 839),
        ('0-162', '0-48', 840),
        ('0-48', '0-162', 841),
        ('0-162', '0-49', 842),
        ('0-49', '0-162', 843),
        ('0-162', '0-18', 846),
        ('0-18', '0-162', 847),
        ('0-162', '0-116', 848),
        ('0-116', '0-162', 849),
        ('0-162', '0-27', 852),
        ('0-27', '0-162', 853),
        ('0-410', '0-1', 860),
        ('0-1', '0-410', 861),
        ('0-410', '0-3', 862),
        ('0-3', '0-410', 863),
        ('0-410', '0-48', 866),
        ('0-48', '0-410', 867),
        ('0-410', '0-49', 870),
        ('0-49', '0-410', 871),
        ('0-410', '0-47', 872),
        ('0-47', '0-410', 873),
        ('0-410', '0-46', 874),
        ('0-46', '0-410', 875),
        ('0-410', '0-27', 876),
        ('0-27', '0-410', 877),
        ('0-410', '0-18', 878),
        ('0-18', '0-410', 879),
        ('0-410', '0-116', 880),
        ('0-116', '0-410', 881),
        ('0-420', '0-1', 882),
        ('0-1', '0-420', 883),
        ('0-420', '0-2', 884),
        ('0-2', '0-420', 885),
        ('0-420', '0-3', 886),
        ('0-3', '0-420', 887),
        ('0-420', '0-48', 890),
        ('0-48', '0-420', 891),
        ('0-420', '0-49', 894),
        ('0-49', '0-420', 895),
        ('0-420', '0-47', 896),
        ('0-47', '0-420', 897),
        ('0-420', '0-46', 898),
        ('0-46', '0-420', 899),
        ('0-420', '0-27', 900),
        ('0-27', '0-420', 901),
        ('0-420', '0-18', 902),
        ('0-18', '0-420', 903),
        ('0-420', '0-116', 904),
        ('0-116', '0-420', 905),
        ('0-421', '0-1', 906),
        ('0-1', '0-421', 907),
        ('0-421', '0-2', 908),
        ('0-2', '0-421', 909),
        ('0-421', '0-48', 912),
        ('0-48', '0-421', 913),
        ('0-421', '0-49', 916),
        ('0-49', '0-421', 917),
        ('0-421', '0-47', 918),
        ('0-47', '0-421', 919),
        ('0-421', '0-46', 920),
        ('0-46', '0-421', 921),
        ('0-421', '0-27', 922),
        ('0-27', '0-421', 923),
        ('0-421', '0-18', 924),
        ('0-18', '0-421', 925),
        ('0-421', '0-116', 926),
        ('0-116', '0-421', 927),
        ('0-19', '0-2', 928),
        ('0-2', '0-19', 929),
        ('0-410', '0-2', 938),
        ('0-2', '0-410', 939),
        ('0-410', '0-5', 940),
        ('0-5', '0-410', 941),
        ('0-420', '0-5', 942),
        ('0-5', '0-420', 943),
        ('0-421', '0-3', 944),
        ('0-3', '0-421', 945),
        ('0-421', '0-5', 946),
        ('0-5', '0-421', 947),
        ('0-19', '0-3', 984),
        ('0-3', '0-19', 985),
        ('0-69', '0-5', 1121),
        ('0-5', '0-69', 1122),
        ('0-19', '0-48', 1155),
        ('0-48', '0-19', 1156),
        ('0-19', '0-53', 1159),
        ('0-53', '0-19', 1160),
        ('0-19', '0-136', 1161),
        ('0-136', '0-19', 1162),
        ('0-19', '0-123', 1167),
        ('0-123', '0-19', 1168),
        ('0-19', '0-101', 1169),
        ('0-101', '0-19', 1170),
        ('0-19', '0-14', 1171),
        ('0-14', '0-19', 1172),
        ('0-19', '0-69', 1173),
        ('0-69', '0-19', 1174);

UPDATE association_counts AS c SET type_id = n.type_id
  FROM association_definitions AS d, hubspot_types_added AS n
 WHERE c.category = 1 AND c.type_id >= 1000000000
   AND d.portal_id = c.portal_id AND d.category = 1 AND d.type_id = c.type_id
   AND n.from_object_type = d.from_object_type AND n.to_object_type = d.to_object_type;
UPDATE associations AS a SET type_id = n.type_id
  FROM hubspot_types_added AS n
 WHERE a.category = 1 AND a.type_id >= 1000000000
   AND n.from_object_type = a.from_object_type AND n.to_object_type = a.to_object_type;
UPDATE association_limits AS l SET type_id = n.type_id
  FROM hubspot_types_added AS n
 WHERE l.category = 1 AND l.type_id >= 1000000000
   AND n.from_object_type = l.from_object_type AND n.to_object_type = l.to_object_type;
UPDATE association_changes AS f SET type_id = n.type_id
  FROM hubspot_types_added AS n
 WHERE f.category = 1 AND f.type_id >= 1000000000
   AND n.from_object_type = f.from_object_type AND n.to_object_type = f.to_object_type;
DELETE FROM association_definitions
 WHERE category = 1 AND type_id >= 1000000000
   AND (from_object_type, to_object_type) IN
       (SELECT from_object_type, to_object_type FROM hubspot_types_added);
DROP TABLE hubspot_types_added;
