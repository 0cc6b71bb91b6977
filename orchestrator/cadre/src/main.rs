//! The `cadre` binary: see [`cadre::cli`].
#![forbid(unsafe_code)]

/// mimalloc rather than glibc's malloc: the node allocates many small, short-lived buffers per
/// task (gRPC frames, JSON, SQL rows), and glibc's allocator was a large share of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `cadre tasks | head` closes stdout early; Rust's print macros then panic with "Broken
    // pipe". Exit quietly the way a shell tool does (128 + SIGPIPE) instead of printing a panic.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    std::process::exit(cadre::cli::main_entry());
}
