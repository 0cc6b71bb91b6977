//! `cadre-fake-llm`: the fake OpenAI-compatible server as a process, for tests that are not
//! written in Rust. `cadre-fake-llm --port 0` serves on a free port of 127.0.0.1 and prints
//! `listening on http://127.0.0.1:PORT/v1` as the first line of stdout; it serves until it is
//! interrupted or killed. Anthropic's Messages API is at `http://127.0.0.1:PORT/v1/messages`
//! (an `anthropic` provider's base URL is `http://127.0.0.1:PORT`).
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: cadre-fake-llm [--port PORT]   (0 or none: a free port)";

fn port(args: &[String]) -> Result<u16, String> {
    let mut port = 0;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = match a.as_str() {
            "--port" => it.next().ok_or("--port needs a value")?.as_str(),
            s if s.starts_with("--port=") => &s["--port=".len()..],
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        };
        port = value
            .parse()
            .map_err(|_| format!("--port: {value:?} is not a port"))?;
    }
    Ok(port)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match port(&args) {
        Ok(p) => p,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cadre-fake-llm: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = match cadre_fake_llm::Fake::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cadre-fake-llm: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "listening on {}", fake.base_url)
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    let _ = tokio::signal::ctrl_c().await;
    drop(fake);
    ExitCode::SUCCESS
}
