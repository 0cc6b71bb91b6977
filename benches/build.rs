//! Generates the tonic/prost code for `proto/echo.proto` (the load generator's baseline echo
//! service) with a vendored protoc, exactly as the `cadre-proto` crate builds its contract.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = tonic_prost_build::Config::new();
    cfg.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let files = ["proto/echo.proto"];
    tonic_prost_build::configure().compile_with_config(cfg, &files, &["proto"])?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
