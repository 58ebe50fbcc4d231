//! A child process appending to a real log is SIGKILLed mid-stream; the log reopens clean with everything acknowledged.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use synod_log::{GroupCommit, LogEvent, Options, ThreadPreallocate, Wal};
use synod_wire::LogRecord;

use crate::accept;

/// Set in the child: the directory it writes its log to.
const CHILD_DIR: &str = "SYNOD_LOG_SIGKILL_CHILD_DIR";
const TEST_NAME: &str = "sigkill::a_sigkilled_writer_loses_nothing_acknowledged";

fn options() -> Options {
    // Small segments, so the child also rotates (and preallocates in the background) while it is killed.
    Options::new().segment_size(64 << 10).preallocate(ThreadPreallocate)
}

/// The child: appends accepts for slots 0, 1, 2, ... forever, printing each token once it is durable.
fn run_writer(dir: &str) -> ! {
    let (wal, recovery) = Wal::open(dir, options()).expect("child opens the log");
    assert!(recovery.records.is_empty());
    let (tx, rx) = crossbeam_channel::unbounded();
    let (_log, appender) = GroupCommit::spawn(wal, move |event| {
        if let LogEvent::Durable(token) = &event {
            let mut out = std::io::stdout().lock();
            writeln!(out, "durable {token}").and_then(|()| out.flush()).expect("parent reads stdout");
        }
        drop(tx.send(event));
    });
    // The next token not yet reported durable (a report covers every earlier token).
    let mut durable_below = 0;
    for slot in 0u64.. {
        appender.append(vec![accept(slot)], slot).expect("append");
        // Keep a few writes queued, like a busy leader, without growing without bound.
        while slot + 1 - durable_below > 32 {
            match rx.recv().expect("log thread alive") {
                LogEvent::Durable(token) => durable_below = token + 1,
                LogEvent::Failed(e) => panic!("log failed: {e}"),
            }
        }
    }
    unreachable!("the parent kills this process")
}

#[test]
fn a_sigkilled_writer_loses_nothing_acknowledged() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        run_writer(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Option<u64> = None;
    // Kill it once a good number of writes were acknowledged (well past a segment rotation).
    for line in lines.by_ref() {
        // libtest may print its own text on the same line before the first report.
        if let Some((_, t)) = line.unwrap().rsplit_once("durable ") {
            let t: u64 = t.parse().unwrap();
            assert!(acked.is_none_or(|a| t > a), "tokens arrive in order: {t} after {acked:?}");
            acked = Some(t);
            if t >= 3000 {
                break;
            }
        }
    }
    child.kill().unwrap();
    // Acknowledgements printed before the kill landed still count.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some((_, t)) = line.rsplit_once("durable ") {
            acked = Some(t.parse().unwrap());
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed: {status}");
    let acked = acked.expect("the child acknowledged writes");

    let (_, recovery) = Wal::open(dir.path(), options()).expect("the log reopens clean");
    let slots: Vec<u64> = recovery
        .records
        .iter()
        .map(|r| match r {
            LogRecord::Accept { slot, .. } => slot.0,
            other => panic!("unexpected record {other:?}"),
        })
        .collect();
    assert!(slots.len() as u64 > acked, "{} records, acknowledged up to {acked}", slots.len());
    assert_eq!(slots, (0..slots.len() as u64).collect::<Vec<_>>());
    let report = synod_log::inspect(dir.path()).unwrap();
    assert_eq!(report.problem, None, "{report}");
}
