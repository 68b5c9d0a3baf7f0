//! CRM object types: HubSpot's standard types by id and name, custom
//! object types (`2-<n>`), and the rule for custom objects' names
//! (`p{portalId}_{name}`, HubSpot's fully qualified form).
use std::fmt;

use super::error::DomainError;

/// A CRM object type, canonically written as HubSpot's object type id
/// (`0-1` contacts, `2-123` a custom object).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectType {
    prefix: u8,
    number: u64,
}

/// Standard object types: (number after `0-`, singular name, plural name).
const STANDARD: &[(u64, &str, &str)] = &[
    (1, "contact", "contacts"),
    (2, "company", "companies"),
    (3, "deal", "deals"),
    (5, "ticket", "tickets"),
    (7, "product", "products"),
    (8, "line_item", "line_items"),
    (14, "quote", "quotes"),
    (18, "communication", "communications"),
    (19, "feedback_submission", "feedback_submissions"),
    (27, "task", "tasks"),
    (46, "note", "notes"),
    (47, "meeting", "meetings"),
    (48, "call", "calls"),
    (49, "email", "emails"),
    (53, "invoice", "invoices"),
    (69, "subscription", "subscriptions"),
    (101, "payment", "payments"),
    (115, "user", "users"),
    (116, "postal_mail", "postal_mail"),
    (123, "order", "orders"),
    (136, "lead", "leads"),
    (142, "cart", "carts"),
    (162, "service", "services"),
    (410, "course", "courses"),
    (420, "listing", "listings"),
    (421, "appointment", "appointments"),
];

impl ObjectType {
    pub const CONTACT: ObjectType = ObjectType::standard(1);
    pub const COMPANY: ObjectType = ObjectType::standard(2);
    pub const DEAL: ObjectType = ObjectType::standard(3);
    pub const TICKET: ObjectType = ObjectType::standard(5);
    pub const LINE_ITEM: ObjectType = ObjectType::standard(8);
    pub const QUOTE: ObjectType = ObjectType::standard(14);
    pub const TASK: ObjectType = ObjectType::standard(27);
    pub const NOTE: ObjectType = ObjectType::standard(46);
    pub const MEETING: ObjectType = ObjectType::standard(47);
    pub const CALL: ObjectType = ObjectType::standard(48);
    pub const EMAIL: ObjectType = ObjectType::standard(49);
    pub const COMMUNICATION: ObjectType = ObjectType::standard(18);
    pub const FEEDBACK_SUBMISSION: ObjectType = ObjectType::standard(19);
    pub const INVOICE: ObjectType = ObjectType::standard(53);
    pub const SUBSCRIPTION: ObjectType = ObjectType::standard(69);
    pub const PAYMENT: ObjectType = ObjectType::standard(101);
    pub const POSTAL_MAIL: ObjectType = ObjectType::standard(116);
    pub const ORDER: ObjectType = ObjectType::standard(123);
    pub const LEAD: ObjectType = ObjectType::standard(136);
    pub const CART: ObjectType = ObjectType::standard(142);
    pub const SERVICE: ObjectType = ObjectType::standard(162);
    pub const COURSE: ObjectType = ObjectType::standard(410);
    pub const LISTING: ObjectType = ObjectType::standard(420);
    pub const APPOINTMENT: ObjectType = ObjectType::standard(421);

    const fn standard(number: u64) -> ObjectType {
        ObjectType { prefix: 0, number }
    }

    /// Parses an object type id (`0-1`, `2-123`) or a standard name
    /// (`contacts`, `Contact`, …), case-insensitively.
    pub fn parse(input: &str) -> Result<ObjectType, DomainError> {
        let unknown = || DomainError::UnknownObjectType(shown(input));
        let trimmed = input.trim();
        if let Some((prefix, number)) = trimmed.split_once('-') {
            let number: u64 = number.parse().map_err(|_| unknown())?;
            return match prefix {
                "0" if STANDARD.iter().any(|(n, _, _)| *n == number) => {
                    Ok(ObjectType::standard(number))
                }
                "2" if number > 0 && number <= i64::MAX as u64 => {
                    Ok(ObjectType { prefix: 2, number })
                }
                _ => Err(unknown()),
            };
        }
        let lower = trimmed.to_ascii_lowercase();
        STANDARD
            .iter()
            .find(|(_, singular, plural)| *singular == lower || *plural == lower)
            .map(|(n, _, _)| ObjectType::standard(*n))
            .ok_or_else(unknown)
    }

    /// The singular name used in v3 type names (`contact`), or the id for
    /// custom objects.
    pub fn singular_name(&self) -> String {
        match STANDARD
            .iter()
            .find(|(n, _, _)| self.prefix == 0 && *n == self.number)
        {
            Some((_, singular, _)) => singular.to_string(),
            None => self.to_string(),
        }
    }

    /// How people call one record and several of this type ("Contact",
    /// "Contacts"; "Line item"), or the id for custom objects.
    pub fn display_labels(&self) -> (String, String) {
        let capitalised = |name: &str| {
            let text = name.replace('_', " ");
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => text,
            }
        };
        match STANDARD
            .iter()
            .find(|(n, _, _)| self.prefix == 0 && *n == self.number)
        {
            Some((_, singular, plural)) => (capitalised(singular), capitalised(plural)),
            None => (self.to_string(), self.to_string()),
        }
    }

    /// True for the object types that have a primary company.
    pub fn has_primary_company(&self) -> bool {
        [ObjectType::CONTACT, ObjectType::DEAL, ObjectType::TICKET].contains(self)
    }
}

/// Most characters of a custom object's name.
pub const OBJECT_NAME_MOST: usize = 100;

impl ObjectType {
    /// True for custom object types (`2-<n>`), the only ones with names of
    /// a portal's own.
    pub fn is_custom(&self) -> bool {
        self.prefix == 2
    }
}

/// A custom object's name as HubSpot allows it (a letter, then letters,
/// digits and underscores; at most 100), in lower case: names are matched
/// without regard to case.
pub fn custom_object_name(name: &str) -> Result<String, DomainError> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_allowed = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !starts_with_letter || !rest_allowed || name.len() > OBJECT_NAME_MOST {
        return Err(DomainError::InvalidArgument(format!(
            "'{}' is not a custom object name: a letter, then letters, digits or underscores, at most {OBJECT_NAME_MOST}",
            shown(name)
        )));
    }
    Ok(name.to_ascii_lowercase())
}

/// A custom object's fully qualified name, `p{portalId}_{name}`.
pub fn fully_qualified_name(portal: i64, name: &str) -> String {
    format!("p{portal}_{name}")
}

/// The portal and name of a fully qualified custom object name
/// (`p123_cars`, any case), or `None` for any other text.
pub fn split_fully_qualified(text: &str) -> Option<(i64, String)> {
    let rest = text.strip_prefix(['p', 'P'])?;
    let (digits, name) = rest.split_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let portal: i64 = digits.parse().ok().filter(|p| *p > 0)?;
    custom_object_name(name).ok().map(|name| (portal, name))
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.prefix, self.number)
    }
}

/// Caller text as an error shows it: at most 64 characters as shown
/// (escapes included), control characters, quotes and backslashes escaped,
/// so an error message (and the log line and gRPC trailer it goes to) stays
/// short and one line.
pub fn shown(input: &str) -> String {
    bounded(input, 64, |c| c.escape_debug().collect())
}

/// `text` with each character as `show` writes it, up to `most` characters
/// written, then `…` when some are left out.
fn bounded(text: &str, most: usize, show: impl Fn(char) -> String) -> String {
    let mut out = String::with_capacity(text.len().min(most * 2));
    let mut written = 0;
    for c in text.chars() {
        let piece = show(c);
        let width = piece.chars().count();
        if written + width > most {
            out.push('…');
            break;
        }
        written += width;
        out.push_str(&piece);
    }
    out
}

/// Most characters of an error message as answered and logged.
pub const MESSAGE_MOST: usize = 1024;

/// Any text on its way out in an error (a message, a context value) as it
/// is answered and logged: control, line-separator and bidirectional
/// override characters escaped (text already `shown` is unchanged) and at
/// most `most` characters counted as they go out (escapes included), then
/// `…`, so whatever part of a request an error repeats stays bounded, one
/// line, and reads in the order it is stored.
pub fn one_line(text: &str, most: usize) -> String {
    bounded(text, most, |c| {
        let escaped = c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if escaped {
            c.escape_default().collect()
        } else {
            c.to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_goes_out_on_one_bounded_line() {
        assert_eq!(one_line("plain text", 64), "plain text");
        assert_eq!(
            one_line("a\nb\r\u{0}c\u{2028}", 64),
            "a\\nb\\r\\u{0}c\\u{2028}"
        );
        let long = "x".repeat(500_000);
        assert_eq!(one_line(&long, 100).chars().count(), 101);
        // The bound counts what goes out: escapes are not a way past it.
        let controls = "\u{1}".repeat(64);
        assert_eq!(one_line(&controls, 64), format!("{}…", "\\u{1}".repeat(12)));
        assert_eq!(one_line("\u{202e}txt", 64), "\\u{202e}txt");
        let already = shown("a\nb");
        assert_eq!(one_line(&already, 64), already);
    }

    #[test]
    fn parses_ids_and_names_in_any_case() {
        assert_eq!(ObjectType::parse("0-1").unwrap(), ObjectType::CONTACT);
        assert_eq!(ObjectType::parse("Contacts").unwrap(), ObjectType::CONTACT);
        assert_eq!(ObjectType::parse("company").unwrap(), ObjectType::COMPANY);
        assert_eq!(ObjectType::parse("2-123").unwrap().to_string(), "2-123");
        // HubSpot's further standard objects (../hubspot-api.md §8.6).
        for (id, name) in [
            ("0-421", "appointments"),
            ("0-410", "courses"),
            ("0-420", "listings"),
            ("0-162", "services"),
            ("0-123", "orders"),
            ("0-142", "carts"),
            ("0-69", "subscriptions"),
            ("0-101", "payments"),
            ("0-115", "users"),
        ] {
            let by_name = ObjectType::parse(name).unwrap();
            assert_eq!(by_name.to_string(), id, "{name}");
            assert_eq!(ObjectType::parse(id).unwrap(), by_name, "{id}");
            assert_eq!(format!("{}s", by_name.singular_name()), name);
        }
        for bad in ["", "0-4", "2-0", "2-x", "3-1", "people", "0-1-2"] {
            assert!(ObjectType::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn an_unknown_type_is_shown_short_and_on_one_line() {
        let long = "x".repeat(3_000);
        let message = ObjectType::parse(&long).unwrap_err().to_string();
        assert!(message.len() < 300, "{} characters", message.len());
        let forged = ObjectType::parse("deals\nINFO forged line")
            .unwrap_err()
            .to_string();
        assert!(!forged.contains('\n'), "{forged}");
        assert!(forged.contains("deals\\nINFO"), "{forged}");
    }

    #[test]
    fn custom_object_names_follow_hubspots_rule_in_any_case() {
        assert_eq!(custom_object_name("Cars").unwrap(), "cars");
        assert_eq!(custom_object_name("my_car_2").unwrap(), "my_car_2");
        for bad in [
            "",
            "2cars",
            "_cars",
            "car-s",
            "cär",
            "car s",
            &"x".repeat(101),
        ] {
            assert!(
                custom_object_name(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(custom_object_name(&"x".repeat(100)).is_ok());
        assert_eq!(fully_qualified_name(123, "cars"), "p123_cars");
        assert_eq!(
            split_fully_qualified("p123_cars"),
            Some((123, "cars".into()))
        );
        assert_eq!(
            split_fully_qualified("P123_My_Cars"),
            Some((123, "my_cars".into()))
        );
        for other in [
            "postal_mail",
            "p_cars",
            "p12x_cars",
            "p0_cars",
            "p123_",
            "p123_2x",
            "2-5",
            "p99999999999999999999_a",
        ] {
            assert_eq!(split_fully_qualified(other), None, "{other}");
        }
    }
}
