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
//! ([`super::cpus`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use tokio::runtime::{Handle, RuntimeFlavor};

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
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if !list.iter().any(|w| w.thread == thread) {
            if let Some(&cpu) = self.pin_to.get(list.len() % self.pin_to.len().max(1)) {
                match super::cpus::pin_this_thread(cpu) {
                    Ok(()) => tracing::info!(worker = list.len(), cpu, "worker thread pinned"),
                    // Still served, where the kernel puts it.
                    Err(e) => tracing::warn!(cpu, error = %e, "could not pin a worker thread"),
                }
            }
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
