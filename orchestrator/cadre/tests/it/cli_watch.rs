//! `cadre watch` and `cadre status --watch` as a user sees them: in a pseudo-terminal (util-linux
//! `script`) they draw progress bars and redraw the tree; piped, they print plain lines and
//! snapshots.

use std::process::Stdio;
use std::time::Duration;

use cadre_proto::v1;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::*;

/// The client flags that point `cadre` at `node` with its commander credential.
fn client_args(node: &TestNode) -> Vec<String> {
    vec![
        "--endpoint".into(),
        node.grpc.clone(),
        "--token".into(),
        node.credential(),
    ]
}

/// One shell word.
fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Runs `[prefix...] cadre <client flags> <args>` in a 120x40 pseudo-terminal; returns its exit
/// code and everything the terminal was sent. `prefix` wraps the command (e.g. `timeout`).
async fn in_terminal(node: &TestNode, prefix: &[&str], args: &[&str]) -> (Option<i32>, String) {
    let mut words: Vec<String> = prefix.iter().map(|w| quote(w)).collect();
    words.push(quote(env!("CARGO_BIN_EXE_cadre")));
    words.extend(client_args(node).iter().map(|a| quote(a)));
    words.extend(args.iter().map(|a| quote(a)));
    let line = format!("stty cols 120 rows 40; exec {}", words.join(" "));
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("script")
            .args(["-qfec", &line, "/dev/null"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the command finished in time")
    .expect("run script (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs `cadre <client flags> <args>` with stdout piped (not a terminal).
async fn piped(node: &TestNode, args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
            .args(client_args(node))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the command finished in time")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The last line the terminal was sent (lines end in `\r` or `\n`) that contains `needle`.
fn last_frame<'a>(screen: &'a str, needle: &str) -> &'a str {
    screen
        .rsplit(['\r', '\n'])
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{screen}"))
}

#[tokio::test]
async fn watch_draws_a_bar_that_reaches_the_terminal_state_in_a_terminal() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let sleeper = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 1500}"#)).await;

    let (code, screen) = in_terminal(&node, &[], &["watch", &sleeper.id]).await;
    assert_eq!(code, Some(0), "a task that succeeded exits 0:\n{screen}");
    assert!(screen.contains(&sleeper.id), "{screen}");
    assert!(screen.contains("\x1b["), "drawn with terminal escapes:\n{screen}");
    assert!(
        screen.contains("slept "),
        "progress messages on the bar:\n{screen}"
    );
    // The last frame: the full bar at 100% with the terminal state.
    let last = last_frame(&screen, "SUCCEEDED");
    assert!(last.contains("[==============================] 100%"), "{last:?}");
    assert!(
        last.contains("system.debug.sleep SUCCEEDED attempt 1"),
        "{last:?}"
    );

    let failing = submit(&mut c, spec("system.debug.fail", r#"{"retryable": false}"#)).await;
    let (code, screen) = in_terminal(&node, &[], &["watch", &failing.id]).await;
    assert_eq!(code, Some(2), "a task that did not succeed exits 2:\n{screen}");
    assert!(screen.contains("FAILED attempt 1: failed on purpose"), "{screen}");
}

#[tokio::test]
async fn watch_prints_plain_lines_without_a_terminal_or_with_plain() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let sleeper = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 300}"#)).await;

    let (code, out) = piped(&node, &["watch", &sleeper.id]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !out.contains('\x1b') && !out.contains('\r'),
        "no terminal control:\n{out:?}"
    );
    let lines: Vec<&str> = out.lines().collect();
    for line in &lines {
        assert!(
            line.contains(&format!("{} #", sleeper.id)),
            "one event per line: {line:?}"
        );
    }
    let states: Vec<&str> = lines.iter().filter_map(|l| l.split_whitespace().nth(3)).collect();
    assert_eq!(states.first(), Some(&"QUEUED"), "{out}");
    assert!(states.contains(&"RUNNING"), "{out}");
    assert_eq!(states.last(), Some(&"SUCCEEDED"), "{out}");
    assert!(out.contains("% slept "), "progress lines:\n{out}");

    let failing = submit(&mut c, spec("system.debug.fail", r#"{"retryable": false}"#)).await;
    let (code, out) = piped(&node, &["watch", &failing.id]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.lines().last().unwrap_or("").contains(" FAILED "), "{out}");

    // --plain on a terminal: the same lines, no bar.
    let (code, screen) = in_terminal(&node, &[], &["watch", "--plain", &sleeper.id]).await;
    assert_eq!(code, Some(0), "{screen}");
    assert!(!screen.contains('\x1b'), "{screen:?}");
    assert!(screen.contains(" SUCCEEDED "), "{screen}");
}

#[tokio::test]
async fn watching_a_filter_in_a_terminal_shows_a_bounded_board_and_stops_on_ctrl_c() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    for _ in 0..2 {
        run(&mut c, spec("system.debug.echo", "{}")).await;
    }
    let failed = run(&mut c, spec("system.debug.fail", r#"{"retryable": false}"#)).await;
    let mut sleepers = Vec::new();
    for _ in 0..4 {
        sleepers.push(
            submit(&mut c, spec("system.debug.sleep", r#"{"ms": 30000}"#))
                .await
                .id,
        );
    }
    // Unrelated to the filter: never on the board.
    submit(
        &mut c,
        spec("intelligence.text.language", r#"{"text": "hello there"}"#),
    )
    .await;

    // Ctrl-C (SIGINT) after 3 s; --preserve-status: the exit code is cadre's own.
    let (code, screen) = in_terminal(
        &node,
        &["timeout", "--preserve-status", "-s", "INT", "3"],
        &["watch", "--type", "system.debug.", "--max-active", "2"],
    )
    .await;
    assert_eq!(code, Some(0), "Ctrl-C ends a filter watch normally:\n{screen}");
    // The last summary frame: counts by state and the tasks without a bar.
    let summary = last_frame(&screen, "tasks of type system.debug.*:");
    assert!(summary.contains("4 unfinished ("), "{summary:?}");
    assert!(
        summary.contains("3 finished (2 succeeded, 1 failed)"),
        "{summary:?}"
    );
    assert!(summary.contains("+2 more"), "at most 2 bars: {summary:?}");
    // Finished tasks leave their final line above the board.
    assert!(
        screen.contains(&format!("{} #", failed.id)) && screen.contains(" FAILED "),
        "{screen}"
    );
    let with_bars = sleepers.iter().filter(|id| screen.contains(id.as_str())).count();
    assert_eq!(
        with_bars, 2,
        "only the first two unfinished tasks get a bar:\n{screen}"
    );

    for id in sleepers {
        let _ = c
            .cancel(v1::CancelRequest {
                id,
                reason: String::new(),
            })
            .await;
    }
}

#[tokio::test]
async fn status_watch_prints_fresh_snapshots_until_stopped() {
    let node = TestNode::start("").await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(client_args(&node))
        .args(["status", "--watch", "--interval-ms", "200"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut snapshots: Vec<String> = Vec::new();
    let mut scaled = false;
    // Snapshots until one shows the pool resized after the first: each one is fetched anew.
    let resized = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("--- status at ") {
                if snapshots
                    .last()
                    .is_some_and(|s| s.contains("health     size   5"))
                {
                    return true;
                }
                snapshots.push(String::new());
                if snapshots.len() == 2 && !scaled {
                    scaled = true;
                    node.admin()
                        .await
                        .scale(v1::ScaleRequest {
                            supervisor: "system".into(),
                            worker_kind: "health".into(),
                            replicas: 5,
                        })
                        .await
                        .unwrap();
                }
            } else if let Some(s) = snapshots.last_mut() {
                s.push_str(&line);
                s.push('\n');
            }
        }
        false
    })
    .await
    .expect("snapshots in time");
    child.kill().await.unwrap();
    assert!(
        resized,
        "a later snapshot shows the new pool size:\n{snapshots:#?}"
    );
    assert!(snapshots.len() >= 3, "{snapshots:#?}");
    let first = &snapshots[0];
    assert!(
        first.contains("supervisor intelligence") && first.contains("supervisor system"),
        "{first}"
    );
    assert!(
        first.contains("writer") && first.contains("health     size   2"),
        "{first}"
    );

    // On a terminal: the tree redrawn in place (cursor home) until Ctrl-C, exit 0.
    let (code, screen) = in_terminal(
        &node,
        &["timeout", "--preserve-status", "-s", "INT", "1.5"],
        &["status", "--watch", "--interval-ms", "200"],
    )
    .await;
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.matches("\x1b[H").count() >= 2,
        "redrawn at least twice:\n{screen:?}"
    );
    assert!(
        screen.contains("supervisor system") && screen.contains("health     size   5"),
        "{screen}"
    );
}
