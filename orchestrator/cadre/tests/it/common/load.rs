//! Load that outlives faults: submitters that keep submitting tasks, each with its own
//! idempotency key, and retry a refused or lost submit with the same key until it is accepted
//! (as a careful client does), so a node killed between commit and reply makes no second task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cadre_proto::v1;

use super::{Tasks, eventually};

/// Makes the spec of a submitter's n-th task (its idempotency key is set by [`Load`]).
pub type SpecFn = Arc<dyn Fn(usize) -> v1::TaskSpec + Send + Sync>;

/// One accepted task: the key it was submitted with and the id the node answered.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub key: String,
    pub id: String,
    /// False when the key matched a task the node already held (a retried submit whose first
    /// try was committed although its answer was lost).
    pub created: bool,
}

impl Accepted {
    /// The accepted task of a Submit answer.
    pub fn new(key: String, resp: v1::SubmitResponse) -> Accepted {
        let id = resp.task.expect("an accepted task").id;
        Accepted {
            key,
            id,
            created: resp.created,
        }
    }
}

/// What a load run leaves: the accepted tasks, the keys still in doubt when it stopped (refused
/// or lost on every try; the node may or may not hold them) and how many submits failed.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    pub accepted: Vec<Accepted>,
    pub in_doubt: Vec<String>,
    pub refused: usize,
    /// The failed submits by gRPC code (or `timeout`).
    pub codes: BTreeMap<String, usize>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    refused: AtomicUsize,
    codes: Mutex<BTreeMap<String, usize>>,
    accepted: Mutex<Vec<Accepted>>,
    in_doubt: Mutex<Vec<String>>,
}

/// Submitters running in the background until [`Load::stop`].
pub struct Load {
    shared: Arc<Shared>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `workers` submitters on `c`; keys are `<tag>-<worker>-<n>`.
    pub fn start(c: &Tasks, workers: usize, tag: &str, make: SpecFn) -> Load {
        let shared = Arc::new(Shared::default());
        let handles = (0..workers)
            .map(|w| {
                let (c, shared, make) = (c.clone(), shared.clone(), make.clone());
                let prefix = format!("{tag}-{w}");
                tokio::spawn(submitter(c, shared, make, prefix))
            })
            .collect();
        Load { shared, handles }
    }

    /// How many tasks have been accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.lock().unwrap().len()
    }

    /// How many submits have failed so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` tasks have been accepted.
    pub async fn wait_accepted(&self, n: usize, patience: Duration) {
        eventually(&format!("{n} tasks accepted"), patience, || {
            let got = self.accepted();
            async move { (got >= n).then_some(()) }
        })
        .await
    }

    /// Waits until at least `n` more submits have failed (the fault is visible to clients).
    pub async fn wait_refused(&self, n: usize, patience: Duration) {
        let want = self.refused() + n;
        eventually(&format!("{n} submits refused"), patience, || {
            let got = self.refused();
            async move { (got >= want).then_some(()) }
        })
        .await
    }

    /// Stops every submitter (each finishes or gives up its current key) and returns what
    /// was accepted.
    pub async fn stop(self) -> LoadOutcome {
        self.shared.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            h.await.unwrap();
        }
        let accepted = std::mem::take(&mut *self.shared.accepted.lock().unwrap());
        let in_doubt = std::mem::take(&mut *self.shared.in_doubt.lock().unwrap());
        LoadOutcome {
            accepted,
            in_doubt,
            refused: self.shared.refused.load(Ordering::Relaxed),
            codes: std::mem::take(&mut *self.shared.codes.lock().unwrap()),
        }
    }
}

/// One submitter: a new key per task; a failed submit is retried with the same key until it is
/// accepted or the load stops (then the key is in doubt).
async fn submitter(mut c: Tasks, shared: Arc<Shared>, make: SpecFn, prefix: String) {
    let mut n = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let key = format!("{prefix}-{n}");
        let mut spec = make(n);
        spec.idempotency_key = key.clone();
        loop {
            let req = v1::SubmitRequest {
                spec: Some(spec.clone()),
            };
            match tokio::time::timeout(Duration::from_secs(10), c.submit(req)).await {
                Ok(Ok(resp)) => {
                    let accepted = Accepted::new(key, resp.into_inner());
                    shared.accepted.lock().unwrap().push(accepted);
                    break;
                }
                Ok(Err(status)) => {
                    assert_ne!(
                        status.code(),
                        tonic::Code::InvalidArgument,
                        "a fault is not the caller's mistake: {status:?}"
                    );
                    let code = format!("{:?}", status.code());
                    *shared.codes.lock().unwrap().entry(code).or_default() += 1;
                }
                Err(_) => *shared.codes.lock().unwrap().entry("timeout".into()).or_default() += 1,
            }
            shared.refused.fetch_add(1, Ordering::Relaxed);
            if shared.stop.load(Ordering::Relaxed) {
                shared.in_doubt.lock().unwrap().push(key);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n += 1;
    }
}
