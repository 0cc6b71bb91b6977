//! Generates the tonic/prost code for proto/cadre/v1 with a vendored protoc, plus the file
//! descriptor set that server reflection serves.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut cfg = tonic_prost_build::Config::new();
    cfg.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let files = [
        "cadre/v1/task.proto",
        "cadre/v1/admin.proto",
        "cadre/v1/peer.proto",
        "cadre/v1/worker.proto",
        "cadre/v1/workflow.proto",
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("cadre_descriptor.bin"))
        .compile_with_config(cfg, &files, &["."])?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
