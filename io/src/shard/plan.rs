//! Planning what a journal entry changes (ADR 17): the objects a PUT, compose or relocate
//! entry makes, seen against the index plus the earlier entries of the same batch.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;

use super::extent::{Crcs, Extent};
use super::meta::Meta;
use super::space::Epoch;
use super::{Extents, Object, Shard};
use crate::error::{Error, Result};
use crate::format::{Entry, ExtentRec, Move};

/// One planned index change: (ns, key, the new object or None to remove the key).
pub(super) type Change = (String, String, Option<Object>);
/// Changes planned earlier in the same batch, by key (they see each other before applying).
pub(super) type Overlay = HashMap<(String, String), Option<Object>>;

impl Shard {
    /// The epoch new `Object`s hold.
    pub(super) fn hold(&self) -> Rc<Epoch> {
        self.epoch.borrow().clone()
    }

    /// The extent `e` names.
    pub(super) fn resolve_extent(&self, e: &ExtentRec) -> Result<Extent> {
        let mut vols = self.vols.borrow_mut();
        let v = vols.map.get_mut(&e.volume_id).ok_or_else(|| {
            Error::corrupt(format!(
                "{}: volume {} referenced by the index is missing",
                self.dir.display(),
                e.volume_id
            ))
        })?;
        if e.record_offset + e.span_bytes > v.end_bytes
            || e.data_offset < e.record_offset
            || e.data_offset + e.len > e.record_offset + e.span_bytes
        {
            return Err(Error::corrupt(format!(
                "{}: extent at {}+{} beyond volume end {}",
                v.file.path.display(),
                e.record_offset,
                e.span_bytes,
                v.end_bytes
            )));
        }
        v.named_end = v.named_end.max(e.record_offset + e.span_bytes);
        Ok(Extent {
            vol: v.file.clone(),
            record_offset: e.record_offset,
            data_offset: e.data_offset,
            len: e.len,
            span_bytes: e.span_bytes,
            block_bytes: e.block_bytes,
            crcs: Crcs::Owned(e.crcs.clone()),
        })
    }

    /// The object at `ns/key` as the batch so far leaves it: `overlay`, else the index.
    pub(super) fn lookup(&self, overlay: &Overlay, ns: &str, key: &str) -> Option<Object> {
        if !overlay.is_empty() {
            if let Some(v) = overlay.get(&(ns.to_string(), key.to_string())) {
                return v.clone();
            }
        }
        self.get(ns, key)
    }

    /// What applying `entry` changes, given the index plus `overlay` (earlier entries of the batch).
    pub(super) fn plan_entry(&self, overlay: &Overlay, entry: &Entry) -> Result<Vec<Change>> {
        match entry {
            Entry::Put {
                seq,
                mtime_ms,
                ns,
                key,
                meta,
                extent,
            } => {
                let obj = self.plan_put(*seq, *mtime_ms, meta, extent)?;
                Ok(vec![(ns.clone(), key.clone(), Some(obj))])
            }
            Entry::Delete { ns, key, .. } => Ok(vec![(ns.clone(), key.clone(), None)]),
            Entry::Compose {
                seq,
                mtime_ms,
                ns,
                key,
                meta,
                remove_sources,
                sources,
            } => {
                let (changes, _) = self.plan_compose(
                    overlay,
                    (*seq, *mtime_ms),
                    (ns, key),
                    meta,
                    *remove_sources,
                    sources,
                )?;
                Ok(changes)
            }
            Entry::Relocate {
                seq,
                ns,
                key,
                moves,
            } => {
                let obj = self.plan_relocate(overlay, *seq, ns, key, moves)?;
                Ok(vec![(ns.clone(), key.clone(), Some(obj))])
            }
        }
    }

    /// An object handle of `extents` (one inline, several shared).
    pub(super) fn new_object(
        &self,
        (seq, mtime_ms, size): (u64, u64, u64),
        meta: Meta,
        mut extents: Vec<Extent>,
    ) -> Object {
        assert_eq!(size, extents.iter().map(|e| e.len).sum::<u64>());
        let extents = if extents.len() == 1 {
            Extents::One(extents.pop().expect("one extent"))
        } else {
            Extents::Many(Rc::from(extents))
        };
        Object {
            size,
            mtime_ms,
            seq,
            meta,
            extents,
            _hold: self.hold(),
        }
    }

    /// The object a PUT entry makes: one extent, the record written.
    pub(super) fn plan_put(
        &self,
        seq: u64,
        mtime_ms: u64,
        meta: &Bytes,
        extent: &ExtentRec,
    ) -> Result<Object> {
        let ext = self.resolve_extent(extent)?;
        Ok(self.new_object(
            (seq, mtime_ms, ext.len),
            Meta::from(meta.clone()),
            vec![ext],
        ))
    }

    /// What a compose entry changes (sources removed if asked, then the new object, last) and
    /// the new object: the sources' extents, concatenated.
    pub(super) fn plan_compose(
        &self,
        overlay: &Overlay,
        (seq, mtime_ms): (u64, u64),
        (ns, key): (&String, &String),
        meta: &Bytes,
        remove_sources: bool,
        sources: &[(String, String, u64)],
    ) -> Result<(Vec<Change>, Object)> {
        let mut extents = Vec::new();
        for (sns, skey, sseq) in sources {
            let src = self
                .lookup(overlay, sns, skey)
                .filter(|o| o.seq == *sseq)
                .ok_or(Error::NotFound)?;
            extents.extend(src.extents.iter().cloned());
        }
        let size = extents.iter().map(|e| e.len).sum();
        let obj = self.new_object((seq, mtime_ms, size), Meta::from(meta.clone()), extents);
        let mut changes = Vec::new();
        if remove_sources {
            for (sns, skey, _) in sources {
                if (sns, skey) != (ns, key) {
                    changes.push((sns.clone(), skey.clone(), None));
                }
            }
        }
        changes.push((ns.clone(), key.clone(), Some(obj.clone())));
        Ok((changes, obj))
    }

    /// The object a relocate entry makes: version `seq` of `ns/key` with the moved extents
    /// pointing at their copies (PreconditionFailed if that version is gone).
    pub(super) fn plan_relocate(
        &self,
        overlay: &Overlay,
        seq: u64,
        ns: &str,
        key: &str,
        moves: &[Move],
    ) -> Result<Object> {
        let cur = self
            .lookup(overlay, ns, key)
            .filter(|o| o.seq == seq)
            .ok_or(Error::PreconditionFailed)?;
        let mut extents = cur.extents.to_vec();
        for m in moves {
            let old = extents.get(m.extent_index as usize).ok_or_else(|| {
                Error::corrupt(format!(
                    "relocate of {ns}/{key}: no extent {}",
                    m.extent_index
                ))
            })?;
            let rec = ExtentRec {
                volume_id: m.volume_id,
                record_offset: m.record_offset,
                data_offset: m.data_offset,
                len: old.len,
                // Version-1 relocations (span 0) keep the span; compaction packs records now.
                span_bytes: if m.span_bytes == 0 {
                    old.span_bytes
                } else {
                    m.span_bytes
                },
                block_bytes: old.block_bytes,
                crcs: old.crcs.to_rc(),
            };
            extents[m.extent_index as usize] = self.resolve_extent(&rec)?;
        }
        Ok(self.new_object((cur.seq, cur.mtime_ms, cur.size), cur.meta.clone(), extents))
    }
}
