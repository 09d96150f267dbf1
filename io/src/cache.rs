//! Per-shard object cache: S3-FIFO (small FIFO + main FIFO + ghost FIFO), bounded in bytes,
//! keyed by object `seq` (a new version has a new seq, so overwrites never serve stale bytes).

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;

struct Entry {
    data: Bytes,
    /// Accesses since insertion (saturating at 3), as in S3-FIFO.
    freq: u8,
    in_main: bool,
}

/// S3-FIFO cache of whole objects' bytes.
pub struct Cache {
    capacity_bytes: u64,
    small_capacity_bytes: u64,
    small_bytes: u64,
    main_bytes: u64,
    map: HashMap<u64, Entry>,
    small: VecDeque<u64>,
    main: VecDeque<u64>,
    ghost: VecDeque<u64>,
    ghost_set: HashSet<u64>,
    ghost_capacity_entries: usize,
}

impl Cache {
    /// A cache holding at most `capacity_bytes` of object data.
    pub fn new(capacity_bytes: u64) -> Cache {
        Cache {
            capacity_bytes,
            small_capacity_bytes: capacity_bytes / 10,
            small_bytes: 0,
            main_bytes: 0,
            map: HashMap::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashSet::new(),
            ghost_capacity_entries: 4096,
        }
    }

    /// Bytes currently cached.
    pub fn used_bytes(&self) -> u64 {
        self.small_bytes + self.main_bytes
    }

    /// Look up an object version.
    pub fn get(&mut self, seq: u64) -> Option<Bytes> {
        let e = self.map.get_mut(&seq)?;
        e.freq = (e.freq + 1).min(3);
        Some(e.data.clone())
    }

    /// Insert an object version's whole bytes.
    pub fn insert(&mut self, seq: u64, data: Bytes) {
        let size_bytes = data.len() as u64;
        if size_bytes > self.capacity_bytes || self.map.contains_key(&seq) {
            return;
        }
        // Ghost hit: the object was evicted from small recently; it goes straight to main.
        let in_main = self.ghost_set.remove(&seq);
        if in_main {
            self.main.push_back(seq);
            self.main_bytes += size_bytes;
        } else {
            self.small.push_back(seq);
            self.small_bytes += size_bytes;
        }
        self.map.insert(
            seq,
            Entry {
                data,
                freq: 0,
                in_main,
            },
        );
        self.evict();
        assert!(self.used_bytes() <= self.capacity_bytes);
    }

    /// Drop an object version (deleted or overwritten).
    pub fn remove(&mut self, seq: u64) {
        if let Some(e) = self.map.remove(&seq) {
            let n = e.data.len() as u64;
            if e.in_main {
                self.main_bytes -= n;
            } else {
                self.small_bytes -= n;
            }
        }
    }

    fn evict(&mut self) {
        while self.used_bytes() > self.capacity_bytes {
            if self.small_bytes > self.small_capacity_bytes || self.main.is_empty() {
                self.evict_small();
            } else {
                self.evict_main();
            }
        }
    }

    fn evict_small(&mut self) {
        while let Some(seq) = self.small.pop_front() {
            let Some(e) = self.map.get_mut(&seq) else {
                continue;
            };
            if e.in_main {
                continue; // stale queue slot
            }
            let n = e.data.len() as u64;
            self.small_bytes -= n;
            if e.freq > 0 {
                e.in_main = true;
                e.freq = 0;
                self.main_bytes += n;
                self.main.push_back(seq);
            } else {
                self.map.remove(&seq);
                self.ghost.push_back(seq);
                self.ghost_set.insert(seq);
                while self.ghost.len() > self.ghost_capacity_entries {
                    if let Some(g) = self.ghost.pop_front() {
                        self.ghost_set.remove(&g);
                    }
                }
            }
            return;
        }
        // small is empty: fall back to main.
        if !self.main.is_empty() {
            self.evict_main();
        }
    }

    fn evict_main(&mut self) {
        while let Some(seq) = self.main.pop_front() {
            let Some(e) = self.map.get_mut(&seq) else {
                continue;
            };
            if !e.in_main {
                continue;
            }
            if e.freq > 0 {
                e.freq -= 1;
                self.main.push_back(seq);
                continue;
            }
            let n = e.data.len() as u64;
            self.main_bytes -= n;
            self.map.remove(&seq);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_scan_resistant() {
        let mut c = Cache::new(100 * 10);
        // A hot set of 5 objects, accessed repeatedly.
        for s in 0..5u64 {
            c.insert(s, Bytes::from(vec![0u8; 100]));
            c.get(s);
        }
        // A scan of 100 one-hit objects.
        for s in 100..200u64 {
            c.insert(s, Bytes::from(vec![0u8; 100]));
            assert!(c.used_bytes() <= 1000);
            for h in 0..5u64 {
                c.get(h);
            }
        }
        for h in 0..5u64 {
            assert!(c.get(h).is_some(), "hot object {h} evicted by a scan");
        }
        c.remove(0);
        assert!(c.get(0).is_none());
    }
}
