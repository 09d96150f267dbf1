//! Applying planned changes to the index (ADR 17): slots stored and released, the records'
//! reference counts and live bytes per volume, the snapshot's size, records that died.

use std::collections::BTreeMap;

use super::plan::Change;
use super::space::{DroppedRecord, Epoch, RecTable, Vols};
use super::{Object, Shard};
use crate::format;

impl Shard {
    /// Apply planned changes to the index and the per-volume live-record accounting.
    pub(super) fn apply_changes(&self, changes: Vec<Change>) {
        let mut died = Vec::new();
        {
            let mut idx = self.index.borrow_mut();
            let mut vols = self.vols.borrow_mut();
            let mut snapshot_bytes = self.snapshot_bytes.get();
            for (ns, key, new) in changes {
                let new = new.map(|n| {
                    for e in n.extents.iter() {
                        add_ref(&mut vols, e.vol.id, e.record_offset, e.span_bytes);
                    }
                    let s = idx.store(&n);
                    snapshot_bytes += idx.snapshot_bytes_of(&ns, &key, &s);
                    s
                });
                let new_seq = new.map(|s| idx.seq_of(&s));
                let old = match new {
                    Some(s) => idx.insert(&ns, &key, s),
                    None => idx.remove(&ns, &key),
                };
                if let Some(o) = old {
                    snapshot_bytes -= idx.snapshot_bytes_of(&ns, &key, &o);
                    let old_seq = idx.seq_of(&o);
                    idx.for_each_record(&o, |vol, off, span| {
                        drop_ref(&mut vols, vol, off, span, &mut died)
                    });
                    idx.release(&o);
                    if new_seq != Some(old_seq) {
                        if let Some(c) = self.cache.borrow_mut().as_mut() {
                            c.remove(old_seq);
                        }
                    }
                }
            }
            idx.end_batch();
            self.n_objects.set(idx.len());
            assert!(snapshot_bytes >= format::SNAPSHOT_EMPTY_BYTES);
            self.snapshot_bytes.set(snapshot_bytes);
        }
        let next = Epoch::retire(&self.epoch.borrow(), died);
        if let Some(next) = next {
            *self.epoch.borrow_mut() = next;
        }
    }

    /// Start loading a snapshot's objects into the empty index, one at a time
    /// (`load_object`, in key order), then `finish_load`: like `apply_changes` of their PUTs,
    /// but the records' reference counts are built in one sort per volume at the end (the
    /// snapshot is in key order, not record order).
    pub(super) fn start_load(&self) -> Load {
        assert_eq!(
            self.index.borrow().len(),
            0,
            "snapshot loaded into an empty index"
        );
        Load {
            refs: BTreeMap::new(),
            snapshot_bytes: self.snapshot_bytes.get(),
        }
    }

    pub(super) fn load_object(&self, load: &mut Load, ns: &str, key: &str, o: &Object) {
        for e in o.extents.iter() {
            load.refs
                .entry(e.vol.id)
                .or_default()
                .push((e.record_offset, e.span_bytes));
        }
        let mut idx = self.index.borrow_mut();
        let s = idx.store(o);
        load.snapshot_bytes += idx.snapshot_bytes_of(ns, key, &s);
        let old = idx.insert(ns, key, s);
        assert!(old.is_none(), "snapshot names {ns}/{key} twice");
    }

    pub(super) fn finish_load(&self, load: Load) {
        let mut idx = self.index.borrow_mut();
        let mut vols = self.vols.borrow_mut();
        idx.end_batch();
        for (vol, mut recs) in load.refs {
            recs.sort_unstable();
            let v = vols.map.get_mut(&vol).expect("extent volume registered");
            let (table, live_bytes) = RecTable::from_sorted(&recs);
            v.records = table;
            v.live_bytes = live_bytes;
        }
        self.n_objects.set(idx.len());
        self.snapshot_bytes.set(load.snapshot_bytes);
    }
}

/// A snapshot being loaded (`Shard::start_load`): the records each volume's objects name, and
/// the snapshot size so far.
pub(super) struct Load {
    refs: BTreeMap<u32, Vec<(u64, u64)>>,
    snapshot_bytes: u64,
}

/// Count one more reference to the record (a record's first makes it live).
fn add_ref(vols: &mut Vols, vol: u32, off: u64, span: u64) {
    let v = vols.map.get_mut(&vol).expect("extent volume registered");
    if v.records.add(off) {
        v.live_bytes += span;
    }
}

/// Count one reference less to the record (a record's last kills it: `died`).
fn drop_ref(vols: &mut Vols, vol: u32, off: u64, span: u64, died: &mut Vec<DroppedRecord>) {
    let v = vols.map.get_mut(&vol).expect("extent volume registered");
    if v.records.drop_ref(off) {
        assert!(
            v.live_bytes >= span,
            "live bytes of vol {vol} below a record's span"
        );
        v.live_bytes -= span;
        died.push(DroppedRecord {
            volume_id: vol,
            record_offset: off,
            span_bytes: span,
        });
    }
}
