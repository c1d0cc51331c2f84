//! The reactor: the table of registered front ends, the tokens that name them on the gateway
//! driver's ready queue, fd registration, and waiting for the next batch.
//!
//! Every fd is a tokio `AsyncFd` whose waker reports a token on the shared [`ReadyQueue`]; the event
//! loop (`server.rs`) drains the queue in batches, so a wakeup costs the same whatever the number of
//! ports and flows. A token is a `slotmap` key: a front end's (its readability), or with
//! [`PORT_BIT`] set a switch port's (its writability). A key whose slot was freed (and perhaps reused)
//! no longer finds anything, so a stale wakeup is harmless.
//!
//! Generic over what it holds, so that it depends on neither the switch nor the front ends.

use slotmap::{Key, KeyData, SlotMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

pub use crate::sys::register;
pub use netstack_driver::{
    clear_ready, log_allowed, poll_ready, retry_later, Driver, ReadyQueue, Token, ACCEPT_RETRY,
};

slotmap::new_key_type! {
    /// A registered front end.
    pub struct FrontEndId;
}

/// Set in the token of a switch port (its key's slot index never reaches 2^31).
pub const PORT_BIT: u64 = 1 << 31;
/// Pushed to wake the loop up for a stop (matches no key).
const SIGNAL: u64 = u64::MAX;

/// The token of front end `id`.
pub fn front_end_token(id: FrontEndId) -> Token {
    Token::Ext(id.data().as_ffi())
}

/// The token of switch port `id` (its writability).
pub fn port_token(id: impl Key) -> Token {
    Token::Ext(id.data().as_ffi() | PORT_BIT)
}

/// What a token names.
#[derive(Debug)]
pub enum Ready {
    /// A front end is readable (or asked to be called again).
    FrontEnd(FrontEndId),
    /// A switch port is writable (the key of a port).
    Port(KeyData),
    /// A stop was requested.
    Signal,
    /// The gateway driver's own (its sockets, timers).
    Gateway(Token),
}

/// Sorts a token out.
pub fn classify(t: Token) -> Ready {
    match t {
        Token::Ext(SIGNAL) => Ready::Signal,
        Token::Ext(x) if x & PORT_BIT != 0 => Ready::Port(KeyData::from_ffi(x & !PORT_BIT)),
        Token::Ext(x) => Ready::FrontEnd(FrontEndId::from(KeyData::from_ffi(x))),
        other => Ready::Gateway(other),
    }
}

/// What a front end's handler wants done with it afterwards.
#[derive(Debug, PartialEq, Eq)]
pub enum Keep {
    Yes,
    /// Drop it (its fds close).
    No,
}

/// Makes the loop stop after the current batch; clonable, usable from signal tasks.
#[derive(Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    queue: Arc<ReadyQueue>,
}

impl Stopper {
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.queue.push(Token::Ext(SIGNAL));
    }

    pub fn stopping(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

struct Slot<E: ?Sized> {
    /// Taken out while its handler runs (the slot stays allocated, so nothing else lands in it).
    item: Option<Box<E>>,
    waker: Waker,
}

/// The front ends and the queue their wakers report to.
pub struct Reactor<E: ?Sized> {
    queue: Arc<ReadyQueue>,
    slots: SlotMap<FrontEndId, Slot<E>>,
    stopper: Stopper,
}

impl<E: ?Sized> Reactor<E> {
    /// `queue` must be the queue the gateway driver was built with.
    pub fn new(queue: Arc<ReadyQueue>) -> Self {
        Reactor {
            stopper: Stopper {
                flag: Arc::new(AtomicBool::new(false)),
                queue: queue.clone(),
            },
            queue,
            slots: SlotMap::with_key(),
        }
    }

    pub fn queue(&self) -> &Arc<ReadyQueue> {
        &self.queue
    }

    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Registers a front end; its handler runs once right away (to register its waker).
    pub fn insert(&mut self, item: Box<E>) -> FrontEndId {
        let queue = &self.queue;
        let id = self.slots.insert_with_key(|k| Slot {
            item: Some(item),
            waker: queue.waker(front_end_token(k)),
        });
        self.queue.push(front_end_token(id));
        id
    }

    /// The waker and token of front end `id` (for handlers polling readiness).
    pub fn waker(&self, id: FrontEndId) -> (Waker, Token) {
        let w = self
            .slots
            .get(id)
            .map_or_else(|| Waker::noop().clone(), |s| s.waker.clone());
        (w, front_end_token(id))
    }

    /// Takes front end `id` out while its handler runs; give it back with [`Reactor::finish`].
    pub fn take(&mut self, id: FrontEndId) -> Option<Box<E>> {
        self.slots.get_mut(id)?.item.take()
    }

    /// Puts a front end back (`Keep::Yes`) or frees its slot (`Keep::No`).
    pub fn finish(&mut self, id: FrontEndId, item: Box<E>, keep: Keep) {
        match keep {
            Keep::Yes => {
                if let Some(s) = self.slots.get_mut(id) {
                    s.item = Some(item);
                }
            }
            Keep::No => {
                self.slots.remove(id);
            }
        }
    }

    /// Every registered front end.
    pub fn ids(&self) -> Vec<FrontEndId> {
        self.slots.keys().collect()
    }

    /// Drops every front end (their fds close).
    pub fn clear(&mut self) {
        self.slots.clear();
    }

    /// Stops the loop on SIGINT and SIGTERM (needs the tokio runtime).
    pub fn stop_on_signals(&self) -> std::io::Result<()> {
        for kind in [
            tokio::signal::unix::SignalKind::interrupt(),
            tokio::signal::unix::SignalKind::terminate(),
        ] {
            let mut sig = tokio::signal::unix::signal(kind)?;
            let stop = self.stopper();
            tokio::spawn(async move {
                sig.recv().await;
                stop.stop();
            });
        }
        Ok(())
    }
}

/// Waits until tokens are ready (moved into `tokens`) or `deadline` passes.
pub struct Waiter {
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter {
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
        }
    }
}

impl Waiter {
    pub async fn wait(
        &mut self,
        queue: &ReadyQueue,
        deadline: Option<Instant>,
        tokens: &mut Vec<Token>,
    ) {
        let sleep = &mut self.sleep;
        std::future::poll_fn(|cx| {
            if queue.poll_drain(cx, tokens).is_ready() {
                return Poll::Ready(());
            }
            if let Some(d) = deadline {
                sleep.as_mut().reset(tokio::time::Instant::from_std(d));
                if Pin::new(&mut *sleep).poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    slotmap::new_key_type! { struct P; }

    #[test]
    fn tokens_round_trip_and_stale_keys_find_nothing() {
        let mut r: Reactor<u32> = Reactor::new(Arc::new(ReadyQueue::default()));
        let a = r.insert(Box::new(1));
        let Ready::FrontEnd(back) = classify(front_end_token(a)) else {
            panic!("not a front end token");
        };
        assert_eq!(back, a);
        let mut ports: SlotMap<P, ()> = SlotMap::with_key();
        let p = ports.insert(());
        match classify(port_token(p)) {
            Ready::Port(k) => assert_eq!(P::from(k), p),
            other => panic!("{other:?}"),
        }
        let item = r.take(a).expect("there");
        r.finish(a, item, Keep::No);
        let b = r.insert(Box::new(2));
        assert!(
            r.take(a).is_none(),
            "a stale token must not find the new front end"
        );
        assert_eq!(r.take(b).map(|b| *b), Some(2));
        assert!(matches!(classify(Token::Ext(SIGNAL)), Ready::Signal));
        assert!(matches!(classify(Token::Reap), Ready::Gateway(Token::Reap)));
    }
}
