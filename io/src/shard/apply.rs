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

    /// Load the objects of a snapshot into an empty index: like `apply_changes` of their PUTs,
    /// but the records' reference counts are built in one sort per volume (the snapshot is in
    /// key order, not record order).
    pub(super) fn load_objects(&self, objects: Vec<(String, String, Object)>) {
        let mut idx = self.index.borrow_mut();
        let mut vols = self.vols.borrow_mut();
        assert_eq!(idx.len(), 0, "snapshot loaded into an empty index");
        let mut refs: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
        let mut snapshot_bytes = self.snapshot_bytes.get();
        for (ns, key, o) in objects {
            for e in o.extents.iter() {
                refs.entry(e.vol.id)
                    .or_default()
                    .push((e.record_offset, e.span_bytes));
            }
            let s = idx.store(&o);
            snapshot_bytes += idx.snapshot_bytes_of(&ns, &key, &s);
            let old = idx.insert(&ns, &key, s);
            assert!(old.is_none(), "snapshot names {ns}/{key} twice");
        }
        idx.end_batch();
        for (vol, mut recs) in refs {
            recs.sort_unstable();
            let v = vols.map.get_mut(&vol).expect("extent volume registered");
            let (table, live_bytes) = RecTable::from_sorted(&recs);
            v.records = table;
            v.live_bytes = live_bytes;
        }
        self.n_objects.set(idx.len());
        self.snapshot_bytes.set(snapshot_bytes);
    }
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
