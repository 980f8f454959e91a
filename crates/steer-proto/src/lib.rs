//! Generated gRPC code for the `steer.v1` package.

pub mod codec;

#[allow(unreachable_pub, clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("steer.v1");
}

/// Encoded `FileDescriptorSet` of every `steer.v1` proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/steer_descriptor.bin"));
