//! cadre's built-in executors: the work tier-2 workers run (diagnostics, offline text, code,
//! image, audio and chart work, composition of sub-tasks, and the executors that call out),
//! and the `[executors]` config section that sets up the ones that call out. The runtime they
//! plug into (the `Executor` trait, the worker, the registry type) is `cadre-agents`.
//!
//! Layer: 2.
//! May import: cadre-agents, cadre-proto.
//!
//! [`builtin`] and [`configured`] fill an `ExecutorRegistry` with them; [`ExecutorsConfig`] is
//! the `[executors]` section. Each executor, with the task type and worker kind it is meant to
//! be routed to:
//!
//! | name             | module                        | suggested task type (worker kind)                  | what it does |
//! |------------------|-------------------------------|----------------------------------------------------|--------------|
//! | `echo`           | `system::echo`                | `system.debug.echo` (monitor)                      | returns its params (diagnostics) |
//! | `sleep`          | `system::sleep`               | `system.debug.sleep` (monitor)                     | sleeps `ms` with progress, honours cancel (diagnostics) |
//! | `fail`           | `system::fail`                | `system.debug.fail` (monitor)                      | fails with a message, retryable or not (diagnostics) |
//! | `panic`          | `system::panic`               | `system.debug.panic` (monitor)                     | panics, killing its worker (diagnostics) |
//! | `delegate`       | `composition::delegate`       | `system.debug.delegate` (monitor)                  | runs a sub-task and returns its result (diagnostics) |
//! | `summarize`      | `text::summarize`             | `intelligence.text.summarize` (writer)             | extractive summary of `text` |
//! | `keywords`       | `text::keywords`              | `intelligence.text.keywords` (analytics)           | most frequent words of `text` that are not stop words |
//! | `language`       | `text::language`              | `intelligence.text.language` (analytics)           | en/de/fr/es/it/pt/nl with a confidence |
//! | `readability`    | `text::readability`           | `intelligence.text.readability` (analytics)        | Flesch reading ease and Flesch–Kincaid grade |
//! | `sentiment`      | `text::sentiment`             | `intelligence.text.sentiment` (analytics)          | lexicon score -1..1 with negation |
//! | `code_metrics`   | `text::code_metrics`          | `intelligence.code.metrics` (coder)                | line classes, language, cyclomatic complexity |
//! | `describe_image` | `composition::describe_image` | `intelligence.research.describe_image` (research)  | a sentence about an image, from a delegated `multimodal.vision.analyze` |
//! | `image_analyze`  | `media::image_analyze`        | `multimodal.vision.analyze` (vision)               | PNG/JPEG size, colours, brightness, perceptual hash |
//! | `thumbnail`      | `media::thumbnail`            | `multimodal.vision.thumbnail` (vision)             | PNG/JPEG scaled to fit `max_side`, as a base64 PNG |
//! | `audio_analyze`  | `media::audio_analyze`        | `multimodal.audio.analyze` (audio)                 | WAV duration, loudness in dBFS, silent stretches; MP3 duration and bitrate |
//! | `llm`            | `calls::llm`                  | `intelligence.llm.chat` (writer)                   | a chat with an OpenAI-compatible or Anthropic model, with fallbacks, usage, cache, JSON replies, tool calls |
//! | `chart`          | `media::chart`                | `multimodal.artist.chart` (artist)                 | bar or line chart of a series, as a base64 PNG |
//! | `fuse`           | `composition::fuse`           | `multimodal.fusion.combine` (fusion)               | runs up to 16 sub-tasks, 4 at a time, and combines their results |
//! | `probe`          | `calls::probe`                | `system.health.probe` (health)                     | HTTP/TCP/NATS health probe of an allow-listed target (configured: `[executors.health]`) |
//! | `exec`           | `system::exec`                | `system.exec.run` (exec: its own pool)             | an allow-listed command with time, memory, output and network limits |
//! | `http`           | `calls::http`                 | `system.http.call` (monitor)                       | a configured webhook with retries and a circuit breaker |
//! | `mcp`            | `calls::mcp`                  | `system.mcp.call` (monitor)                        | calls a tool on a configured external MCP server (stdio or streamable HTTP) |
//! | `remote`         | `calls::remote`               | any type the operator routes to it                 | runs the task on an external worker connected over gRPC |
//!
//! `llm`, `probe`, `exec`, `http`, `mcp` and `remote` call out (to a server or a command, set up
//! under `[executors]`); the rest work offline. The ones that decode or scan input run it on the
//! blocking pool ([`support::blocking::run_blocking`]) and stop at the next checkpoint when the
//! task is cancelled.
//!
//! Layout: one folder per family ([`text`], [`media`], [`calls`], [`system`],
//! [`composition`]), each file named after the executor it holds; [`codecs`] and [`support`]
//! hold what several executors share; [`registry`] registers them all and [`config`] is the
//! config section.
#![forbid(unsafe_code)]

pub mod calls;
pub mod codecs;
pub mod composition;
pub mod config;
pub mod media;
pub mod registry;
pub mod support;
pub mod system;
pub mod text;

pub use calls::remote::{self, RegisterError, RemoteHub, WorkerSession};
pub use config::ExecutorsConfig;
pub use registry::{builtin, configured};
