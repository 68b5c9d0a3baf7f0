//! HubSpot's built-in association types: the published ids, inverses,
//! labels and machine names of every HubSpot-defined pair, and the unlabeled
//! type a portal allocates for pairs without one.
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

/// Definitions of a portal-allocated unlabeled type for a pair without a
/// built-in one: one self-inverse id for a same-object pair, two otherwise.
pub fn allocated_unlabeled(a: ObjectType, b: ObjectType, first_id: i32) -> Vec<TypeDef> {
    let name =
        |f: ObjectType, t: ObjectType| format!("{}_to_{}", f.singular_name(), t.singular_name());
    let inverse_id = if a == b { first_id } else { first_id + 1 };
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
