//! When a packet worker spins and when it sleeps: a pure policy over (time, frames moved), so
//! that it is tested without threads or taps.
//!
//! Why spin at all: a worker asleep in `epoll_wait` costs each frame that finds it asleep one
//! wake-up (the sender's syscall wakes it, and on a VM whose vCPU halted when idle, an IPI and
//! a vCPU resume: tens of µs). A ping's reply or a TCP_RR answer comes back a few µs to a
//! few tens of µs after the request went through, so a worker that keeps polling that long
//! finds it without sleeping.
//!
//! Why adaptive: spinning is wasted where the next frame comes later than the spin lasts
//! (a ping every 10 ms, a reply that lands on another worker), and on a host whose cores the
//! switch shares with the VMs every wasted µs is taken from a VM. So the spin window after a
//! busy round starts at the bound (`[switch] busy_poll_us`), halves each time a window ends
//! without finding a frame, and doubles (back up to the bound) each time one does. A switch
//! that carries no traffic never spins: a window opens only after a round that moved frames.
//!
//! ```text
//!   round moved frames ──> open window [now, now + budget)
//!   poll in window ──frame──> hit: budget = min(2 * budget, max), new window
//!                  ──window ends empty──> miss: budget = max(budget / 2, min); sleep
//! ```

/// What the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Poll the ports without blocking (epoll_wait with a zero timeout).
    Spin,
    /// Block until a port or the wake-up eventfd has something.
    Sleep,
}

/// Spin-or-sleep decisions for one worker (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct SpinPolicy {
    max_ns: u64,
    min_ns: u64,
    budget_ns: u64,
    /// End of the open spin window; 0 when none is open.
    until: u64,
    hits: u64,
    misses: u64,
}

/// Smallest window the budget shrinks to, as a share of the bound: a worker that keeps
/// missing still spins a little (1/16 of the bound, e.g. 12 µs of 200), enough to see a
/// burst's tail, so a change of traffic is noticed by the next hit.
const MIN_SHARE: u64 = 16;

impl SpinPolicy {
    /// A policy that spins at most `max_ns` after a busy round (0: never spins).
    pub(crate) fn new(max_ns: u64) -> SpinPolicy {
        SpinPolicy {
            max_ns,
            min_ns: max_ns / MIN_SHARE,
            budget_ns: max_ns,
            until: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// After a round over the ready ports: `moved` frames were read at `now`.
    pub(crate) fn after_round(&mut self, now: u64, moved: usize) {
        if moved == 0 || self.max_ns == 0 {
            return;
        }
        if self.until != 0 {
            // Found by polling, not by a wake-up: the spin paid.
            self.hits += 1;
            self.budget_ns = (self.budget_ns.saturating_mul(2)).min(self.max_ns);
        }
        self.until = now.saturating_add(self.budget_ns.max(1));
    }

    /// How to wait next, at `now`.
    pub(crate) fn next_wait(&mut self, now: u64) -> Wait {
        if self.until == 0 {
            return Wait::Sleep;
        }
        if now < self.until {
            return Wait::Spin;
        }
        self.until = 0;
        self.misses += 1;
        self.budget_ns = (self.budget_ns / 2).max(self.min_ns);
        Wait::Sleep
    }

    /// The spin window now granted after a busy round, in ns.
    #[cfg(test)]
    pub(crate) fn budget_ns(&self) -> u64 {
        self.budget_ns
    }

    /// (windows that found a frame, windows that ended empty) so far.
    pub(crate) fn outcomes(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1000;

    #[test]
    fn off_never_spins() {
        let mut p = SpinPolicy::new(0);
        p.after_round(0, 32);
        assert_eq!(p.next_wait(1), Wait::Sleep);
        assert_eq!(p.outcomes(), (0, 0));
    }

    #[test]
    fn idle_switch_never_spins() {
        let mut p = SpinPolicy::new(200 * US);
        for t in 0..100 {
            p.after_round(t * 1_000_000, 0);
            assert_eq!(p.next_wait(t * 1_000_000 + 1), Wait::Sleep);
        }
        assert_eq!(p.outcomes(), (0, 0));
    }

    #[test]
    fn spins_within_the_window_then_sleeps() {
        let mut p = SpinPolicy::new(200 * US);
        p.after_round(1_000 * US, 1);
        assert_eq!(p.next_wait(1_000 * US), Wait::Spin);
        assert_eq!(p.next_wait(1_199 * US), Wait::Spin);
        assert_eq!(p.next_wait(1_200 * US), Wait::Sleep);
        // Once asleep it stays asleep until frames move again.
        assert_eq!(p.next_wait(1_201 * US), Wait::Sleep);
        assert_eq!(p.outcomes(), (0, 1));
    }

    #[test]
    fn misses_halve_the_window_down_to_a_floor() {
        let mut p = SpinPolicy::new(160 * US);
        let mut t = 0;
        let mut budgets = Vec::new();
        for _ in 0..8 {
            // A ping every 10 ms: one frame, then nothing within any window.
            p.after_round(t, 1);
            while p.next_wait(t) == Wait::Spin {
                t += US;
            }
            budgets.push(p.budget_ns() / US);
            t += 10_000 * US;
        }
        assert_eq!(budgets, [80, 40, 20, 10, 10, 10, 10, 10]);
        assert_eq!(p.outcomes(), (0, 8));
    }

    #[test]
    fn hits_grow_the_window_back_to_the_bound() {
        let mut p = SpinPolicy::new(160 * US);
        let mut t = 0;
        for _ in 0..4 {
            p.after_round(t, 1);
            while p.next_wait(t) == Wait::Spin {
                t += US;
            }
        }
        assert_eq!(p.budget_ns(), 10 * US);
        // Request/response traffic: each answer comes 5 µs after the last frame.
        p.after_round(t, 1);
        for _ in 0..5 {
            assert_eq!(p.next_wait(t + 5 * US), Wait::Spin);
            t += 5 * US;
            p.after_round(t, 1);
        }
        assert_eq!(p.budget_ns(), 160 * US);
        assert_eq!(p.outcomes().0, 5);
    }

    #[test]
    fn a_frame_after_the_window_is_a_wakeup_not_a_hit() {
        let mut p = SpinPolicy::new(100 * US);
        p.after_round(0, 1);
        assert_eq!(p.next_wait(150 * US), Wait::Sleep);
        p.after_round(10_000 * US, 1);
        assert_eq!(p.outcomes(), (0, 1));
        assert_eq!(p.budget_ns(), 50 * US);
        // The new window is the shrunk one.
        assert_eq!(p.next_wait(10_049 * US), Wait::Spin);
        assert_eq!(p.next_wait(10_050 * US), Wait::Sleep);
    }
}
