//! Step 1 of the writer task: collecting the next batch from the queue, at most `batch_max`
//! writes, a group sent with [`super::Writer::write_together`] never split.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::request::Request;

/// What the writer task has taken off its queue and not yet put in a batch.
pub(super) struct Inbox {
    /// Most writes in one batch (`store.batch_max`).
    batch_max: usize,
    /// Where the queue is drained into, then moved to `waiting`.
    received: Vec<Request>,
    /// Requests received, in order, that no batch has taken yet.
    waiting: VecDeque<Request>,
}

impl Inbox {
    /// An empty inbox for batches of at most `batch_max` writes.
    pub(super) fn new(batch_max: usize) -> Self {
        Inbox {
            batch_max,
            received: Vec::with_capacity(batch_max),
            waiting: VecDeque::with_capacity(batch_max),
        }
    }

    /// Fills the empty `batch` with the next writes. Only when none is waiting does it drain
    /// the queue (up to `batch_max` requests, waiting for the first one). False once the queue
    /// is closed and drained: the writer stops.
    pub(super) async fn collect(
        &mut self,
        rx: &mut mpsc::Receiver<Request>,
        batch: &mut Vec<Request>,
    ) -> bool {
        if self.waiting.is_empty() {
            if rx.recv_many(&mut self.received, self.batch_max).await == 0 {
                return false;
            }
            self.waiting.extend(self.received.drain(..));
        }
        self.fill(batch);
        true
    }

    /// Adds to the (not empty) `batch` of a retry what was queued meanwhile, without waiting:
    /// at most `batch_max` requests are taken off the queue, and a group still joins whole or
    /// waits for the next batch.
    pub(super) fn top_up(&mut self, rx: &mut mpsc::Receiver<Request>, batch: &mut Vec<Request>) {
        while self.waiting.len() < self.batch_max {
            match rx.try_recv() {
                Ok(req) => self.waiting.push_back(req),
                Err(_) => break,
            }
        }
        self.fill(batch);
    }

    /// Moves waiting requests into `batch`, in order. A group sent with `write_together` is one
    /// request here; its writes join the batch together, so they commit (or fail) together. A
    /// group that would take the batch past `batch_max` waits for the next one, and so does
    /// everything received after it; the first request always joins, so a group larger than
    /// `batch_max` is committed alone.
    fn fill(&mut self, batch: &mut Vec<Request>) {
        while let Some(req) = self.waiting.front() {
            if !batch.is_empty() && batch.len() + 1 + req.with.len() > self.batch_max {
                break;
            }
            let Some(mut req) = self.waiting.pop_front() else {
                break;
            };
            let with = std::mem::take(&mut req.with);
            batch.push(req);
            batch.extend(with);
        }
    }
}

#[cfg(test)]
mod tests {
    use cadre_proto::TaskId;
    use cadre_store::WriteOp;

    use super::*;

    /// A fire-and-forget progress write whose message names it.
    fn write(name: &str) -> Request {
        let op = WriteOp::Progress {
            task_id: TaskId::new(),
            attempt: 1,
            fraction: 0.5,
            message: name.into(),
        };
        Request::new(Some(op), None)
    }

    /// A group sent with `write_together`: the first write carries the others.
    fn group(names: &[&str]) -> Request {
        let mut first = write(names[0]);
        first.with = names[1..].iter().map(|n| write(n)).collect();
        first
    }

    fn names(batch: &[Request]) -> Vec<String> {
        batch
            .iter()
            .map(|r| match &r.op {
                Some(WriteOp::Progress { message, .. }) => message.clone(),
                _ => "?".into(),
            })
            .collect()
    }

    /// Sends `requests`, then closes the queue; returns the batches collected, by their names.
    async fn batches(batch_max: usize, requests: Vec<Request>) -> Vec<Vec<String>> {
        let (tx, mut rx) = mpsc::channel(64);
        for r in requests {
            tx.send(r).await.unwrap();
        }
        drop(tx);
        let (mut inbox, mut batch, mut out) = (Inbox::new(batch_max), Vec::new(), Vec::new());
        while inbox.collect(&mut rx, &mut batch).await {
            assert!(!batch.is_empty(), "a collected batch holds at least one write");
            out.push(names(&batch));
            batch.clear();
        }
        out
    }

    #[tokio::test]
    async fn batches_hold_at_most_batch_max_writes_in_order() {
        let got = batches(2, ["a", "b", "c", "d", "e"].map(write).into()).await;
        assert_eq!(got, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
    }

    #[tokio::test]
    async fn a_group_is_never_split_and_what_follows_it_waits() {
        let got = batches(3, vec![write("a"), group(&["g1", "g2", "g3"]), write("b")]).await;
        assert_eq!(got, [vec!["a"], vec!["g1", "g2", "g3"], vec!["b"]]);
        let got = batches(4, vec![write("a"), group(&["g1", "g2"]), write("b"), write("c")]).await;
        assert_eq!(got, [vec!["a", "g1", "g2", "b"], vec!["c"]]);
    }

    #[tokio::test]
    async fn a_group_larger_than_batch_max_is_committed_alone() {
        let got = batches(2, vec![write("a"), group(&["g1", "g2", "g3"]), write("b")]).await;
        assert_eq!(got, [vec!["a"], vec!["g1", "g2", "g3"], vec!["b"]]);
    }

    #[tokio::test]
    async fn a_retried_batch_is_topped_up_with_what_was_queued_meanwhile() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut inbox = Inbox::new(4);
        let mut batch = vec![write("kept")];
        inbox.top_up(&mut rx, &mut batch);
        assert_eq!(names(&batch), ["kept"], "nothing queued: nothing added, no wait");
        for r in [write("a"), group(&["g1", "g2", "g3"]), write("b")] {
            tx.send(r).await.unwrap();
        }
        inbox.top_up(&mut rx, &mut batch);
        assert_eq!(
            names(&batch),
            ["kept", "a"],
            "the group would pass batch_max: it waits"
        );
        batch.clear();
        assert!(inbox.collect(&mut rx, &mut batch).await);
        assert_eq!(
            names(&batch),
            ["g1", "g2", "g3", "b"],
            "what waited comes next, in order"
        );
    }

    #[tokio::test]
    async fn the_queue_is_drained_before_the_writer_stops() {
        let (tx, mut rx) = mpsc::channel(8);
        let (mut inbox, mut batch) = (Inbox::new(1), Vec::new());
        tx.send(write("a")).await.unwrap();
        tx.send(write("b")).await.unwrap();
        drop(tx);
        assert!(inbox.collect(&mut rx, &mut batch).await);
        assert_eq!(names(&batch), ["a"]);
        batch.clear();
        assert!(inbox.collect(&mut rx, &mut batch).await);
        assert_eq!(names(&batch), ["b"]);
        batch.clear();
        assert!(!inbox.collect(&mut rx, &mut batch).await, "closed and drained");
        assert!(batch.is_empty());
    }
}
