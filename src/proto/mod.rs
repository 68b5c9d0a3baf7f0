//! The `associations.v1` contract in Rust: the generated protobuf and tonic
//! code (servers and clients), its descriptor set, and every conversion
//! between its messages and the domain and service types. It sits below
//! every user: the gRPC front end, the remote admin plugins and the CLI's
//! import and export.
tonic::include_proto!("associations.v1");

/// The encoded descriptor set, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/associations_descriptor.bin"));

pub mod convert;
