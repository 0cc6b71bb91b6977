//! The README's example: submit and wait, then submit and follow the events
//! (`cargo run -p cadre-client --example quickstart` against a running node, with CADRE_TOKEN set).

use cadre_client::{Client, Error, TaskRequest, v1};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::builder("http://127.0.0.1:50051")
        .token(std::env::var("CADRE_TOKEN").ok())
        .connect()
        .await?;

    // Submit and wait for the result.
    let task = client
        .submit_and_wait(TaskRequest::new("system.debug.echo", &json!({"text": "hi"}))?)
        .await?;
    println!("{} -> {}", task.id, task.result_json);

    // Submit, then follow its events (resumes by itself if the connection drops).
    let submitted = client
        .submit(TaskRequest::new("system.debug.sleep", &json!({"ms": 500}))?.idempotency_key("demo-1"))
        .await?;
    let mut events = client.watch_task(&submitted.task.id);
    while let Some(e) = events.next().await {
        let e = e?;
        println!("#{} {:?} {}", e.seq, v1::TaskState::try_from(e.state), e.message);
    }
    Ok(())
}
