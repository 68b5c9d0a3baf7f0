//! HubSpot's built-in association types: the published ids, inverses,
//! labels and machine names of every HubSpot-defined pair, and the unlabeled
//! type a portal allocates for pairs without one (its ids outside HubSpot's
//! numeric space).
//!
//! Above 600 lines because most of it is data: HubSpot's table of built-in
//! pairs, one line each, as HubSpot publishes them.
use super::object_type::ObjectType;
use super::types::{TypeDef, TypeKey, TypeRole};

use ObjectType as O;
/// One HubSpot-defined pair: (a, b, a->b id, b->a id, role of a->b, label
/// a->b, label b->a).
type BuiltinPair = (
    O,
    O,
    i32,
    i32,
    TypeRole,
    Option<&'static str>,
    Option<&'static str>,
);

/// Every HubSpot-defined pair.
const BUILTIN: &[BuiltinPair] = &[
    (
        O::CONTACT,
        O::COMPANY,
        1,
        2,
        TypeRole::Primary,
        Some("Primary"),
        Some("Primary"),
    ),
    (
        O::CONTACT,
        O::COMPANY,
        279,
        280,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (O::DEAL, O::CONTACT, 3, 4, TypeRole::Unlabeled, None, None),
    (
        O::DEAL,
        O::COMPANY,
        5,
        6,
        TypeRole::Primary,
        Some("Primary"),
        Some("Primary"),
    ),
    (
        O::DEAL,
        O::COMPANY,
        341,
        342,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COMPANY,
        O::COMPANY,
        13,
        14,
        TypeRole::Label,
        Some("Child Company"),
        Some("Parent Company"),
    ),
    (
        O::CONTACT,
        O::TICKET,
        15,
        16,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::DEAL,
        O::LINE_ITEM,
        19,
        20,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::TICKET,
        O::COMPANY,
        26,
        25,
        TypeRole::Primary,
        Some("Primary"),
        Some("Primary"),
    ),
    (
        O::TICKET,
        O::COMPANY,
        339,
        340,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (O::DEAL, O::TICKET, 27, 28, TypeRole::Unlabeled, None, None),
    (O::DEAL, O::QUOTE, 63, 64, TypeRole::Unlabeled, None, None),
    (
        O::QUOTE,
        O::LINE_ITEM,
        67,
        68,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::QUOTE,
        O::CONTACT,
        69,
        70,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::QUOTE,
        O::COMPANY,
        71,
        72,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COMPANY,
        O::CALL,
        181,
        182,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COMPANY,
        O::EMAIL,
        185,
        186,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COMPANY,
        O::MEETING,
        187,
        188,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COMPANY,
        O::NOTE,
        189,
        190,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COMPANY,
        O::TASK,
        191,
        192,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::CONTACT,
        O::CALL,
        193,
        194,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::CONTACT,
        O::EMAIL,
        197,
        198,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::CONTACT,
        O::MEETING,
        199,
        200,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::CONTACT,
        O::NOTE,
        201,
        202,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::CONTACT,
        O::TASK,
        203,
        204,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (O::DEAL, O::CALL, 205, 206, TypeRole::Unlabeled, None, None),
    (O::DEAL, O::EMAIL, 209, 210, TypeRole::Unlabeled, None, None),
    (
        O::DEAL,
        O::MEETING,
        211,
        212,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (O::DEAL, O::NOTE, 213, 214, TypeRole::Unlabeled, None, None),
    (O::DEAL, O::TASK, 215, 216, TypeRole::Unlabeled, None, None),
    (
        O::TICKET,
        O::CALL,
        219,
        220,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::TICKET,
        O::EMAIL,
        223,
        224,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::TICKET,
        O::MEETING,
        225,
        226,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::TICKET,
        O::NOTE,
        227,
        228,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::TICKET,
        O::TASK,
        229,
        230,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::CONTACT,
        O::CONTACT,
        449,
        449,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COMPANY,
        O::COMPANY,
        450,
        450,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (O::DEAL, O::DEAL, 451, 451, TypeRole::Unlabeled, None, None),
    (
        O::TICKET,
        O::TICKET,
        452,
        452,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    // The later standard objects' pairs whose two directions HubSpot's
    // official clients list (their `AssociationType` enum).
    (
        O::COMMUNICATION,
        O::CONTACT,
        81,
        82,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COMMUNICATION,
        O::TICKET,
        83,
        84,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COMMUNICATION,
        O::DEAL,
        85,
        86,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COMMUNICATION,
        O::COMPANY,
        87,
        88,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::CONTACT,
        O::FEEDBACK_SUBMISSION,
        97,
        98,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::TICKET,
        O::FEEDBACK_SUBMISSION,
        99,
        100,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::INVOICE,
        O::DEAL,
        175,
        176,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::INVOICE,
        O::CONTACT,
        177,
        178,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::INVOICE,
        O::COMPANY,
        179,
        180,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SUBSCRIPTION,
        O::CONTACT,
        295,
        296,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SUBSCRIPTION,
        O::COMPANY,
        297,
        298,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SUBSCRIPTION,
        O::DEAL,
        299,
        300,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SUBSCRIPTION,
        O::LINE_ITEM,
        301,
        302,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SUBSCRIPTION,
        O::QUOTE,
        303,
        304,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::PAYMENT,
        O::CONTACT,
        387,
        388,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::PAYMENT,
        O::COMPANY,
        389,
        390,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::PAYMENT,
        O::DEAL,
        391,
        392,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::PAYMENT,
        O::LINE_ITEM,
        395,
        396,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::PAYMENT,
        O::QUOTE,
        397,
        398,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::CALL,
        O::MEETING,
        399,
        400,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::INVOICE,
        O::QUOTE,
        407,
        408,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::INVOICE,
        O::LINE_ITEM,
        409,
        410,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::POSTAL_MAIL,
        O::CONTACT,
        453,
        454,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::POSTAL_MAIL,
        O::TICKET,
        455,
        456,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::POSTAL_MAIL,
        O::DEAL,
        457,
        458,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::POSTAL_MAIL,
        O::COMPANY,
        459,
        460,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::ORDER,
        O::CONTACT,
        507,
        508,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::ORDER,
        O::COMPANY,
        509,
        510,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (O::DEAL, O::ORDER, 511, 512, TypeRole::Unlabeled, None, None),
    (
        O::ORDER,
        O::LINE_ITEM,
        513,
        514,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SUBSCRIPTION,
        O::ORDER,
        515,
        516,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::INVOICE,
        O::ORDER,
        517,
        518,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::ORDER,
        O::PAYMENT,
        523,
        524,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::ORDER,
        O::TICKET,
        525,
        526,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::INVOICE,
        O::PAYMENT,
        541,
        542,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::CART,
        O::CONTACT,
        586,
        587,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::CART,
        O::LINE_ITEM,
        590,
        591,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (O::CART, O::ORDER, 592, 593, TypeRole::Unlabeled, None, None),
    (
        O::LEAD,
        O::CONTACT,
        608,
        609,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LEAD,
        O::COMPANY,
        610,
        611,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::INVOICE,
        O::SUBSCRIPTION,
        622,
        623,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::ORDER,
        O::QUOTE,
        730,
        731,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (O::CART, O::QUOTE, 732, 733, TypeRole::Unlabeled, None, None),
    (
        O::SERVICE,
        O::COMPANY,
        792,
        793,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SERVICE,
        O::DEAL,
        794,
        795,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SERVICE,
        O::TICKET,
        796,
        797,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SERVICE,
        O::CONTACT,
        798,
        799,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SERVICE,
        O::NOTE,
        836,
        837,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SERVICE,
        O::MEETING,
        838,
        839,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SERVICE,
        O::CALL,
        840,
        841,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SERVICE,
        O::EMAIL,
        842,
        843,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SERVICE,
        O::COMMUNICATION,
        846,
        847,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SERVICE,
        O::POSTAL_MAIL,
        848,
        849,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SERVICE,
        O::TASK,
        852,
        853,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::CONTACT,
        860,
        861,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::DEAL,
        862,
        863,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::CALL,
        866,
        867,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::EMAIL,
        870,
        871,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::MEETING,
        872,
        873,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::NOTE,
        874,
        875,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::TASK,
        876,
        877,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::COMMUNICATION,
        878,
        879,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::POSTAL_MAIL,
        880,
        881,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::CONTACT,
        882,
        883,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::COMPANY,
        884,
        885,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::DEAL,
        886,
        887,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::CALL,
        890,
        891,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::EMAIL,
        894,
        895,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::MEETING,
        896,
        897,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::NOTE,
        898,
        899,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::TASK,
        900,
        901,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::COMMUNICATION,
        902,
        903,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::POSTAL_MAIL,
        904,
        905,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::CONTACT,
        906,
        907,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::COMPANY,
        908,
        909,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::CALL,
        912,
        913,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::EMAIL,
        916,
        917,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::MEETING,
        918,
        919,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::NOTE,
        920,
        921,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::TASK,
        922,
        923,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::COMMUNICATION,
        924,
        925,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::POSTAL_MAIL,
        926,
        927,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::FEEDBACK_SUBMISSION,
        O::COMPANY,
        928,
        929,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::COMPANY,
        938,
        939,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::COURSE,
        O::TICKET,
        940,
        941,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::LISTING,
        O::TICKET,
        942,
        943,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::DEAL,
        944,
        945,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::APPOINTMENT,
        O::TICKET,
        946,
        947,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::FEEDBACK_SUBMISSION,
        O::DEAL,
        984,
        985,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::SUBSCRIPTION,
        O::TICKET,
        1121,
        1122,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::FEEDBACK_SUBMISSION,
        O::CALL,
        1155,
        1156,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::FEEDBACK_SUBMISSION,
        O::INVOICE,
        1159,
        1160,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::FEEDBACK_SUBMISSION,
        O::LEAD,
        1161,
        1162,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::FEEDBACK_SUBMISSION,
        O::ORDER,
        1167,
        1168,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::FEEDBACK_SUBMISSION,
        O::PAYMENT,
        1169,
        1170,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::FEEDBACK_SUBMISSION,
        O::QUOTE,
        1171,
        1172,
        TypeRole::Unlabeled,
        None,
        None,
    ),
    (
        O::FEEDBACK_SUBMISSION,
        O::SUBSCRIPTION,
        1173,
        1174,
        TypeRole::Unlabeled,
        None,
        None,
    ),
];

fn inverse_role(role: TypeRole) -> TypeRole {
    match role {
        TypeRole::Primary => TypeRole::PrimaryInverse,
        TypeRole::PrimaryInverse => TypeRole::Primary,
        other => other,
    }
}

/// The v3 machine name of a HubSpot-defined type.
fn builtin_name(
    from: ObjectType,
    to: ObjectType,
    key: i32,
    role: TypeRole,
    pair_has_primary: bool,
) -> String {
    let base = format!("{}_to_{}", from.singular_name(), to.singular_name());
    match (role, key) {
        (_, 13) => "parent_to_child_company".to_string(),
        (_, 14) => "child_to_parent_company".to_string(),
        (TypeRole::Unlabeled, _) if pair_has_primary => format!("{base}_unlabeled"),
        _ => base,
    }
}

/// Every HubSpot-defined type from `from` to `to`.
pub fn builtin_definitions(from: ObjectType, to: ObjectType) -> Vec<TypeDef> {
    let pair_has_primary = BUILTIN.iter().any(|&(a, b, _, _, role, _, _)| {
        role == TypeRole::Primary && ((a, b) == (from, to) || (b, a) == (from, to))
    });
    let mut defs = Vec::new();
    for &(a, b, ab, ba, role, label_ab, label_ba) in BUILTIN {
        let mut push = |id: i32, inv: i32, role: TypeRole, label: Option<&str>| {
            defs.push(TypeDef {
                key: TypeKey::hubspot(id),
                inverse: TypeKey::hubspot(inv),
                from,
                to,
                label: label.map(str::to_string),
                name: builtin_name(from, to, id, role, pair_has_primary),
                role,
            })
        };
        if (a, b) == (from, to) {
            push(ab, ba, role, label_ab);
        }
        if (b, a) == (from, to) && ab != ba {
            push(ba, ab, inverse_role(role), label_ba);
        }
    }
    defs
}

/// True when the pair has a HubSpot-defined unlabeled type; other pairs get
/// one allocated per portal.
pub fn has_builtin_unlabeled(a: ObjectType, b: ObjectType) -> bool {
    builtin_definitions(a, b)
        .iter()
        .any(|d| d.role == TypeRole::Unlabeled)
}

/// Where the HUBSPOT_DEFINED ids a portal allocates begin: far above any id
/// HubSpot defines (its clients list ids up to about 1,200), so a type
/// HubSpot adds later never shares an id with one allocated here.
pub const ALLOCATED_UNLABELED_BASE: i32 = 1_000_000_000;

/// Pairs whose one direction only HubSpot's official clients list, as
/// (from, to, that direction's id): it takes HubSpot's id, the other
/// direction an allocated one. Cart to ticket and cart to feedback
/// submission are both listed as 594, so neither takes it.
pub const ONE_WAY: &[(ObjectType, ObjectType, i32)] = &[
    (O::PAYMENT, O::SUBSCRIPTION, 393),
    (O::LEAD, O::CALL, 596),
    (O::LEAD, O::EMAIL, 598),
    (O::LEAD, O::MEETING, 600),
    (O::LEAD, O::COMMUNICATION, 602),
    (O::LEAD, O::TASK, 646),
    (O::ORDER, O::TASK, 726),
    (O::CART, O::TASK, 728),
    (O::LEAD, O::NOTE, 854),
    (O::INVOICE, O::TICKET, 986),
    (O::FEEDBACK_SUBMISSION, O::CART, 1157),
];

/// HubSpot's id for `from` to `to` when only that direction is listed.
fn one_way_id(from: ObjectType, to: ObjectType) -> Option<i32> {
    ONE_WAY
        .iter()
        .find(|(f, t, _)| (*f, *t) == (from, to))
        .map(|(_, _, id)| *id)
}

/// How many ids of the portal's counter the pair's allocated unlabeled
/// type takes: one for a same-object pair or a pair HubSpot names one
/// direction of, two otherwise.
pub fn unlabeled_ids_needed(a: ObjectType, b: ObjectType) -> i32 {
    if a == b || one_way_id(a, b).is_some() || one_way_id(b, a).is_some() {
        1
    } else {
        2
    }
}

/// Definitions of a portal-allocated unlabeled type for a pair without a
/// built-in one, from the portal's type-id counter `counter` (which labels
/// draw from too): each allocated id `ALLOCATED_UNLABELED_BASE` above the
/// counter's value (`unlabeled_ids_needed` of them; a direction HubSpot
/// names keeps HubSpot's id).
pub fn allocated_unlabeled(a: ObjectType, b: ObjectType, counter: i32) -> Vec<TypeDef> {
    let name =
        |f: ObjectType, t: ObjectType| format!("{}_to_{}", f.singular_name(), t.singular_name());
    let allocated = ALLOCATED_UNLABELED_BASE + counter;
    let (first_id, inverse_id) = match (one_way_id(a, b), one_way_id(b, a)) {
        _ if a == b => (allocated, allocated),
        (Some(id), _) => (id, allocated),
        (None, Some(id)) => (allocated, id),
        (None, None) => (allocated, allocated + 1),
    };
    let mut defs = vec![TypeDef {
        key: TypeKey::hubspot(first_id),
        inverse: TypeKey::hubspot(inverse_id),
        from: a,
        to: b,
        label: None,
        name: name(a, b),
        role: TypeRole::Unlabeled,
    }];
    if a != b {
        defs.push(TypeDef {
            key: TypeKey::hubspot(inverse_id),
            inverse: TypeKey::hubspot(first_id),
            from: b,
            to: a,
            label: None,
            name: name(b, a),
            role: TypeRole::Unlabeled,
        });
    }
    defs
}

/// Every HubSpot-defined type of every pair, both directions.
pub fn every_builtin_definition() -> Vec<TypeDef> {
    let mut pairs: Vec<(ObjectType, ObjectType)> = Vec::new();
    for &(a, b, ..) in BUILTIN {
        for pair in [(a, b), (b, a)] {
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
    }
    pairs
        .into_iter()
        .flat_map(|(from, to)| builtin_definitions(from, to))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_hubspot_names_one_way_of_allocates_only_the_other() {
        let allocated = ALLOCATED_UNLABELED_BASE + 1000;
        let ids = |defs: Vec<TypeDef>| {
            defs.iter()
                .map(|d| (d.from, d.to, d.key.type_id, d.inverse.type_id))
                .collect::<Vec<_>>()
        };
        let (lead, call) = (O::LEAD, O::CALL);
        assert_eq!(unlabeled_ids_needed(lead, call), 1);
        assert_eq!(unlabeled_ids_needed(call, lead), 1);
        assert_eq!(
            ids(allocated_unlabeled(lead, call, 1000)),
            vec![(lead, call, 596, allocated), (call, lead, allocated, 596)]
        );
        assert_eq!(
            ids(allocated_unlabeled(call, lead, 1000)),
            vec![(call, lead, allocated, 596), (lead, call, 596, allocated)]
        );
        let custom = ObjectType::parse("2-5").unwrap();
        assert_eq!(unlabeled_ids_needed(O::CONTACT, custom), 2);
        assert_eq!(unlabeled_ids_needed(custom, custom), 1);
        // No one-way pair has a built-in type, and no id is listed twice.
        for &(from, to, id) in ONE_WAY {
            assert!(builtin_definitions(from, to).is_empty(), "{from} -> {to}");
            assert!(builtin_definitions(to, from).is_empty(), "{to} -> {from}");
            assert_eq!(ONE_WAY.iter().filter(|e| e.2 == id).count(), 1, "{id}");
        }
    }
}
