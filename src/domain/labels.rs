//! Association labels: the rules for their text and names, the definitions a
//! new label gets, finding a label of a pair, and what a rename changes.
use super::error::DomainError;
use super::object_type::ObjectType;
use super::types::{Category, PairCatalog, TypeDef, TypeKey, TypeRole};

/// How many type ids a new label needs: a symmetric label on a same-object
/// pair is its own inverse; everything else has one id per direction.
pub fn label_ids_needed(from: ObjectType, to: ObjectType, inverse_label: Option<&str>) -> i32 {
    if from == to && inverse_label.is_none() {
        1
    } else {
        2
    }
}

/// A label's text, trimmed: 1 to 100 characters, none of them control,
/// format, line- or paragraph-separator characters (Unicode Cc, Cf, Zl,
/// Zp: a NUL cannot be stored in PostgreSQL text, line breaks would forge
/// log lines, and bidi overrides such as U+202E would show another text
/// than the one stored) — the one home of this rule.
pub fn label_text(label: &str) -> Result<&str, DomainError> {
    let label = label.trim();
    if label.is_empty() || label.len() > 100 {
        return Err(DomainError::InvalidArgument(
            "label must be 1 to 100 characters".into(),
        ));
    }
    if let Some(bad) = label.chars().find(|c| unprintable(*c)) {
        return Err(DomainError::InvalidArgument(format!(
            "label must not contain control, format or separator characters (U+{:04X})",
            bad as u32
        )));
    }
    Ok(label)
}

/// Whether `c` is a control, format, line- or paragraph-separator character.
fn unprintable(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
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
        Some(inverse) => Some(label_text(inverse)?),
        None => None,
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
            Some(inv) => (inv.to_string(), machine_name(inv)),
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

/// Most admin labels one pair of object types may have in a portal
/// (HubSpot's quota on its higher tiers; a label and its inverse are one).
pub const MAX_LABELS_PER_PAIR: usize = 50;

/// The admin labels between `a` and `b`, in either direction, each once
/// (by its lower-numbered direction).
pub fn labels_of_pair<'a>(
    defs: impl IntoIterator<Item = &'a TypeDef>,
    a: ObjectType,
    b: ObjectType,
) -> Vec<&'a TypeDef> {
    defs.into_iter()
        .filter(|d| {
            d.role == TypeRole::Label
                && ((d.from, d.to) == (a, b) || (d.from, d.to) == (b, a))
                && d.key.type_id <= d.inverse.type_id
        })
        .collect()
}

/// A new label fits only while the pair has fewer than `MAX_LABELS_PER_PAIR`.
pub fn check_label_quota(
    existing: &[TypeDef],
    from: ObjectType,
    to: ObjectType,
) -> Result<(), DomainError> {
    if labels_of_pair(existing, from, to).len() >= MAX_LABELS_PER_PAIR {
        return Err(DomainError::LabelQuotaReached {
            from,
            to,
            limit: MAX_LABELS_PER_PAIR,
        });
    }
    Ok(())
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

/// The machine name a label's text gets when none is given (an inverse
/// label's, a label an import creates): lower-case letters and digits, each
/// run of anything else one `_`, at most 100 characters, `label` when
/// nothing is left — always a name `new_label_definitions` accepts.
pub fn machine_name(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let name: String = out.trim_matches('_').chars().take(100).collect();
    match name.trim_end_matches('_') {
        "" => "label".to_string(),
        name => name.to_string(),
    }
}

/// An admin label of the pair by its type id (either direction).
pub fn find_label(
    catalog: &PairCatalog,
    from: ObjectType,
    to: ObjectType,
    type_id: i32,
) -> Result<TypeDef, DomainError> {
    catalog
        .all()
        .find(|d| {
            d.key.type_id == type_id
                && d.key.category != Category::HubspotDefined
                && d.role == TypeRole::Label
        })
        .cloned()
        .ok_or(DomainError::LabelNotFound { type_id, from, to })
}

/// A label's definitions: its direction, and its inverse if distinct.
pub fn label_directions(catalog: &PairCatalog, def: &TypeDef) -> Vec<TypeDef> {
    catalog
        .all()
        .filter(|d| d.key == def.key || d.key == def.inverse)
        .cloned()
        .collect()
}

/// What renaming label `def` to `label` (and its inverse to `inverse_label`)
/// changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rename {
    /// The label's text, checked and trimmed.
    pub label: String,
    /// The inverse direction's new text, if it changes.
    pub inverse_label: Option<String>,
    /// The label's definitions before and after.
    pub before: Vec<TypeDef>,
    pub after: Vec<TypeDef>,
}

/// Plans a rename: a symmetric cross-object label keeps one text in both
/// directions; a blank inverse text leaves the inverse as it is.
pub fn rename_label(
    catalog: &PairCatalog,
    def: &TypeDef,
    label: &str,
    inverse_label: Option<&str>,
) -> Result<Rename, DomainError> {
    let label = label_text(label)?;
    let inverse_label = inverse_label.map(str::trim).filter(|l| !l.is_empty());
    let symmetric = catalog
        .all()
        .any(|d| d.key == def.inverse && d.key != def.key && d.label == def.label);
    let inverse_label = inverse_label.or(if symmetric { Some(label) } else { None });
    let before = label_directions(catalog, def);
    let after = before
        .iter()
        .map(|d| {
            let text = if d.key == def.key {
                Some(label)
            } else {
                inverse_label
            };
            TypeDef {
                label: text.map(str::to_string).or(d.label.clone()),
                ..d.clone()
            }
        })
        .collect();
    Ok(Rename {
        label: label.to_string(),
        inverse_label: inverse_label.map(str::to_string),
        before,
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_name_is_always_one_the_name_rule_accepts() {
        assert_eq!(machine_name("Primary Contact!"), "primary_contact");
        assert_eq!(machine_name("  Décideur -- Final "), "d_cideur_final");
        assert_eq!(machine_name("!!!"), "label");
        assert_eq!(machine_name(""), "label");
        assert_eq!(machine_name(&"ab".repeat(80)).len(), 100);
        assert_eq!(
            machine_name(&format!("{}!x", "a".repeat(99))),
            "a".repeat(99)
        );
        let (contact, company) = (ObjectType::CONTACT, ObjectType::COMPANY);
        for inverse in ["!!!", "Works at", &"X".repeat(100)] {
            let defs =
                new_label_definitions(contact, company, "Employer", "employer", Some(inverse), 1)
                    .expect("an inverse label's derived name is valid");
            let derived = &defs[1].name;
            assert!(!derived.is_empty() && derived.len() <= 100, "{derived:?}");
            assert_eq!(*derived, machine_name(inverse));
        }
    }

    #[test]
    fn labels_refuse_control_format_and_separator_characters() {
        for bad in [
            "a\u{0}b",
            "a\nb",
            "a\u{7f}b",
            "evil\u{202e}txt",
            "a\u{200b}b",
            "a\u{2028}b",
            "a\u{2029}b",
            "a\u{feff}b",
            "a\u{2066}b",
        ] {
            assert!(label_text(bad).is_err(), "{bad:?} is refused");
        }
        for good in ["Manager", "Décideur", "社長", "a b", "Ünïcödé 😀"] {
            assert_eq!(label_text(good).unwrap(), good);
        }
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

    #[test]
    fn renaming_a_symmetric_cross_object_label_renames_both_directions() {
        let (contact, company) = (ObjectType::CONTACT, ObjectType::COMPANY);
        let stored =
            new_label_definitions(contact, company, "Billing", "billing", None, 1000).unwrap();
        let catalog = PairCatalog::new(contact, company, stored).unwrap();
        let def = find_label(&catalog, contact, company, 1000).unwrap();
        let rename = rename_label(&catalog, &def, "  Invoices ", None).unwrap();
        assert_eq!(rename.label, "Invoices");
        assert_eq!(rename.inverse_label.as_deref(), Some("Invoices"));
        assert!(rename
            .after
            .iter()
            .all(|d| d.label.as_deref() == Some("Invoices")));
        assert_eq!(rename.before.len(), 2);
        assert!(rename_label(&catalog, &def, " ", None).is_err());
        assert!(matches!(
            find_label(&catalog, contact, company, 279),
            Err(DomainError::LabelNotFound { .. })
        ));
    }
}
