//! The `associations.v1` contract in Rust: the generated protobuf and tonic
//! code (servers and clients), its descriptor set, and the conversions
//! between its messages and the domain's types (`convert`; the service's
//! are the gRPC front end's). It sits below every user: the gRPC front end,
//! the remote admin plugins and the CLI's import and export.
tonic::include_proto!("associations.v1");

/// The encoded descriptor set, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/associations_descriptor.bin"));

pub mod convert;
