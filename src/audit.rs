//! The batching audit writer for per-request rows: a bounded queue drained by one thread
//! that writes batches in single transactions. Full queue = back-pressure, never loss.

use crate::model::AuditEvent;
use crate::storage::Storage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const BATCH: usize = 256;

enum Msg {
    Row(Box<AuditEvent>),
    Flush(SyncSender<()>),
}

pub struct AuditSink {
    tx: Mutex<Option<SyncSender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closing: Arc<AtomicBool>,
}

impl AuditSink {
    /// Starts the writer with a queue of `capacity` rows.
    pub fn start(storage: Arc<Storage>, capacity: usize) -> AuditSink {
        let (tx, rx) = sync_channel(capacity.max(1));
        let closing = Arc::new(AtomicBool::new(false));
        let flag = closing.clone();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(&storage, &rx, &flag))
            .ok();
        if thread.is_none() {
            log::error!("audit: could not start the writer thread");
        }
        AuditSink {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(thread),
            closing,
        }
    }

    fn sender(&self) -> Option<SyncSender<Msg>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues a row; blocks while the queue is full (back-pressure). After `close`, the row
    /// is written synchronously by the caller instead of being dropped.
    pub fn push(&self, storage: &Storage, event: AuditEvent) {
        let event = match self.sender() {
            Some(tx) => match tx.send(Msg::Row(Box::new(event))) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(Msg::Row(e))) => *e,
                Err(_) => return,
            },
            None => event,
        };
        if let Err(e) = storage.record_event(&event) {
            log::error!("audit: could not write a row: {e}");
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

impl Drop for AuditSink {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(storage: &Storage, rx: &Receiver<Msg>, closing: &AtomicBool) {
    let mut batch: Vec<AuditEvent> = Vec::with_capacity(BATCH);
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Row(e) => batch.push(*e),
                Msg::Flush(ack) => acks.push(ack),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        write_batch(storage, &mut batch, closing);
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    write_batch(storage, &mut batch, closing);
}

/// Writes the batch, retrying until the database takes it. Only at shutdown, with the
/// database still refusing after ~5 s, are the rows written to the error log instead.
fn write_batch(storage: &Storage, batch: &mut Vec<AuditEvent>, closing: &AtomicBool) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while let Err(e) = storage.record_events(batch) {
        log::error!("audit: writing {} rows failed, retrying: {e}", batch.len());
        if closing.load(Ordering::SeqCst) && waited >= Duration::from_secs(5) {
            for row in batch.iter() {
                log::error!(
                    "audit row not stored: action={} user_id={} ip={} method={} route={} status={} request_id={}",
                    row.action,
                    row.actor.user_id.as_deref().unwrap_or("-"),
                    row.actor.ip.as_deref().unwrap_or("-"),
                    row.method.as_deref().unwrap_or("-"),
                    row.route.as_deref().unwrap_or("-"),
                    row.status.unwrap_or(0),
                    row.actor.request_id.as_deref().unwrap_or("-"),
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
