//! The configuration file and the tokens file are written by hand: loading
//! any text as either never panics, and a refusal is an error that says
//! so (never a half-loaded configuration).
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use association_service::auth::{Authenticator, CredentialSources};
use association_service::config::Settings;
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("config-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, text)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let file = scratch().join("settings.toml");
        std::fs::write(&file, text).expect("the settings file");
        if let Err(err) = Settings::load(Some(&file)) {
            assert!(!err.to_string().is_empty());
        }
    } else {
        let file = scratch().join("tokens.toml");
        std::fs::write(&file, text).expect("the tokens file");
        let sources = CredentialSources {
            tokens_file: Some(file),
            reload_interval: Duration::from_secs(3600),
            ..CredentialSources::default()
        };
        match Authenticator::from_sources(&sources) {
            Ok(auth) => assert!(!auth.is_open()),
            Err(reason) => assert!(!reason.is_empty()),
        }
    }
});
