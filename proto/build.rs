//! Generates the Rust types and tonic service code of
//! proto/telltale/v1/*.proto (protoc from the `protobuf-compiler` package, or
//! $PROTOC), plus the file descriptor set for server reflection.

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("telltale_descriptor.bin"))
        .compile_protos(&["proto/telltale/v1/events.proto", "proto/telltale/v1/api.proto"], &["proto"])?;
    Ok(())
}
