//! A simulated disk: writes complete in order after a delay; a crash loses
//! what was not yet reported durable and may tear the oldest pending write.

use std::collections::VecDeque;

use synod_paxos::rng::Rng;
use synod_paxos::PersistToken;
use synod_wire::LogRecord;

#[derive(Debug, Default)]
pub(crate) struct Disk {
    /// Records that survive a crash.
    durable: Vec<LogRecord>,
    /// Writes not yet durable: (token, records, tick they complete).
    pending: VecDeque<(PersistToken, Vec<LogRecord>, u64)>,
}

impl Disk {
    pub(crate) fn write(&mut self, token: PersistToken, records: Vec<LogRecord>, done_at: u64) {
        // Writes complete in order: never before the previous one.
        let done_at = self.pending.back().map_or(done_at, |p| p.2.max(done_at));
        self.pending.push_back((token, records, done_at));
    }

    /// Completes writes due by `now`; returns the highest token completed.
    pub(crate) fn complete(&mut self, now: u64) -> Option<PersistToken> {
        let mut last = None;
        while self.pending.front().is_some_and(|p| p.2 <= now) {
            let (token, records, _) = self.pending.pop_front().expect("front exists");
            self.durable.extend(records);
            last = Some(token);
        }
        last
    }

    /// A crash: pending writes are lost, except that a prefix of the oldest
    /// one may have reached the disk (a torn write, whose partial record
    /// recovery drops). Returns how many records the tear kept.
    pub(crate) fn crash(&mut self, rng: &mut Rng) -> usize {
        let mut kept = 0;
        if let Some((_, records, _)) = self.pending.front() {
            if rng.chance(30) {
                kept = rng.index(records.len() + 1);
                self.durable.extend(records[..kept].iter().cloned());
            }
        }
        self.pending.clear();
        kept
    }

    pub(crate) fn durable(&self) -> &[LogRecord] {
        &self.durable
    }
}
