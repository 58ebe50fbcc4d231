//! Background segment preallocation: synod-wal's [`Preallocate`] on a helper thread.

use std::thread::JoinHandle;

use crate::{FatalError, FsFile, Preallocate, SegmentJob, Spare};

/// Creates the next segment (zero-filled and synced) on a helper thread,
/// `synod-log-prealloc`, while the active one fills, so that a rotation
/// rarely waits for it. Give it to [`crate::Options::preallocate`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadPreallocate;

impl Preallocate for ThreadPreallocate {
    fn start(&self, job: SegmentJob) -> Option<Box<dyn Spare>> {
        let spawned = std::thread::Builder::new().name("synod-log-prealloc".into()).spawn(move || job.run());
        // Without a thread the segment is created when it is needed instead.
        Some(Box::new(ThreadSpare(spawned.ok()?)))
    }
}

#[derive(Debug)]
struct ThreadSpare(JoinHandle<Result<Box<dyn FsFile>, FatalError>>);

impl Spare for ThreadSpare {
    fn wait(self: Box<Self>) -> Result<Box<dyn FsFile>, FatalError> {
        match self.0.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
