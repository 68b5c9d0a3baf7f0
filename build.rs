//! Compiles the protobuf contract with protox (no system protoc) and keeps the
//! descriptor set so the server can offer reflection.
use std::{env, fs, path::PathBuf};

use protox::prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // The migrations are embedded (sqlx::migrate!): a new one rebuilds.
    println!("cargo:rerun-if-changed=migrations");
    // Reflection describes what the server serves: not the plugin contract
    // (hooks.proto), which plugins implement and the server only calls.
    let served = protox::compile(["proto/associations/v1/associations.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?).join("associations_descriptor.bin");
    fs::write(&out, served.encode_to_vec())?;
    let descriptors = protox::compile(
        [
            "proto/associations/v1/associations.proto",
            "proto/associations/v1/hooks.proto",
        ],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
