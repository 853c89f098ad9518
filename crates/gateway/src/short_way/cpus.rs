//! The CPUs the process may run on, and pinning a worker thread to one of them
//! (`server.pin_workers`).
//!
//! Unpinned, the kernel is free to put two workers on one CPU. It does so often when the
//! gateway shares its cores with busy processes: on two CPUs shared with a load generator and
//! an upstream, whizard's two workers sat on the same CPU a quarter of the time, each waiting
//! out the other's time slice (up to a 4 ms tick) with all of its connections, while the other
//! CPU ran something else or nothing (bench/README.md, issue 29: HTTPS p99 ~4 ms unpinned, ~1.4
//! ms pinned, at the same rate). A worker pinned to a CPU of its own cannot be stacked on
//! another; the cost is that the kernel cannot move it off a CPU that something else is
//! busy on, so it is for cores the gateway has to itself.

use std::io;

/// The CPUs this thread may run on (the process's cpuset, `taskset`), in ascending order.
pub fn allowed() -> io::Result<Vec<usize>> {
    // SAFETY: `set` is a plain bit set, zeroed before use; the kernel fills it in.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect();
        Ok(cpus)
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_this_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is beyond the CPU set's size"),
        ));
    }
    // SAFETY: as above; `cpu` is within the set's size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{allowed, pin_this_thread};

    #[test]
    fn a_pinned_thread_may_run_on_that_cpu_only_and_others_keep_theirs() {
        let before = allowed().unwrap();
        assert!(!before.is_empty());
        let last = *before.last().unwrap();
        let inside = std::thread::spawn(move || {
            pin_this_thread(last).unwrap();
            allowed().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside, [last]);
        // Affinity is per thread: this one is as it was.
        assert_eq!(allowed().unwrap(), before);
    }

    #[test]
    fn a_cpu_outside_the_set_is_refused() {
        let refused = std::thread::spawn(|| pin_this_thread(1 << 20))
            .join()
            .unwrap();
        assert_eq!(
            refused.unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
    }
}
