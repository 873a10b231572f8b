//! Generates the Rust types of proto/telltale/v1/*.proto (protoc from the
//! `protobuf-compiler` package, or $PROTOC).

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new().compile_protos(&["proto/telltale/v1/events.proto"], &["proto"])?;
    Ok(())
}
