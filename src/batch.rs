//! A batching writer: a bounded queue drained by one thread that stores rows in batches,
//! one transaction each. Full queue = back-pressure on the caller, never loss.
//! Used for per-request audit rows and provider usage events.

use crate::storage::{Storage, StorageError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SendError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const BATCH: usize = 512;
/// How long the writer waits for more rows after the first one of a batch.
const GATHER: Duration = Duration::from_millis(2);

/// Stores one batch in one transaction.
pub type WriteFn<T> = fn(&Storage, &[T]) -> Result<(), StorageError>;

enum Msg<T> {
    Row(Box<T>),
    Flush(SyncSender<()>),
}

pub struct BatchWriter<T: Send + 'static> {
    name: &'static str,
    write: WriteFn<T>,
    storage: Arc<Storage>,
    tx: Mutex<Option<SyncSender<Msg<T>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closing: Arc<AtomicBool>,
}

impl<T: Send + std::fmt::Debug + 'static> BatchWriter<T> {
    /// Starts the writer thread with a queue of `capacity` rows.
    pub fn start(
        name: &'static str,
        storage: Arc<Storage>,
        capacity: usize,
        write: WriteFn<T>,
    ) -> BatchWriter<T> {
        let (tx, rx) = sync_channel(capacity.max(1));
        let closing = Arc::new(AtomicBool::new(false));
        let (flag, st) = (closing.clone(), storage.clone());
        let thread = std::thread::Builder::new()
            .name(format!("{name}-writer"))
            .spawn(move || run(name, &st, &rx, &flag, write))
            .ok();
        if thread.is_none() {
            log::error!("{name}: could not start the writer thread");
        }
        BatchWriter {
            name,
            write,
            storage,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(thread),
            closing,
        }
    }

    fn sender(&self) -> Option<SyncSender<Msg<T>>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues a row; blocks while the queue is full. After `close` the row is written
    /// synchronously instead of being dropped.
    pub fn push(&self, row: T) {
        let row = match self.sender() {
            Some(tx) => match tx.send(Msg::Row(Box::new(row))) {
                Ok(()) => return,
                Err(SendError(Msg::Row(r))) => *r,
                Err(_) => return,
            },
            None => row,
        };
        if let Err(e) = (self.write)(&self.storage, std::slice::from_ref(&row)) {
            log::error!("{}: could not write a row: {e}", self.name);
        }
    }

    /// Waits until every row queued before this call is on disk.
    pub fn flush(&self) {
        let Some(tx) = self.sender() else { return };
        let (ack_tx, ack_rx) = sync_channel(1);
        if tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    /// Writes what is queued and stops the writer (shutdown).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl<T: Send + 'static> Drop for BatchWriter<T> {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn run<T: std::fmt::Debug>(
    name: &str,
    storage: &Storage,
    rx: &Receiver<Msg<T>>,
    closing: &AtomicBool,
    write: WriteFn<T>,
) {
    let mut batch: Vec<T> = Vec::with_capacity(BATCH);
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        // Let a batch gather: while this thread sleeps, pushes do not wake it (a wake per
        // row cost more than the row), and one commit carries everything that came.
        if matches!(first, Msg::Row(_)) {
            std::thread::sleep(GATHER);
        }
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Row(r) => batch.push(*r),
                Msg::Flush(ack) => acks.push(ack),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        write_batch(name, storage, &mut batch, closing, write);
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    write_batch(name, storage, &mut batch, closing, write);
}

/// Writes the batch, retrying until the database takes it. Only at shutdown, with the
/// database still refusing after ~5 s, are the rows written to the error log instead.
fn write_batch<T: std::fmt::Debug>(
    name: &str,
    storage: &Storage,
    batch: &mut Vec<T>,
    closing: &AtomicBool,
    write: WriteFn<T>,
) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while let Err(e) = write(storage, batch) {
        log::error!("{name}: writing {} rows failed, retrying: {e}", batch.len());
        if closing.load(Ordering::SeqCst) && waited >= Duration::from_secs(5) {
            for row in batch.iter() {
                log::error!(
                    "{name}: row not stored: {}",
                    crate::logging::redact(&format!("{row:?}"))
                );
            }
            break;
        }
        std::thread::sleep(delay);
        waited += delay;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    batch.clear();
}
