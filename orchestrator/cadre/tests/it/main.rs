//! Black-box tests: each starts the real `cadre` binary on port 0 with its own temp data dir
//! and talks to it over gRPC and HTTP sockets. All in one test binary so it links once.

mod api;
mod audit;
mod auth;
mod cli_watch;
mod clients;
mod common;
mod dashboard;
mod deploy;
mod distributed;
mod durability;
mod faces;
mod hostile;
mod http_tls;
mod lifecycle;
mod limits;
mod logs;
mod malformed;
mod observability;
mod openapi;
mod remote;
mod replicas;
mod rust_client;
mod scaling;
mod store;
mod supervision;
mod system_tasks;
mod tls;
mod traces;
mod types;
mod workflows;
mod ws_submit;
