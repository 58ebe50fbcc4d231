//! Group commit: tokens reported in order after their fsync, fatal errors reported once.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use synod_log::{AppendError, Crash, FaultyFs, GroupCommit, LogEvent, Options, Wal};
use synod_wire::{LogRecord, Slot, Value, MAX_FRAME_LEN};

use crate::accept;

fn options(fs: &FaultyFs) -> Options {
    Options::new().fs(fs.clone()).segment_size(16 << 10)
}

fn start(fs: &FaultyFs) -> (GroupCommit, synod_log::Appender, Receiver<LogEvent>) {
    let (wal, _) = Wal::open("/wal", options(fs)).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let (log, appender) = GroupCommit::spawn(wal, move |e| drop(tx.send(e)));
    (log, appender, rx)
}

#[test]
fn tokens_are_reported_once_per_write_in_submission_order_and_survive_power_loss() {
    let fs = FaultyFs::new();
    let (log, appender, events) = start(&fs);
    for t in 0..500 {
        appender.append(vec![accept(t)], t).unwrap();
    }
    // One report per write, naming its last token (which covers every earlier one).
    let mut reports = Vec::new();
    while reports.last() != Some(&499) {
        match events.recv().unwrap() {
            LogEvent::Durable(got) => reports.push(got),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(reports.windows(2).all(|w| w[0] < w[1]), "reports go up: {reports:?}");
    // Every report was preceded by a sync of its own; at most one sync per append.
    assert!(
        fs.syncs() >= reports.len() as u64 && fs.syncs() <= 500,
        "{} syncs, {} reports",
        fs.syncs(),
        reports.len()
    );
    drop(log);
    fs.crash(Crash::LoseUnsynced);
    let (_, recovery) = Wal::open("/wal", options(&fs)).unwrap();
    assert_eq!(recovery.records, (0..500).map(accept).collect::<Vec<_>>());
}

#[test]
fn concurrent_waiting_writers_all_become_durable() {
    let fs = FaultyFs::new();
    let (log, appender, _events) = start(&fs);
    let threads: Vec<_> = (0..8u64)
        .map(|w| {
            let appender = appender.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    appender.append_wait(&[accept(w * 1000 + i)]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let wal = log.shutdown();
    drop(wal);
    fs.crash(Crash::LoseUnsynced);
    let (_, recovery) = Wal::open("/wal", options(&fs)).unwrap();
    assert_eq!(recovery.records.len(), 400);
    for w in 0..8u64 {
        // Each writer's records are in its own order.
        let mine: Vec<_> = recovery
            .records
            .iter()
            .filter(|r| matches!(r, LogRecord::Accept { slot, .. } if slot.0 / 1000 == w))
            .cloned()
            .collect();
        assert_eq!(mine, (0..50).map(|i| accept(w * 1000 + i)).collect::<Vec<_>>());
    }
}

#[test]
fn a_failed_fsync_is_reported_once_and_stops_the_log() {
    let fs = FaultyFs::new();
    let (log, appender, events) = start(&fs);
    appender.append(vec![accept(1)], 1).unwrap();
    assert!(matches!(events.recv().unwrap(), LogEvent::Durable(1)));
    fs.fail_syncs(true);
    appender.append(vec![accept(2)], 2).unwrap_or(());
    let LogEvent::Failed(fatal) = events.recv().unwrap() else { panic!("expected a failure") };
    assert_eq!(fatal.op, "fsync");
    // Healing the disk changes nothing: the log never continues after a lost write.
    fs.fail_syncs(false);
    let err = appender.append(vec![accept(3)], 3).unwrap_err();
    let AppendError::Stopped { fatal: Some(again), records } = err else { panic!("expected Stopped") };
    assert!(Arc::ptr_eq(&fatal, &again));
    assert_eq!(records, vec![accept(3)]);
    assert!(appender.append_wait(&[accept(4)]).is_err());
    assert!(log.failure().is_some());
    let wal = log.shutdown();
    assert!(wal.failure().is_some());
    // Exactly one report of the failure, and no durable report for tokens 2 and 3.
    assert!(events.try_iter().next().is_none());
}

#[test]
fn a_failed_write_fails_waiters() {
    let fs = FaultyFs::new();
    let (_log, appender, events) = start(&fs);
    fs.fail_writes(true);
    let err = appender.append_wait(&[accept(1)]).unwrap_err();
    assert!(matches!(err, AppendError::Stopped { fatal: Some(ref f), .. } if f.op == "write"), "{err}");
    assert!(matches!(events.recv().unwrap(), LogEvent::Failed(_)));
}

#[test]
fn an_oversized_record_is_refused_and_the_log_goes_on() {
    let fs = FaultyFs::new();
    let (_log, appender, events) = start(&fs);
    let huge = LogRecord::Learn { slot: Slot(1), value: Value::Batch(vec![0; MAX_FRAME_LEN].into()) };
    let err = appender.append(vec![huge], 1).unwrap_err();
    assert!(matches!(err, AppendError::Encode { ref records, .. } if records.len() == 1));
    appender.append(vec![accept(2)], 2).unwrap();
    assert!(matches!(events.recv().unwrap(), LogEvent::Durable(2)));
}

#[test]
fn truncation_runs_in_order_with_appends() {
    let fs = FaultyFs::new();
    let (log, appender, _events) = start(&fs);
    // One write per record, so that they spread over many segments.
    for slot in 0..1000 {
        appender.append_wait(&[accept(slot)]).unwrap();
    }
    appender.append_wait(&[LogRecord::Snapshot { upto: Slot(900) }]).unwrap();
    let before = log.shutdown().segment_count();
    let (log, appender, _events) = start(&fs);
    appender.truncate_prefix(Slot(900)).unwrap();
    let wal = log.shutdown();
    assert!(wal.segment_count() < before, "{} < {before}", wal.segment_count());
    assert_eq!(wal.reader().entries(Slot(950), Slot(951)).unwrap(), vec![accept(950)]);
}
