//! Drain notification. The main thread flips one cross-thread signal per
//! shard; inside a shard, a local notifier wakes idle connections without
//! any lock.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A shard-local "we are draining" flag that idle connections can await.
#[derive(Default)]
pub struct LocalDrain {
    draining: Cell<bool>,
    waiters: RefCell<Waiters>,
}

#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl LocalDrain {
    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts draining and wakes every waiter.
    pub fn start(&self) {
        self.draining.set(true);
        let mut w = self.waiters.borrow_mut();
        for slot in w.slots.iter_mut() {
            if let Some(waker) = slot.take() {
                waker.wake();
            }
        }
    }

    /// Resolves once draining has started.
    pub fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            drain: self,
            slot: None,
        }
    }
}

/// Future returned by [`LocalDrain::wait`]; deregisters itself when dropped.
pub struct DrainWait<'a> {
    drain: &'a LocalDrain,
    slot: Option<usize>,
}

impl Future for DrainWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.draining.get() {
            return Poll::Ready(());
        }
        let mut w = self.drain.waiters.borrow_mut();
        match self.slot {
            Some(i) => w.slots[i] = Some(cx.waker().clone()),
            None => {
                let i = match w.free.pop() {
                    Some(i) => {
                        w.slots[i] = Some(cx.waker().clone());
                        i
                    }
                    None => {
                        w.slots.push(Some(cx.waker().clone()));
                        w.slots.len() - 1
                    }
                };
                drop(w);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut w = self.drain.waiters.borrow_mut();
            w.slots[i] = None;
            w.free.push(i);
        }
    }
}
