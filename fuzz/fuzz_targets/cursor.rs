//! Resume cursors come from callers: decoding any text never panics, a
//! cursor decodes only for the portal and request it was made for, and one
//! the service made decodes back to its position.
#![no_main]
use association_service::service::cursor::CursorCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = CursorCodec::new(b"fuzz-secret");
    let (portal, text) = match data.split_first() {
        Some((first, rest)) => (i64::from(*first), String::from_utf8_lossy(rest)),
        None => (0, "".into()),
    };
    // Whatever a caller sends.
    let _ = codec.decode::<serde_json::Value>(&text, portal, "request");
    // What the service sends: the text as a position.
    let made = codec.encode(portal, "request", &text);
    let back: String = codec.decode(&made, portal, "request").expect("own cursor");
    assert_eq!(back, text);
    assert!(codec
        .decode::<String>(&made, portal + 1, "request")
        .is_err());
    assert!(codec.decode::<String>(&made, portal, "other").is_err());
});
