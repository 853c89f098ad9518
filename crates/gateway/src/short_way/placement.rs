//! Where a client connection is served: on which worker thread, with its socket registered
//! with that thread's reactor.
//!
//! pingora accepts on one worker's runtime and hands each connection to a random one. Two
//! costs follow. The socket stays registered with the accepting runtime, whose thread then has
//! to wake the serving one for every readiness event (an eventfd write per request or more,
//! and a thread switch): `lean_tcp::registered_here` registers a duplicate of the descriptor
//! with the serving thread instead, before anything is read (the TLS handshake of the HTTPS
//! listener runs after it, on the serving thread). And a random hand-off leaves the threads
//! unevenly loaded (32 keep-alive clients on two threads: often 20 and 12, and the busier
//! thread's clients wait): [`Workers`] places each new connection on the thread serving the
//! fewest. With `server.pin_workers`, each thread is pinned to a CPU of its own as it joins
//! ([`super::cpus`]). Each joining thread also gets a timer that is always due within a second
//! ([`keep_a_timer_due`]), which spares its runtime a wake-up per request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use tokio::runtime::{Handle, RuntimeFlavor};
use whizard_core::sync::lock;

/// The worker threads of one service and how many connections each serves. Threads enter
/// the list as pingora first hands them a connection (at random, so all of them soon).
#[derive(Default)]
pub struct Workers {
    list: Mutex<Vec<Worker>>,
    /// The CPUs to pin joining threads to, in turn (`server.pin_workers`); empty: unpinned.
    pin_to: Vec<usize>,
}

struct Worker {
    thread: ThreadId,
    runtime: Handle,
    live: Arc<AtomicUsize>,
}

/// One connection served on a worker: counted while it lives.
pub struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Workers pinned, as they join, to the CPUs of `pin_to` in turn (the first joins on the
    /// first CPU, and so on, starting again at the first when there are more threads than
    /// CPUs).
    pub fn pinned(pin_to: Vec<usize>) -> Self {
        Workers {
            list: Mutex::default(),
            pin_to,
        }
    }

    /// Where a new connection goes: the worker serving the fewest (this one on a tie), with
    /// the connection counted there. Only among per-thread runtimes: with work stealing there
    /// is one runtime, and the connection stays where it is.
    pub fn place(&self) -> Option<(Handle, Live)> {
        let here = Handle::try_current().ok()?;
        if here.runtime_flavor() != RuntimeFlavor::CurrentThread {
            return None;
        }
        let thread = std::thread::current().id();
        let mut list = lock(&self.list);
        if !list.iter().any(|w| w.thread == thread) {
            if let Some(&cpu) = self.pin_to.get(list.len() % self.pin_to.len().max(1)) {
                match super::cpus::pin_this_thread(cpu) {
                    Ok(()) => tracing::info!(worker = list.len(), cpu, "worker thread pinned"),
                    // Still served, where the kernel puts it.
                    Err(e) => tracing::warn!(cpu, error = %e, "could not pin a worker thread"),
                }
            }
            here.spawn(keep_a_timer_due());
            list.push(Worker {
                thread,
                runtime: here,
                live: Arc::default(),
            });
        }
        let load = |w: &Worker| (w.live.load(Ordering::Relaxed), w.thread != thread);
        let best = list.iter().min_by_key(|w| load(w))?;
        Some((best.runtime.clone(), best.enter()))
    }
}

/// How far ahead the worker's standing timer is due at most.
const STANDING_TIMER: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps a timer of this thread's runtime due within [`STANDING_TIMER`], for the runtime's
/// life. tokio wakes a runtime's driver (an eventfd write) whenever a timer is registered that
/// is due before the earliest one it knew of when it last parked, or when it parked with none:
/// a request's upstream read timeout, registered after the thread parked with no timer (on
/// HTTP/2 connections, which have no keep-alive timer, 0.14 writes per request under load).
/// With a timer always due within a second, a longer timeout never wakes it; this one costs a
/// wake-up a second.
async fn keep_a_timer_due() {
    loop {
        tokio::time::sleep(STANDING_TIMER).await;
    }
}

impl Worker {
    fn enter(&self) -> Live {
        self.live.fetch_add(1, Ordering::Relaxed);
        Live(self.live.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::Workers;
    use std::sync::Arc;
    use std::thread::ThreadId;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Two workers, each a thread with a runtime of its own: a new connection goes to the one
    /// serving the fewest, this one on a tie, and a connection that ends frees its place.
    #[test]
    fn connections_go_to_the_worker_serving_the_fewest() {
        let workers = Arc::new(Workers::default());
        let (joined, other_joined) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let other = {
            let workers = workers.clone();
            std::thread::spawn(move || {
                runtime().block_on(async move {
                    // Enters the list (and leaves the count at once).
                    drop(workers.place());
                    joined.send(std::thread::current().id()).unwrap();
                    let _ = stopped.await;
                })
            })
        };
        let other_id = other_joined.recv().unwrap();
        let here = runtime();
        // The thread a placement's runtime runs on.
        async fn thread_of(runtime: tokio::runtime::Handle) -> ThreadId {
            let id = runtime.spawn(async { std::thread::current().id() });
            id.await.unwrap()
        }
        let placed: Vec<ThreadId> = here.block_on(async {
            let mut held = Vec::new();
            let mut placed = Vec::new();
            for _ in 0..3 {
                let (runtime, live) = workers.place().unwrap();
                placed.push(thread_of(runtime).await);
                held.push(live);
            }
            // The first one on the other worker ends: the next goes there.
            held.remove(1);
            let (runtime, _live) = workers.place().unwrap();
            placed.push(thread_of(runtime).await);
            placed
        });
        let me = std::thread::current().id();
        assert_eq!(placed, [me, other_id, me, other_id]);
        stop.send(()).unwrap();
        other.join().unwrap();
    }

    /// Write system calls made by the calling thread so far.
    fn writes_of_this_thread() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("syscw: "))
            .and_then(|n| n.parse().ok())
            .expect("syscw in /proc/thread-self/io")
    }

    /// A worker that has joined registers a request's timeout without waking its own runtime
    /// (an eventfd write), even right after it parked with no other timer pending, as it does
    /// between requests on an HTTP/2 connection.
    #[test]
    fn a_timeout_after_an_idle_park_does_not_wake_the_worker() {
        let workers = Workers::default();
        let (ask, asked) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>();
        // The "client": answers each wait from another thread, once the worker waits.
        let client = std::thread::spawn(move || {
            for reply in asked {
                let _ = reply.send(());
            }
        });
        let writes = runtime().block_on(async {
            drop(workers.place());
            let before = writes_of_this_thread();
            for _ in 0..100 {
                // Parks with no timer of its own pending: waiting for the client.
                let (reply, replied) = tokio::sync::oneshot::channel();
                ask.send(reply).unwrap();
                replied.await.unwrap();
                // A request's upstream timeout, registered (its work is pending at first).
                let work = tokio::task::yield_now();
                tokio::time::timeout(std::time::Duration::from_secs(120), work)
                    .await
                    .unwrap();
            }
            writes_of_this_thread() - before
        });
        drop(ask);
        client.join().unwrap();
        // The standing timer itself may be registered again once in the test's time.
        assert!(writes <= 2, "{writes} wake-up writes for 100 timeouts");
    }

    #[test]
    fn without_a_runtime_per_thread_nothing_is_placed() {
        let workers = Workers::default();
        let shared = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        shared.block_on(async {
            assert!(workers.place().is_none());
        });
    }
}
