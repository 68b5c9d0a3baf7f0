//! Object types come from paths and bodies: parsing any text never panics,
//! and a parsed type's text parses back to the same type.
#![no_main]
use association_service::domain::ObjectType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(parsed) = ObjectType::parse(&text) {
        let again = ObjectType::parse(&parsed.to_string()).expect("a type's own text parses");
        assert_eq!(again, parsed);
    }
});
