//! The executors that call out: to a model provider (`llm`), a webhook (`http`), an MCP server
//! (`mcp`), a probe target (`probe`) or an external worker (`remote`), each set up under
//! `[executors]`.

pub mod http;
pub mod llm;
pub mod mcp;
pub mod probe;
pub mod remote;
