//! The SQLite disk filling up: the node's data dir is a small tmpfs; once a file fills it,
//! Submit is refused with a clear error (no panic, no task half-written under the refused
//! key), the node stays up, and when the space returns it takes tasks again and every
//! invariant holds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cadre_proto::v1;

use super::invariants::{Store, check};
use super::{all_succeeded, patience, report, rounds};
use crate::common::load::{Accepted, LoadOutcome};
use crate::common::*;

/// A tmpfs mounted for the test and unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `16m`) on `path`; panics saying why if it cannot.
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("the mount command");
        assert!(
            out.status.success(),
            "this scenario mounts a {size} tmpfs as the node's data dir, and the mount was refused \
             (it needs root or CAP_SYS_ADMIN; CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Writes `path` until the filesystem is full; returns the bytes written.
fn fill(path: &Path) -> usize {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 64 << 10];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => return written,
            Ok(n) => written += n,
            Err(e) if e.raw_os_error() == Some(28) => return written,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

/// A keyed echo task.
fn keyed(key: &str) -> v1::SubmitRequest {
    let mut s = spec("system.debug.echo", &format!("{{\"key\": {key:?}}}"));
    s.idempotency_key = key.into();
    v1::SubmitRequest { spec: Some(s) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_disk_filling_up_refuses_submits_cleanly_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let _fs = Tmpfs::mount(&data, "24m");
    let node = TestNode::start_in(tmp.path(), "").await;
    let mut c = node.tasks().await;
    let mut outcome = LoadOutcome::default();
    let mut n = 0;
    // One disk-full episode per round, on one node: each must end once the space is back (a
    // connection SQLite rolled back by itself must not be reused: "database is locked").
    for round in 0..rounds() {
        for _ in 0..50 {
            let key = format!("disk-{n}");
            n += 1;
            let t = c.submit(keyed(&key)).await.expect("submit with space left");
            outcome.accepted.push(Accepted::new(key, t.into_inner()));
        }
        let filler = data.join("filler");
        let filled = fill(&filler);
        // Pages SQLite already holds may take a few more; then a submit is refused.
        let mut refused = None;
        for _ in 0..5_000 {
            let key = format!("disk-{n}");
            n += 1;
            match c.submit(keyed(&key)).await {
                Ok(t) => outcome.accepted.push(Accepted::new(key, t.into_inner())),
                Err(status) => {
                    refused = Some((key, status));
                    break;
                }
            }
        }
        let (key, status) = refused.expect("a submit is refused once the disk is full");
        eprintln!("chaos disk full (round {round}, {filled} bytes of filler): {status:?}");
        assert!(
            matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
            ),
            "a full disk is a server condition, said clearly: {status:?}"
        );
        assert_eq!(node.http_get("/health").await.0, 200, "the node stays up");
        std::fs::remove_file(&filler).unwrap();
        // Space is back: the refused key makes a new task (nothing was half-written under it).
        let t = eventually("submits accepted again", Duration::from_secs(30), || {
            let (mut c, req) = (c.clone(), keyed(&key));
            async move { c.submit(req).await.ok() }
        })
        .await
        .into_inner();
        assert!(t.created, "the refused submit left no task behind: {t:?}");
        outcome.accepted.push(Accepted::new(key, t));
    }
    let checked = check(&Store::Sqlite(node.db_path()), &data, &outcome, patience()).await;
    all_succeeded(&checked);
    report(
        "sqlite disk full",
        &format!("{} disk-full episodes", rounds()),
        &outcome,
        &checked,
    );
    assert!(
        node.stop().await.success(),
        "a clean stop after the disk was full"
    );
}
