//! Compiles the protobuf contract with protox (no system protoc) and keeps the
//! descriptor set so the server can offer reflection.
use std::{env, fs, path::PathBuf};

use protox::prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/associations/v1/associations.proto",
        "proto/associations/v1/hooks.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?).join("associations_descriptor.bin");
    fs::write(&out, descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
