//! Listing (ADR 17): the keys of a namespace after a start, with a prefix, collapsed at a
//! delimiter, in pages.

use std::ops::Bound;

use super::{ListItem, Shard};

impl Shard {
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
        let vols = self.vols.borrow();
        let hold = self.hold();
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
        let Some(m) = idx.space(ns) else {
            return out;
        };
        'outer: loop {
            for (k, o) in m.range(start.as_ref().map(|s| s.as_str()), idx.pager()) {
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
                    key: k.to_string(),
                    obj: idx.handle(o, &vols, &hold),
                });
                if out.len() >= limit {
                    break 'outer;
                }
            }
            break;
        }
        drop((idx, vols));
        self.trim_index();
        out
    }
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
