//! Generates the tonic/prost code for proto/cadre/v1 with a vendored protoc, plus the file
//! descriptor set that server reflection serves. Two passes: the messages and the servers,
//! whose codec answers an undecodable request with INVALID_ARGUMENT (`src/codec.rs`); then the
//! clients alone (messages taken from the first pass), on tonic's own codec.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let files = [
        "cadre/v1/task.proto",
        "cadre/v1/admin.proto",
        "cadre/v1/peer.proto",
        "cadre/v1/worker.proto",
        "cadre/v1/workflow.proto",
        "cadre/v1/schedule.proto",
    ];
    let config = || -> Result<tonic_prost_build::Config, Box<dyn std::error::Error>> {
        let mut cfg = tonic_prost_build::Config::new();
        cfg.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
        Ok(cfg)
    };
    tonic_prost_build::configure()
        .build_client(false)
        .codec_path("crate::codec::RequestCodec")
        .file_descriptor_set_path(out.join("cadre_descriptor.bin"))
        .compile_with_config(config()?, &files, &["."])?;
    let clients = out.join("clients");
    std::fs::create_dir_all(&clients)?;
    tonic_prost_build::configure()
        .build_server(false)
        .out_dir(&clients)
        .extern_path(".cadre.v1", "crate::v1")
        .compile_with_config(config()?, &files, &["."])?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
