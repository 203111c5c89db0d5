//! An ordered pipeline: items from a source are worked on by every core at once, and the
//! results are merged one by one in source order while the next items are being worked on.
//!
//! ```text
//! source thread ──items──▶ N worker threads ──results──▶ caller's thread: reorder, merge
//!      ▲                                                        │
//!      └──────────────── one permit back per merged result ─────┘
//! ```
//!
//! At most `slots` items are between the source and the merge at any time, so memory holds
//! a few items and results, never the whole input. The merge sees results in source order,
//! so whatever it builds is the same for any number of workers.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{channel, sync_channel};

/// Runs `work` over every item of `source` on `workers` threads and `merge` over the results
/// in source order. The source runs on a thread of its own and asks for a permit before each
/// item, so an expensive source (reading a file) also overlaps with the work. The first error
/// of `merge` stops the source and is returned; items already taken are finished and dropped.
pub fn ordered<T, R, E>(
    workers: usize,
    source: impl Iterator<Item = T> + Send,
    work: impl Fn(T) -> R + Sync,
    mut merge: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    R: Send,
{
    let workers = workers.max(1);
    let slots = 2 * workers + 2;
    let (item_tx, item_rx) = sync_channel::<(u64, T)>(slots);
    // Shared by the workers; outside the scope so that it outlives them.
    let item_rx = Mutex::new(item_rx);
    std::thread::scope(|scope| {
        let (permit_tx, permit_rx) = channel::<()>();
        let (done_tx, done_rx) = channel::<(u64, std::thread::Result<R>)>();
        for _ in 0..slots {
            let _ = permit_tx.send(());
        }
        scope.spawn(move || {
            let mut source = source;
            let mut seq = 0u64;
            // Stops when the merge gives up (no more permits) or the workers are gone.
            while permit_rx.recv().is_ok() {
                let Some(item) = source.next() else { return };
                if item_tx.send((seq, item)).is_err() {
                    return;
                }
                seq += 1;
            }
        });
        let (item_rx, work) = (&item_rx, &work);
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                loop {
                    // The lock is held while waiting, so one idle worker waits at a time.
                    let next = match item_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, item)) = next else { return };
                    // A panic (a bug) is handed to the caller's thread, which raises it
                    // again: a worker that just died would leave the merge waiting forever.
                    let result = catch_unwind(AssertUnwindSafe(|| work(item)));
                    if done_tx.send((seq, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut waiting: BTreeMap<u64, R> = BTreeMap::new();
        let mut next = 0u64;
        for (seq, result) in done_rx.iter() {
            let result = match result {
                Ok(r) => r,
                // Unwinding drops the permits: the source, then the workers, stop.
                Err(panic) => resume_unwind(panic),
            };
            waiting.insert(seq, result);
            while let Some(result) = waiting.remove(&next) {
                next += 1;
                merge(result)?;
                // The source may go on; a closed source just means the end is near.
                let _ = permit_tx.send(());
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_merged_in_source_order_for_any_number_of_workers() {
        for workers in [1, 2, 3, 8] {
            let mut seen = vec![];
            // Later items finish first: the merge must still see them in order.
            let r: Result<(), ()> = ordered(
                workers,
                0..200u64,
                |i| {
                    if i % 7 == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(300));
                    }
                    i * 2
                },
                |x| {
                    seen.push(x);
                    Ok(())
                },
            );
            assert_eq!(r, Ok(()));
            assert_eq!(seen, (0..200u64).map(|i| i * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_merge_error_stops_the_source_and_is_returned() {
        let taken = std::sync::atomic::AtomicU64::new(0);
        let source = (0..1_000_000u64).inspect(|_| {
            taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let mut merged = 0;
        let r = ordered(
            2,
            source,
            |i| i,
            |i| {
                merged += 1;
                if i == 10 { Err("stop") } else { Ok(()) }
            },
        );
        assert_eq!(r, Err("stop"));
        assert_eq!(merged, 11);
        // Bounded: the source never ran far ahead of the merge.
        assert!(taken.load(std::sync::atomic::Ordering::Relaxed) < 100);
    }

    #[test]
    fn a_panicking_worker_is_raised_on_the_callers_thread_not_a_hang() {
        let outcome = std::panic::catch_unwind(|| {
            let r: Result<(), ()> = ordered(
                2,
                0..100u32,
                |i| {
                    assert!(i != 7, "bug on item 7");
                    i
                },
                |_| Ok(()),
            );
            r
        });
        assert!(outcome.is_err());
    }

    #[test]
    fn an_empty_source_merges_nothing() {
        let r: Result<(), ()> = ordered(2, std::iter::empty::<u8>(), |i| i, |_| Err(()));
        assert_eq!(r, Ok(()));
    }
}
