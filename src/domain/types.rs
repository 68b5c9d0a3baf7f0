//! Association types: categories, keys, definitions, and the catalog of
//! every type between a pair of object types.
use std::fmt;
use std::sync::Arc;

use super::builtin::builtin_definitions;
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

/// Every association type between two object types, both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairCatalog {
    pub a: ObjectType,
    pub b: ObjectType,
    /// Shared, so a read hands a row's type on without copying its texts.
    defs: Vec<Arc<TypeDef>>,
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
        let defs = defs.into_iter().map(Arc::new).collect();
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
        self.all().filter(move |d| d.from == from && d.to == to)
    }

    /// The definition of `key` in the direction `from -> to`.
    pub fn get(&self, from: ObjectType, to: ObjectType, key: TypeKey) -> Option<&TypeDef> {
        self.shared(from, to, key).map(|d| &**d)
    }

    /// `get`, as a shared definition (a clone costs no copy of its texts).
    pub fn shared(&self, from: ObjectType, to: ObjectType, key: TypeKey) -> Option<&Arc<TypeDef>> {
        self.defs
            .iter()
            .find(|d| d.from == from && d.to == to && d.key == key)
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
    pub fn all(&self) -> impl Iterator<Item = &TypeDef> + Clone {
        self.defs.iter().map(|d| &**d)
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
            .ok_or_else(|| DomainError::UnknownTypeName {
                name: text.to_string(),
                from,
                to,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::builtin::{allocated_unlabeled, has_builtin_unlabeled};

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
            1_000_001_001
        );
    }
}
