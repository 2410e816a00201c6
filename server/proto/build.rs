//! Compiles the .proto files beside this script with protox (pure Rust: no system protoc needed).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "mvccpb/kv.proto",
        "authpb/auth.proto",
        "etcdserverpb/rpc.proto",
        "v3lockpb/v3lock.proto",
        "v3electionpb/v3election.proto",
        "grpc/health/v1/health.proto",
        "rustedpb/peer.proto",
        "rustedpb/proposal.proto",
    ];
    for dir in ["mvccpb", "authpb", "etcdserverpb", "v3lockpb", "v3electionpb", "grpc", "rustedpb"]
    {
        println!("cargo:rerun-if-changed={dir}");
    }
    let fds = protox::compile(files, ["."])?;
    // serde for the JSON gateway, with grpc-gateway's mapping as etcd configures it: original
    // (snake_case) field names, 64-bit integers as strings, bytes as base64, enums by name,
    // zero values omitted; unknown request fields ignored.
    let descriptors = prost::Message::encode_to_vec(&fds);
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".etcdserverpb", ".mvccpb", ".authpb", ".v3lockpb", ".v3electionpb"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::Codec1K")
        // Raft messages stay slices of the received frame: entries' data is parsed from them
        // without a copy (rust-protobuf's `bytes` support).
        .bytes(".rustedpb.RaftBatch.messages")
        .compile_fds(fds)?;
    Ok(())
}
