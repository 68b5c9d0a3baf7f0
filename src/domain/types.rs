//! Association types: categories, HubSpot's built-in definitions with their
//! published ids and inverses, and the catalog of every type between a pair
//! of object types.
use std::fmt;

use super::error::DomainError;
use super::object_type::ObjectType;

/// Who defined an association type.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Category {
    HubspotDefined = 1,
    UserDefined = 2,
    IntegratorDefined = 3,
}

impl Category {
    /// The stored and wire code (1, 2, 3).
    pub fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i64) -> Option<Category> {
        match code {
            1 => Some(Category::HubspotDefined),
            2 => Some(Category::UserDefined),
            3 => Some(Category::IntegratorDefined),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::HubspotDefined => "HUBSPOT_DEFINED",
            Category::UserDefined => "USER_DEFINED",
            Category::IntegratorDefined => "INTEGRATOR_DEFINED",
        }
    }

    pub fn parse(name: &str) -> Option<Category> {
        match name.to_ascii_uppercase().as_str() {
            "HUBSPOT_DEFINED" => Some(Category::HubspotDefined),
            "USER_DEFINED" => Some(Category::UserDefined),
            "INTEGRATOR_DEFINED" => Some(Category::IntegratorDefined),
            _ => None,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one association type: `(category, typeId)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeKey {
    pub category: Category,
    pub type_id: i32,
}

impl TypeKey {
    /// Admin labels (USER_ or INTEGRATOR_DEFINED) can be deleted; HubSpot's
    /// types and the unlabeled types a portal allocates never are.
    pub fn is_deletable(&self) -> bool {
        self.category != Category::HubspotDefined
    }

    pub const fn hubspot(type_id: i32) -> TypeKey {
        TypeKey {
            category: Category::HubspotDefined,
            type_id,
        }
    }
}

/// What a type means for the domain rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeRole {
    /// The default type every association between two records has.
    Unlabeled,
    /// "This company is the record's primary company" (record -> company).
    Primary,
    /// The company side of a primary association (company -> record).
    PrimaryInverse,
    /// Any other labelled type (HubSpot-defined or admin-created).
    Label,
}

/// One direction of an association type definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeDef {
    pub key: TypeKey,
    pub inverse: TypeKey,
    pub from: ObjectType,
    pub to: ObjectType,
    pub label: Option<String>,
    pub name: String,
    pub role: TypeRole,
}

/// The first type id a portal allocates for its own definitions.
pub const FIRST_PORTAL_TYPE_ID: i32 = 1000;

use ObjectType as O;
/// HubSpot-defined pairs: (a, b, a->b id, b->a id, role of a->b, label a->b, label b->a).
const BUILTIN: &[(O, O, i32, i32, TypeRole, Option<&str>, Option<&str>)] = &[
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

/// How many type ids a new label needs: a symmetric label on a same-object
/// pair is its own inverse; everything else has one id per direction.
pub fn label_ids_needed(from: ObjectType, to: ObjectType, inverse_label: Option<&str>) -> i32 {
    if from == to && inverse_label.is_none() {
        1
    } else {
        2
    }
}

/// A label's text, trimmed: 1 to 100 characters (the one home of this rule).
pub fn label_text(label: &str) -> Result<&str, DomainError> {
    let label = label.trim();
    if label.is_empty() || label.len() > 100 {
        return Err(DomainError::InvalidArgument(
            "label must be 1 to 100 characters".into(),
        ));
    }
    Ok(label)
}

/// Builds the definitions of a new admin label from its allocated ids.
pub fn new_label_definitions(
    from: ObjectType,
    to: ObjectType,
    label: &str,
    name: &str,
    inverse_label: Option<&str>,
    first_id: i32,
) -> Result<Vec<TypeDef>, DomainError> {
    let label = label_text(label)?;
    let name = name.trim();
    if name.is_empty()
        || name.len() > 100
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(DomainError::InvalidArgument(
            "name must be 1 to 100 characters of letters, digits and '_'".into(),
        ));
    }
    let inverse_label = match inverse_label.map(str::trim) {
        Some("") => {
            return Err(DomainError::InvalidArgument(
                "inverseLabel must not be empty".into(),
            ))
        }
        other => other,
    };
    let needed = label_ids_needed(from, to, inverse_label);
    let inverse_id = first_id + needed - 1;
    let key = |id| TypeKey {
        category: Category::UserDefined,
        type_id: id,
    };
    let mut defs = vec![TypeDef {
        key: key(first_id),
        inverse: key(inverse_id),
        from,
        to,
        label: Some(label.to_string()),
        name: name.to_string(),
        role: TypeRole::Label,
    }];
    if needed == 2 {
        let (inverse_label, inverse_name) = match inverse_label {
            Some(inv) => (inv.to_string(), snake_case(inv)),
            None => (label.to_string(), name.to_string()),
        };
        defs.push(TypeDef {
            key: key(inverse_id),
            inverse: key(first_id),
            from: to,
            to: from,
            label: Some(inverse_label),
            name: inverse_name,
            role: TypeRole::Label,
        });
    }
    Ok(defs)
}

/// A label's text is unique per pair direction within a portal.
pub fn check_labels_unique(existing: &[TypeDef], new: &[TypeDef]) -> Result<(), DomainError> {
    let clash = existing.iter().find(|e| {
        new.iter()
            .any(|d| (d.from, d.to) == (e.from, e.to) && d.label.is_some() && d.label == e.label)
    });
    match clash {
        Some(e) => Err(DomainError::LabelExists(
            e.label.clone().unwrap_or_default(),
        )),
        None => Ok(()),
    }
}

fn snake_case(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// Every association type between two object types, both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairCatalog {
    pub a: ObjectType,
    pub b: ObjectType,
    defs: Vec<TypeDef>,
}

impl PairCatalog {
    /// Combines the built-in types with the portal's stored ones (labels and
    /// allocated unlabeled types). Fails if the pair has no unlabeled type.
    pub fn new(
        a: ObjectType,
        b: ObjectType,
        stored: Vec<TypeDef>,
    ) -> Result<PairCatalog, DomainError> {
        let mut defs = builtin_definitions(a, b);
        if a != b {
            defs.extend(builtin_definitions(b, a));
        }
        defs.extend(
            stored
                .into_iter()
                .filter(|d| (d.from, d.to) == (a, b) || (d.from, d.to) == (b, a)),
        );
        let catalog = PairCatalog { a, b, defs };
        for (from, to) in [(a, b), (b, a)] {
            if !catalog
                .directed(from, to)
                .any(|d| d.role == TypeRole::Unlabeled)
            {
                return Err(DomainError::Internal(format!(
                    "no unlabeled type between {from} and {to}"
                )));
            }
        }
        Ok(catalog)
    }

    /// Types going from `from` to `to`, built-in first, by category then id.
    pub fn directed(&self, from: ObjectType, to: ObjectType) -> impl Iterator<Item = &TypeDef> {
        self.defs
            .iter()
            .filter(move |d| d.from == from && d.to == to)
    }

    /// The definition of `key` in the direction `from -> to`.
    pub fn get(&self, from: ObjectType, to: ObjectType, key: TypeKey) -> Option<&TypeDef> {
        self.directed(from, to).find(|d| d.key == key)
    }

    /// Like `get`, but an unknown type is a validation error.
    pub fn require(
        &self,
        from: ObjectType,
        to: ObjectType,
        key: TypeKey,
    ) -> Result<&TypeDef, DomainError> {
        self.get(from, to, key)
            .ok_or(DomainError::UnknownAssociationType { key, from, to })
    }

    /// The unlabeled type of the direction `from -> to`.
    pub fn unlabeled(&self, from: ObjectType, to: ObjectType) -> &TypeDef {
        self.directed(from, to)
            .find(|d| d.role == TypeRole::Unlabeled)
            .expect("checked in PairCatalog::new")
    }

    /// The primary type of the direction `from -> to`, if the pair has one.
    pub fn primary(&self, from: ObjectType, to: ObjectType) -> Option<&TypeDef> {
        self.directed(from, to)
            .find(|d| d.role == TypeRole::Primary)
    }

    /// Every definition, both directions.
    pub fn all(&self) -> &[TypeDef] {
        &self.defs
    }

    /// The type of `from -> to` named by a v3 type string: its machine name
    /// (any case, e.g. `contact_to_company`) or its numeric type id.
    pub fn named(
        &self,
        from: ObjectType,
        to: ObjectType,
        text: &str,
    ) -> Result<&TypeDef, DomainError> {
        let text = text.trim();
        let by_id = text.parse::<i32>().ok();
        self.directed(from, to)
            .find(|d| Some(d.key.type_id) == by_id || d.name.eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                DomainError::InvalidArgument(format!(
                    "Unknown association type '{text}' from {from} to {to}: use a name or id from GET /crm/v3/associations/{from}/{to}/types"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pairs_have_published_ids_and_inverses() {
        let catalog = PairCatalog::new(ObjectType::CONTACT, ObjectType::COMPANY, vec![]).unwrap();
        let unlabeled = catalog.unlabeled(ObjectType::CONTACT, ObjectType::COMPANY);
        assert_eq!(
            (unlabeled.key.type_id, unlabeled.inverse.type_id),
            (279, 280)
        );
        assert_eq!(unlabeled.name, "contact_to_company_unlabeled");
        let primary = catalog
            .primary(ObjectType::CONTACT, ObjectType::COMPANY)
            .unwrap();
        assert_eq!(
            (primary.key.type_id, primary.name.as_str()),
            (1, "contact_to_company")
        );
        let back = catalog
            .get(
                ObjectType::COMPANY,
                ObjectType::CONTACT,
                TypeKey::hubspot(2),
            )
            .unwrap();
        assert_eq!(back.role, TypeRole::PrimaryInverse);
        let tickets = PairCatalog::new(ObjectType::COMPANY, ObjectType::TICKET, vec![]).unwrap();
        assert_eq!(
            tickets
                .primary(ObjectType::TICKET, ObjectType::COMPANY)
                .unwrap()
                .key
                .type_id,
            26
        );
        let deals = PairCatalog::new(ObjectType::DEAL, ObjectType::CONTACT, vec![]).unwrap();
        assert_eq!(
            deals.unlabeled(ObjectType::CONTACT, ObjectType::DEAL).name,
            "contact_to_deal"
        );
        let same = PairCatalog::new(ObjectType::CONTACT, ObjectType::CONTACT, vec![]).unwrap();
        let u = same.unlabeled(ObjectType::CONTACT, ObjectType::CONTACT);
        assert_eq!((u.key.type_id, u.inverse.type_id), (449, 449));
    }

    #[test]
    fn custom_pairs_need_an_allocated_unlabeled_type() {
        let custom = ObjectType::parse("2-7").unwrap();
        assert!(!has_builtin_unlabeled(ObjectType::CONTACT, custom));
        assert!(PairCatalog::new(ObjectType::CONTACT, custom, vec![]).is_err());
        let defs = allocated_unlabeled(ObjectType::CONTACT, custom, 1000);
        let catalog = PairCatalog::new(custom, ObjectType::CONTACT, defs).unwrap();
        assert_eq!(
            catalog.unlabeled(custom, ObjectType::CONTACT).key.type_id,
            1001
        );
    }

    #[test]
    fn labels_get_one_id_when_symmetric_on_one_object_type() {
        let sym = new_label_definitions(
            ObjectType::CONTACT,
            ObjectType::CONTACT,
            "Friend",
            "friend",
            None,
            1000,
        )
        .unwrap();
        assert_eq!(sym.len(), 1);
        assert_eq!(sym[0].key, sym[0].inverse);
        let paired = new_label_definitions(
            ObjectType::CONTACT,
            ObjectType::CONTACT,
            "Manager",
            "manager",
            Some("Employee"),
            1000,
        )
        .unwrap();
        assert_eq!(paired.len(), 2);
        assert_eq!(paired[1].label.as_deref(), Some("Employee"));
        assert_eq!(paired[1].name, "employee");
        let cross = new_label_definitions(
            ObjectType::CONTACT,
            ObjectType::COMPANY,
            "Billing",
            "billing",
            None,
            1000,
        )
        .unwrap();
        assert_eq!(cross.len(), 2);
        assert_eq!(cross[1].label.as_deref(), Some("Billing"));
        assert!(
            new_label_definitions(ObjectType::CONTACT, ObjectType::COMPANY, "", "x", None, 1)
                .is_err()
        );
        assert!(new_label_definitions(
            ObjectType::CONTACT,
            ObjectType::COMPANY,
            "X",
            "bad name",
            None,
            1
        )
        .is_err());
    }
}
