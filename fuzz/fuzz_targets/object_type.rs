//! Object types come from paths and bodies: parsing any text never panics,
//! and a parsed type's text parses back to the same type; a custom object's
//! fully qualified name (`p{portalId}_{name}`) splits into a portal and a
//! name that rebuild a name splitting the same way.
#![no_main]
use association_service::domain::object_type::{
    custom_object_name, fully_qualified_name, split_fully_qualified,
};
use association_service::domain::ObjectType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(parsed) = ObjectType::parse(&text) {
        let again = ObjectType::parse(&parsed.to_string()).expect("a type's own text parses");
        assert_eq!(again, parsed);
    }
    if let Some((portal, name)) = split_fully_qualified(&text) {
        assert!(portal > 0);
        assert_eq!(custom_object_name(&name).as_deref(), Ok(name.as_str()));
        let rebuilt = fully_qualified_name(portal, &name);
        assert_eq!(split_fully_qualified(&rebuilt), Some((portal, name)));
    }
});
