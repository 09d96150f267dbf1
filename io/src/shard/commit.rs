//! The committer: one task per shard owns the journal. It takes every pending request, has the
//! packer write the small PUTs' records, checks preconditions in order, syncs the streamed
//! records' volumes, appends all winners' entries in one write, then fdatasyncs the journal and
//! the packed records' volumes at the same time (one sync round, ADR 22), applies, and answers
//! each request on a channel typed for its operation. Checkpoints (index snapshot, journal
//! trim) run here too, between batches: the room `checkpoint`.

use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use super::index::{Change, Overlay};
use super::pack::{PackSlot, PackedPut};
pub(super) use super::pack::{PACKED_RECORD_MAX_BYTES, PACK_WRITE_MAX_BYTES};
use super::space::{sync_data_copies, write_all_copies, MirrorFile, VolFile};
use super::{now_ms, Object, Shard, JOURNAL_FILE};
use crate::error::{Error, Result};
use crate::format::{
    encode_journal_entry_flagged, Entry, ExtentRec, Move, ENTRY_BATCH_START,
    ENTRY_RECORD_SYNCED_WITH_JOURNAL,
};
use crate::{sys, Expect};

/// Most commit requests taken into one group-commit batch. Also bounds the entries of one
/// journal batch, so the records recovery verifies in the journal's last batch (ADR 22).
pub(super) const MAX_BATCH_REQUESTS: usize = 4096;
/// Longest a batch made only of lazy PUTs (`PutWriter::lazy`: the gateway's cache fills) waits
/// for other requests before its sync round starts. A miss answered from the upstream's bytes
/// is followed by its fill; at one miss every ~0.5 ms, a round per fill put an fdatasync (and
/// its io-wq wake-ups on the core) under every next miss (bench/RESULTS.md, issue 15 part 7).
pub(super) const LAZY_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

/// The journal file and where its next entry goes.
pub(super) struct Journal {
    pub(super) file: Rc<monoio::fs::File>,
    /// The journal of each mirror copy (ADR 19): the same bytes at the same offsets.
    pub(super) mirrors: Rc<Vec<MirrorFile>>,
    pub(super) len_bytes: u64,
    pub(super) next_lsn: u64,
    /// Set when a journal write or sync failed: the tail is unknown, refuse further commits.
    pub(super) broken: Option<String>,
}

/// Where the committer answers one request.
pub(super) type Reply<T> = oneshot::Sender<Result<T>>;

/// A request to the committer.
// Boxing `Op` would add an allocation to every PUT's commit; a `Req` is moved once, through
// the committer's queue.
#[allow(clippy::large_enum_variant)]
pub(super) enum Req {
    /// A change to the index, made durable through the journal.
    Op(Op),
    /// `Shard::checkpoint`: runs after the batch it arrived in.
    Checkpoint(Reply<()>),
}

/// When the volume holding an operation's record is made durable, relative to the journal
/// write that names it.
pub(super) enum VolSync {
    /// Nothing to sync (the record is durable already, or there is no record).
    None,
    /// fdatasync before the journal write (streamed records, compaction's copies): the entry
    /// never names bytes that are not durable.
    Before(Rc<VolFile>),
    /// fdatasync at the same time as the journal's (packed records, ADR 22): the entry is
    /// flagged `ENTRY_RECORD_SYNCED_WITH_JOURNAL`, and recovery verifies the record if the
    /// entry is in the journal's last batch.
    WithJournal(Rc<VolFile>),
}

/// An index change, with its precondition and the channel of its answer.
pub(super) enum Op {
    /// `PutWriter::finish`: the record is written; answers the new object.
    Put {
        put: PutReq,
        /// When the record's volume is made durable.
        sync: VolSync,
        /// A packed record's writer slot (shared by its packed write's records), held until
        /// the batch is applied.
        slot: Option<Rc<PackSlot>>,
        expect: Expect,
        reply: Reply<Object>,
    },
    /// `PutWriter::finish` of a packed record (`record`: header, names, data, trailer): the
    /// packer (`place_packed`) writes it with the batch's other packed records in one aligned
    /// write, and it becomes an `Op::Put` synced with the journal. `put.extent`'s volume,
    /// offsets and span are filled in by the placement (`data_offset` holds the offset of the
    /// data in the record until then).
    PutPacked {
        put: PutReq,
        record: Vec<u8>,
        expect: Expect,
        reply: Reply<Object>,
    },
    /// `Shard::delete`: answers the version removed (None if absent).
    Delete {
        ns: String,
        key: String,
        expect: Expect,
        reply: Reply<Option<Object>>,
    },
    /// `Shard::compose`: answers the new object.
    Compose {
        ns: String,
        key: String,
        sources: Vec<(String, String)>,
        meta: Bytes,
        remove_sources: bool,
        expect: Expect,
        reply: Reply<Object>,
    },
    /// Compaction: version `seq` of `ns/key` now lives in the copies `moves` name (applied only
    /// if that version is still current).
    Relocate {
        seq: u64,
        ns: String,
        key: String,
        moves: Vec<Move>,
        vol: Rc<VolFile>,
        reply: Reply<()>,
    },
}

/// The journal entry of a finished PUT.
pub(super) struct PutReq {
    pub(super) seq: u64,
    pub(super) mtime_ms: u64,
    pub(super) ns: String,
    pub(super) key: String,
    pub(super) meta: Bytes,
    pub(super) extent: ExtentRec,
    /// `PutWriter::lazy`: nobody waits on this commit.
    pub(super) lazy: bool,
}

impl PutReq {
    fn into_entry(self) -> Entry {
        Entry::Put {
            seq: self.seq,
            mtime_ms: self.mtime_ms,
            ns: self.ns,
            key: self.key,
            meta: self.meta,
            extent: self.extent,
        }
    }
}

impl Op {
    /// Answer `e` without committing anything.
    fn refuse(self, e: Error) {
        match self {
            Op::Put { reply, .. } | Op::PutPacked { reply, .. } | Op::Compose { reply, .. } => {
                refuse(reply, e)
            }
            Op::Delete { reply, .. } => refuse(reply, e),
            Op::Relocate { reply, .. } => refuse(reply, e),
        };
    }
}

/// Send `e` on `reply`; nothing is planned.
fn refuse<T>(reply: Reply<T>, e: Error) -> Option<Planned> {
    let _ = reply.send(Err(e));
    None
}

/// A request that passed its checks, waiting for its batch to be durable.
enum Waiter {
    /// PUT, compose: the object made.
    Object(Reply<Object>, Object),
    /// DELETE: the version removed.
    Removed(Reply<Option<Object>>, Option<Object>),
    /// Relocate.
    Moved(Reply<()>),
}

impl Waiter {
    fn fail(self, e: Error) {
        match self {
            Waiter::Object(tx, _) => refuse(tx, e),
            Waiter::Removed(tx, _) => refuse(tx, e),
            Waiter::Moved(tx) => refuse(tx, e),
        };
    }

    fn succeed(self) {
        match self {
            Waiter::Object(tx, o) => {
                let _ = tx.send(Ok(o));
            }
            Waiter::Removed(tx, o) => {
                let _ = tx.send(Ok(o));
            }
            Waiter::Moved(tx) => {
                let _ = tx.send(Ok(()));
            }
        }
    }
}

/// What one accepted request commits.
struct Planned {
    /// None when nothing changes (DELETE of an absent key).
    entry: Option<Entry>,
    /// The volume its record was written to, and when it is synced.
    sync: VolSync,
    /// A packed record's writer slot, held until the batch is applied.
    slot: Option<Rc<PackSlot>>,
    changes: Vec<Change>,
    waiter: Waiter,
}

/// One batch, planned.
struct Batch {
    winners: Vec<(Waiter, Vec<Change>)>,
    checkpoints: Vec<Reply<()>>,
    /// Volumes to fdatasync before the journal write.
    sync_before: BTreeMap<u32, Rc<VolFile>>,
    /// Volumes to fdatasync at the same time as the journal.
    sync_with: BTreeMap<u32, Rc<VolFile>>,
    /// Writer slots of the packed records' volumes, released once the batch is applied.
    slots: Vec<Rc<PackSlot>>,
    /// The winners' journal entries, encoded.
    jbuf: Vec<u8>,
    next_lsn: u64,
    n_entries: u64,
}

fn check_expect(expect: Expect, cur: &Option<Object>) -> Result<()> {
    let ok = match expect {
        Expect::Any => true,
        Expect::Absent => cur.is_none(),
        Expect::Seq(s) => cur.as_ref().is_some_and(|o| o.seq == s),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::PreconditionFailed)
    }
}

/// The single committer task of a shard: takes every pending request and commits them as one
/// batch, one sync round each (ADR 22). The next batch's journal write starts only once the
/// previous batch's fdatasyncs completed, so only the journal's last batch can name packed
/// records that did not reach the disk.
pub(super) async fn committer(weak: Weak<Shard>, mut rx: mpsc::UnboundedReceiver<Req>) {
    while let Some(first) = rx.next().await {
        let mut batch = vec![first];
        take_ready(&mut rx, &mut batch);
        if batch.len() < MAX_BATCH_REQUESTS && batch.iter().all(Req::is_lazy) {
            wait_for_company(&mut rx, &mut batch).await;
        }
        let Some(shard) = weak.upgrade() else { break };
        shard.commit_batch(batch).await;
    }
}

/// Moves the requests already queued into `batch` (up to `MAX_BATCH_REQUESTS`).
fn take_ready(rx: &mut mpsc::UnboundedReceiver<Req>, batch: &mut Vec<Req>) {
    while batch.len() < MAX_BATCH_REQUESTS {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

/// A batch of lazy PUTs only: takes what arrives for up to `LAZY_COMMIT_WAIT`, and returns
/// at once when a request that is not lazy arrives, the batch is full or the queue closes.
async fn wait_for_company(rx: &mut mpsc::UnboundedReceiver<Req>, batch: &mut Vec<Req>) {
    let deadline = monoio::time::Instant::now() + LAZY_COMMIT_WAIT;
    loop {
        let next = rx.next();
        let timer = monoio::time::sleep_until(deadline);
        futures::pin_mut!(timer);
        match futures::future::select(next, timer).await {
            futures::future::Either::Left((Some(r), _)) => {
                let lazy = r.is_lazy();
                batch.push(r);
                take_ready(rx, batch);
                if !lazy || batch.len() >= MAX_BATCH_REQUESTS || !batch.iter().all(Req::is_lazy) {
                    return;
                }
            }
            futures::future::Either::Left((None, _)) | futures::future::Either::Right(_) => return,
        }
    }
}

impl Req {
    /// A lazy PUT (`PutWriter::lazy`): its commit may wait for company.
    fn is_lazy(&self) -> bool {
        match self {
            Req::Op(Op::Put { put, .. } | Op::PutPacked { put, .. }) => put.lazy,
            _ => false,
        }
    }
}

impl Shard {
    /// Hand a request to the committer and wait for its answer.
    pub(super) async fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Req) -> Result<T> {
        let rx = self.enqueue(make)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Hand a request to the committer now; the answer comes on the returned channel.
    pub(super) fn enqueue<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Req,
    ) -> Result<oneshot::Receiver<Result<T>>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .unbounded_send(make(tx))
            .map_err(|_| Error::Closed)?;
        Ok(rx)
    }

    async fn commit_batch(self: &Rc<Self>, batch: Vec<Req>) {
        // Drops since the last batch (e.g. the object a DELETE returned to its caller).
        self.reclaim_dropped_records();
        let batch = self.place_batch(batch).await;
        let mut b = self.plan_batch(batch);
        // The packed records' writer slots are held until the batch is applied: until then the
        // volume's accounting does not know them, and compaction must not take the volume.
        let slots = std::mem::take(&mut b.slots);
        if b.n_entries > 0 {
            self.meters.batch_entries.record(b.n_entries);
            let synced = self
                .make_durable(b.sync_before, b.sync_with, b.jbuf, b.next_lsn)
                .await;
            if let Err(e) = synced {
                let e = self.copy_write_failed(e);
                for (w, _) in std::mem::take(&mut b.winners) {
                    w.fail(e.duplicate());
                }
            } else {
                self.commits.set(self.commits.get() + b.n_entries);
            }
        }
        for (w, changes) in b.winners {
            self.apply_changes(changes);
            w.succeed();
        }
        drop(slots);
        self.reclaim_dropped_records();
        self.checkpoint_after_batch(b.checkpoints).await;
    }

    /// Have the packer write the batch's packed PUTs (`Op::PutPacked`); each becomes an
    /// `Op::Put` in its place in the batch (arrival order is kept), or is answered with its
    /// error. Refused at once when the shard is closed or the journal broken.
    async fn place_batch(self: &Rc<Self>, batch: Vec<Req>) -> Vec<Req> {
        if !batch
            .iter()
            .any(|r| matches!(r, Req::Op(Op::PutPacked { .. })))
        {
            return batch;
        }
        let refused = self.closed.get()
            || self
                .journal
                .borrow()
                .as_ref()
                .is_some_and(|j| j.broken.is_some());
        let mut puts: Vec<PackedPut> = Vec::new();
        let mut order: Vec<Option<Req>> = Vec::with_capacity(batch.len());
        for req in batch {
            match req {
                Req::Op(Op::PutPacked {
                    put,
                    record,
                    expect,
                    reply,
                }) => {
                    if refused {
                        refuse(reply, Error::Closed);
                    } else {
                        puts.push((put, record, expect, reply));
                        order.push(None);
                    }
                }
                other => order.push(Some(other)),
            }
        }
        let mut placed = if puts.is_empty() {
            Vec::new()
        } else {
            self.place_packed(puts).await
        }
        .into_iter();
        order
            .into_iter()
            .filter_map(|r| match r {
                Some(r) => Some(r),
                None => placed
                    .next()
                    .expect("one placement per packed PUT")
                    .map(Req::Op),
            })
            .collect()
    }

    /// Check every request in order against the index and the batch so far; encode the
    /// winners' journal entries. Losers are answered here.
    fn plan_batch(&self, batch: Vec<Req>) -> Batch {
        let (next_lsn, broken) = {
            let j = self.journal.borrow();
            let j = j.as_ref().expect("journal open");
            (j.next_lsn, j.broken.clone())
        };
        let mut b = Batch {
            winners: Vec::new(),
            checkpoints: Vec::new(),
            sync_before: BTreeMap::new(),
            sync_with: BTreeMap::new(),
            slots: Vec::new(),
            jbuf: Vec::new(),
            next_lsn,
            n_entries: 0,
        };
        let mut overlay = Overlay::new();
        for req in batch {
            let op = match req {
                Req::Checkpoint(reply) => {
                    b.checkpoints.push(reply);
                    continue;
                }
                Req::Op(op) => op,
            };
            if let Some(why) = &broken {
                tracing::error!(dir = %self.dir.display(), why = %why, "refusing commit: journal broken");
                op.refuse(Error::Closed);
                continue;
            }
            if self.closed.get() && !matches!(op, Op::Relocate { .. }) {
                op.refuse(Error::Closed);
                continue;
            }
            let Some(p) = self.plan_op(&overlay, op) else {
                continue;
            };
            if let Some(e) = &p.entry {
                let mut flags = 0;
                if b.n_entries == 0 {
                    flags |= ENTRY_BATCH_START;
                }
                if matches!(p.sync, VolSync::WithJournal(_)) {
                    flags |= ENTRY_RECORD_SYNCED_WITH_JOURNAL;
                }
                encode_journal_entry_flagged(&mut b.jbuf, b.next_lsn, flags, e);
                b.next_lsn += 1;
                b.n_entries += 1;
            }
            match p.sync {
                VolSync::None => {}
                VolSync::Before(v) => {
                    b.sync_before.insert(v.id, v);
                }
                VolSync::WithJournal(v) => {
                    b.sync_with.insert(v.id, v);
                }
            }
            if let Some(slot) = p.slot {
                b.slots.push(slot);
            }
            for (ns, key, o) in &p.changes {
                overlay.insert((ns.clone(), key.clone()), o.clone());
            }
            b.winners.push((p.waiter, p.changes));
        }
        b
    }

    /// Check one request and plan what it changes; answers it (and returns None) if refused.
    fn plan_op(&self, overlay: &Overlay, op: Op) -> Option<Planned> {
        match op {
            Op::Put {
                put,
                sync,
                slot,
                expect,
                reply,
            } => match self.plan_put_op(overlay, put, expect) {
                Ok((entry, changes, obj)) => Some(Planned {
                    entry: Some(entry),
                    sync,
                    slot,
                    changes,
                    waiter: Waiter::Object(reply, obj),
                }),
                Err(e) => refuse(reply, e),
            },
            Op::PutPacked { .. } => {
                panic!("a packed PUT reached planning without being placed (committer)")
            }
            Op::Delete {
                ns,
                key,
                expect,
                reply,
            } => match self.plan_delete_op(overlay, ns, key, expect) {
                Ok((entry, changes, cur)) => Some(Planned {
                    entry,
                    sync: VolSync::None,
                    slot: None,
                    changes,
                    waiter: Waiter::Removed(reply, cur),
                }),
                Err(e) => refuse(reply, e),
            },
            Op::Compose {
                ns,
                key,
                sources,
                meta,
                remove_sources,
                expect,
                reply,
            } => {
                let op = (ns, key, sources, meta, remove_sources);
                match self.plan_compose_op(overlay, op, expect) {
                    Ok((entry, changes, obj)) => Some(Planned {
                        entry: Some(entry),
                        sync: VolSync::None,
                        slot: None,
                        changes,
                        waiter: Waiter::Object(reply, obj),
                    }),
                    Err(e) => refuse(reply, e),
                }
            }
            Op::Relocate {
                seq,
                ns,
                key,
                moves,
                vol,
                reply,
            } => match self.plan_relocate_op(overlay, seq, ns, key, moves) {
                Ok((entry, changes)) => Some(Planned {
                    entry: Some(entry),
                    sync: VolSync::Before(vol),
                    slot: None,
                    changes,
                    waiter: Waiter::Moved(reply),
                }),
                Err(e) => refuse(reply, e),
            },
        }
    }

    fn plan_put_op(
        &self,
        overlay: &Overlay,
        put: PutReq,
        expect: Expect,
    ) -> Result<(Entry, Vec<Change>, Object)> {
        check_expect(expect, &self.lookup(overlay, &put.ns, &put.key))?;
        let obj = self.plan_put(put.seq, put.mtime_ms, &put.meta, &put.extent)?;
        let changes = vec![(put.ns.clone(), put.key.clone(), Some(obj.clone()))];
        Ok((put.into_entry(), changes, obj))
    }

    /// A DELETE of an absent key commits nothing (and answers None).
    #[allow(clippy::type_complexity)]
    fn plan_delete_op(
        &self,
        overlay: &Overlay,
        ns: String,
        key: String,
        expect: Expect,
    ) -> Result<(Option<Entry>, Vec<Change>, Option<Object>)> {
        let cur = self.lookup(overlay, &ns, &key);
        check_expect(expect, &cur)?;
        if cur.is_none() {
            return Ok((None, Vec::new(), None));
        }
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        let changes = vec![(ns.clone(), key.clone(), None)];
        Ok((Some(Entry::Delete { seq, ns, key }), changes, cur))
    }

    #[allow(clippy::type_complexity)]
    fn plan_compose_op(
        &self,
        overlay: &Overlay,
        (ns, key, sources, meta, remove_sources): (
            String,
            String,
            Vec<(String, String)>,
            Bytes,
            bool,
        ),
        expect: Expect,
    ) -> Result<(Entry, Vec<Change>, Object)> {
        check_expect(expect, &self.lookup(overlay, &ns, &key))?;
        let mut srcs = Vec::with_capacity(sources.len());
        for (sns, skey) in sources {
            let o = self.lookup(overlay, &sns, &skey).ok_or(Error::NotFound)?;
            srcs.push((sns, skey, o.seq));
        }
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        let mtime_ms = now_ms();
        let (changes, obj) = self.plan_compose(
            overlay,
            (seq, mtime_ms),
            (&ns, &key),
            &meta,
            remove_sources,
            &srcs,
        )?;
        let entry = Entry::Compose {
            seq,
            mtime_ms,
            ns,
            key,
            meta,
            remove_sources,
            sources: srcs,
        };
        Ok((entry, changes, obj))
    }

    fn plan_relocate_op(
        &self,
        overlay: &Overlay,
        seq: u64,
        ns: String,
        key: String,
        moves: Vec<Move>,
    ) -> Result<(Entry, Vec<Change>)> {
        check_expect(Expect::Seq(seq), &self.lookup(overlay, &ns, &key))?;
        let obj = self.plan_relocate(overlay, seq, &ns, &key, &moves)?;
        let changes = vec![(ns.clone(), key.clone(), Some(obj))];
        Ok((
            Entry::Relocate {
                seq,
                ns,
                key,
                moves,
            },
            changes,
        ))
    }

    /// Make a batch durable in one sync round: the directory entry of a new volume and the
    /// `sync_before` volumes (streamed records, compaction's copies) first, then the journal
    /// append, then the journal's fdatasync and the `sync_with` volumes' (packed records) at the
    /// same time. Succeeds only when all of them did; on any failure after the append, the
    /// append is cut off again (the batch's entries must not stay behind its records).
    async fn make_durable(
        &self,
        sync_before: BTreeMap<u32, Rc<VolFile>>,
        mut sync_with: BTreeMap<u32, Rc<VolFile>>,
        jbuf: Vec<u8>,
        next_lsn: u64,
    ) -> Result<()> {
        // A volume synced before the journal needs no second sync with it.
        sync_with.retain(|id, _| !sync_before.contains_key(id));
        // A volume created since the last directory fsync is named by this batch: its
        // directory entry is made durable first (as recovery expects of every named volume).
        let named = || sync_before.values().chain(sync_with.values());
        if named().any(|v| !v.dir_synced.get()) {
            self.sync_dir().await?;
            for v in named() {
                v.dir_synced.set(true);
            }
        }
        // Every copy of every volume at once (mirror, ADR 19: still one round).
        let before = futures::future::join_all(sync_before.values().map(|v| v.sync_data())).await;
        before.into_iter().collect::<Result<Vec<()>>>()?;
        let (file, mirrors, at) = {
            let j = self.journal.borrow();
            let j = j.as_ref().expect("journal open");
            (j.file.clone(), j.mirrors.clone(), j.len_bytes)
        };
        let n = jbuf.len() as u64;
        let jpath = self.dir.join(JOURNAL_FILE);
        let (res, _) = write_all_copies(&file, &mirrors, jbuf, at).await;
        let res = match res {
            Ok(()) => {
                self.journal_syncs.set(self.journal_syncs.get() + 1);
                let started = std::time::Instant::now();
                let journal_sync = async {
                    let r = sync_data_copies(&file, &jpath, &mirrors).await;
                    let ns = started.elapsed().as_nanos() as u64;
                    self.meters.journal_fsync_ns.record(ns);
                    r
                };
                let vol_syncs =
                    futures::future::join_all(sync_with.values().map(|v| v.sync_data()));
                let (jr, vrs) = futures::join!(journal_sync, vol_syncs);
                vrs.into_iter().fold(jr, |acc, r| acc.and(r))
            }
            Err(e) => Err(Error::io(
                format!("append {n} bytes to {} at {at}", jpath.display()),
                e,
            )),
        };
        match res {
            Ok(()) => {
                let mut jref = self.journal.borrow_mut();
                let j = jref.as_mut().expect("journal open");
                j.len_bytes = at + n;
                j.next_lsn = next_lsn;
                Ok(())
            }
            Err(e) => {
                // Cut the partial append away so later entries are not hidden behind garbage at
                // replay (on the worker: ftruncate has no io_uring operation); if even that
                // fails, refuse all further commits.
                let fds: std::io::Result<Vec<_>> = std::iter::once(&*file)
                    .chain(mirrors.iter().map(|m| &m.file))
                    .map(crate::offload::dup)
                    .collect();
                let undone = match fds {
                    Ok(fds) => {
                        self.offload
                            .call(move || {
                                fds.iter().try_for_each(|fd| {
                                    sys::ftruncate(fd, at).and_then(|()| sys::fsync(fd))
                                })
                            })
                            .await
                    }
                    Err(de) => Err(de),
                };
                if let Err(ue) = undone {
                    self.journal
                        .borrow_mut()
                        .as_mut()
                        .expect("journal open")
                        .broken = Some(format!(
                        "append to {} at {at} failed and could not be undone: {e} (undo: {ue})",
                        jpath.display()
                    ));
                }
                Err(e)
            }
        }
    }
}
