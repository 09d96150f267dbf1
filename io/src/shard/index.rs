//! The in-memory index: objects by (namespace, key), the extents they are made of, planning
//! what a journal entry changes, applying changes (with the per-volume live-record and snapshot
//! size accounting), and listing.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::rc::{Rc, Weak};

use bytes::Bytes;

use super::space::{RecInfo, RecordLife, VolFile, Vols};
use super::{ListItem, Object, Shard};
use crate::error::{Error, Result};
use crate::format::{self, Entry, ExtentRec, Move};

pub(super) type Index = BTreeMap<String, BTreeMap<String, Rc<Object>>>;
/// One planned index change: (ns, key, the new object or None to remove the key).
pub(super) type Change = (String, String, Option<Rc<Object>>);
/// Changes planned earlier in the same batch, by key (they see each other before applying).
pub(super) type Overlay = HashMap<(String, String), Option<Rc<Object>>>;

/// One contiguous run of an object's data: the whole data of one record.
#[derive(Debug, Clone)]
pub(crate) struct Extent {
    pub(super) vol: Rc<VolFile>,
    pub(super) life: Rc<RecordLife>,
    pub(super) record_offset: u64,
    pub(super) data_offset: u64,
    pub(super) len: u64,
    pub(super) span_bytes: u64,
    pub(super) block_bytes: u32,
    pub(super) crcs: Rc<[u32]>,
}

impl Extent {
    pub(super) fn to_rec(&self) -> ExtentRec {
        ExtentRec {
            volume_id: self.vol.id,
            record_offset: self.record_offset,
            data_offset: self.data_offset,
            len: self.len,
            span_bytes: self.span_bytes,
            block_bytes: self.block_bytes,
            crcs: self.crcs.clone(),
        }
    }
}

/// Bytes one object takes in the index snapshot.
fn snapshot_object_bytes(ns: &str, key: &str, o: &Object) -> u64 {
    format::snapshot_object_bytes(
        ns.len(),
        key.len(),
        o.meta.len(),
        o.extents.iter().map(|e| e.crcs.len()),
    )
}

/// The smallest string greater than every string starting with `cp`, when cheaply computable
/// (last byte ASCII below 0x7f, the usual case for "/").
fn seek_past(cp: &str) -> Option<String> {
    let last = *cp.as_bytes().last()?;
    if last < 0x7f {
        let mut s = cp[..cp.len() - 1].to_string();
        s.push((last + 1) as char);
        Some(s)
    } else {
        None
    }
}

/// Count one more reference from `n`'s extents to their records (a record's first makes it live).
fn add_refs(vols: &mut Vols, n: &Object) {
    for e in &n.extents {
        let v = vols
            .map
            .get_mut(&e.vol.id)
            .expect("extent volume registered");
        let r = v.records.entry(e.record_offset).or_insert(RecInfo {
            span_bytes: e.span_bytes,
            refs: 0,
        });
        if r.refs == 0 {
            v.live_bytes += e.span_bytes;
        }
        assert_eq!(r.span_bytes, e.span_bytes, "record span mismatch");
        r.refs += 1;
        e.life.dead.set(false);
    }
}

/// Count one reference less from `o`'s extents to their records (a record's last kills it).
fn drop_refs(vols: &mut Vols, o: &Object) {
    for e in &o.extents {
        let v = vols
            .map
            .get_mut(&e.vol.id)
            .expect("extent volume registered");
        let r = v
            .records
            .get_mut(&e.record_offset)
            .expect("live record registered");
        assert!(r.refs > 0);
        r.refs -= 1;
        if r.refs == 0 {
            v.live_bytes -= r.span_bytes;
            v.records.remove(&e.record_offset);
            e.life.dead.set(true);
        }
    }
}

/// Remove `ns/key` from the index (and `ns` once empty); returns the removed object.
fn remove_key(idx: &mut Index, ns: &str, key: &str) -> Option<Rc<Object>> {
    let old = idx.get_mut(ns).and_then(|m| m.remove(key));
    if idx.get(ns).is_some_and(|m| m.is_empty()) {
        idx.remove(ns);
    }
    old
}

impl Shard {
    /// The extent `e` names, sharing the record's life with every other extent of the record.
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
        let life = match v.lives.get(&e.record_offset).and_then(Weak::upgrade) {
            Some(l) if l.span_bytes == e.span_bytes => l,
            Some(l) => {
                return Err(Error::corrupt(format!(
                    "{}: record at {} named with span {} and {}",
                    v.file.path.display(),
                    e.record_offset,
                    l.span_bytes,
                    e.span_bytes
                )))
            }
            None => {
                let l = Rc::new(RecordLife {
                    vol: v.file.clone(),
                    record_offset: e.record_offset,
                    span_bytes: e.span_bytes,
                    dead: Cell::new(false),
                    dropped: self.dropped_records.clone(),
                });
                v.lives.insert(e.record_offset, Rc::downgrade(&l));
                l
            }
        };
        Ok(Extent {
            vol: v.file.clone(),
            life,
            record_offset: e.record_offset,
            data_offset: e.data_offset,
            len: e.len,
            span_bytes: e.span_bytes,
            block_bytes: e.block_bytes,
            crcs: e.crcs.clone(),
        })
    }

    /// The object at `ns/key` as the batch so far leaves it: `overlay`, else the index.
    pub(super) fn lookup(&self, overlay: &Overlay, ns: &str, key: &str) -> Option<Rc<Object>> {
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

    /// The object a PUT entry makes: one extent, the record written.
    pub(super) fn plan_put(
        &self,
        seq: u64,
        mtime_ms: u64,
        meta: &Bytes,
        extent: &ExtentRec,
    ) -> Result<Rc<Object>> {
        let ext = self.resolve_extent(extent)?;
        Ok(Rc::new(Object {
            size: ext.len,
            mtime_ms,
            seq,
            meta: meta.clone(),
            extents: vec![ext],
        }))
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
    ) -> Result<(Vec<Change>, Rc<Object>)> {
        let mut extents = Vec::new();
        for (sns, skey, sseq) in sources {
            let src = self
                .lookup(overlay, sns, skey)
                .filter(|o| o.seq == *sseq)
                .ok_or(Error::NotFound)?;
            extents.extend(src.extents.iter().cloned());
        }
        let obj = Rc::new(Object {
            size: extents.iter().map(|e| e.len).sum(),
            mtime_ms,
            seq,
            meta: meta.clone(),
            extents,
        });
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
    ) -> Result<Rc<Object>> {
        let cur = self
            .lookup(overlay, ns, key)
            .filter(|o| o.seq == seq)
            .ok_or(Error::PreconditionFailed)?;
        let mut extents = cur.extents.clone();
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
                crcs: old.crcs.clone(),
            };
            extents[m.extent_index as usize] = self.resolve_extent(&rec)?;
        }
        Ok(Rc::new(Object {
            size: cur.size,
            mtime_ms: cur.mtime_ms,
            seq: cur.seq,
            meta: cur.meta.clone(),
            extents,
        }))
    }

    /// Apply planned changes to the index and the per-volume live-record accounting.
    pub(super) fn apply_changes(&self, changes: Vec<Change>) {
        let mut idx = self.index.borrow_mut();
        let mut vols = self.vols.borrow_mut();
        let mut snapshot_bytes = self.snapshot_bytes.get();
        for (ns, key, new) in changes {
            if let Some(n) = &new {
                snapshot_bytes += snapshot_object_bytes(&ns, &key, n);
                add_refs(&mut vols, n);
            }
            let old = match new {
                Some(n) => idx.entry(ns.clone()).or_default().insert(key.clone(), n),
                None => remove_key(&mut idx, &ns, &key),
            };
            if let Some(o) = &old {
                snapshot_bytes -= snapshot_object_bytes(&ns, &key, o);
                drop_refs(&mut vols, o);
                let same_version =
                    matches!(idx.get(&ns).and_then(|m| m.get(&key)), Some(n) if n.seq == o.seq);
                if !same_version {
                    if let Some(c) = self.cache.borrow_mut().as_mut() {
                        c.remove(o.seq);
                    }
                }
            }
        }
        let n: usize = idx.values().map(|m| m.len()).sum();
        self.n_objects.set(n as u64);
        assert!(snapshot_bytes >= format::SNAPSHOT_EMPTY_BYTES);
        self.snapshot_bytes.set(snapshot_bytes);
    }

    /// `Shard::list`: keys of `ns` after `after` with `prefix`, collapsed at `delimiter`.
    pub(super) fn list_keys(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<&str>,
        limit: usize,
    ) -> Vec<ListItem> {
        let mut out = Vec::new();
        if limit == 0 {
            return out;
        }
        let idx = self.index.borrow();
        let Some(m) = idx.get(ns) else { return out };
        let delim = delimiter.filter(|d| !d.is_empty());
        let mut start: Bound<String> = Bound::Included(prefix.to_string());
        let mut skip: Option<String> = None;
        if let Some(a) = after {
            if a >= prefix {
                // Keys strictly after `a`. A common prefix that contains `a` is still listed
                // when keys after `a` fall in it (S3's start-after semantics); callers that
                // want to skip a whole prefix pass an `after` past all of its keys.
                start = Bound::Excluded(a.to_string());
            }
        }
        'outer: loop {
            let range = m.range::<str, _>((start.as_ref().map(|s| s.as_str()), Bound::Unbounded));
            for (k, o) in range {
                if !k.starts_with(prefix) {
                    break 'outer;
                }
                if let Some(s) = &skip {
                    if k.starts_with(s.as_str()) {
                        continue;
                    }
                    skip = None;
                }
                if let Some(d) = delim {
                    if let Some(i) = k[prefix.len()..].find(d) {
                        let cp = k[..prefix.len() + i + d.len()].to_string();
                        let next = seek_past(&cp);
                        if next.is_none() {
                            skip = Some(cp.clone());
                        }
                        out.push(ListItem::Prefix(cp));
                        if out.len() >= limit {
                            break 'outer;
                        }
                        if let Some(n) = next {
                            start = Bound::Included(n);
                            continue 'outer;
                        }
                        continue;
                    }
                }
                out.push(ListItem::Object {
                    key: k.clone(),
                    obj: o.clone(),
                });
                if out.len() >= limit {
                    break 'outer;
                }
            }
            break;
        }
        out
    }
}
