//! Objects' metadata in memory (ADR 21): the `Meta` bytes a handle carries, and the index's
//! dictionary of metadata templates.
//!
//! `meta` is opaque to the engine, but a server's metadata of many objects is mostly the same
//! bytes around one unique run: a content type and field tags around a hex digest. The index
//! splits each small `meta` at its longest run of lower-case hex digits into a *template*
//! (the bytes before and after the run, and the run's length), interned once per shard and
//! counted, and the run itself, packed two digits a byte into the object's arena piece. A
//! handle rebuilds the bytes into `Meta`'s inline buffer: no allocation, no I/O. Metadata that
//! has no such run, is longer than `META_INLINE_BYTES`, or whose template would be long (user
//! metadata), stays verbatim in the arena.

use std::collections::HashMap;

use bytes::Bytes;

/// The longest metadata a handle holds inline (and the longest the index templates).
pub const META_INLINE_BYTES: usize = 104;
/// Shortest hex run worth a template (a 64-bit digest in hex).
const MIN_HEX_RUN: usize = 16;
/// Longest template (bytes before and after the run): longer ones (user metadata) would
/// make one template per object, so such metadata stays verbatim.
const MAX_TEMPLATE_BYTES: usize = 64;
/// Most templates a shard keeps; metadata of a new shape past it stays verbatim.
pub(super) const MAX_TEMPLATES: usize = 1 << 16;

/// An object's metadata as a handle carries it: inline (rebuilt from the index's compact form)
/// or a shared slice. Derefs to the bytes given at `finish`/`compose`.
#[derive(Clone)]
pub struct Meta(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        buf: [u8; META_INLINE_BYTES],
    },
    Shared(Bytes),
}

const _: () = assert!(META_INLINE_BYTES <= u8::MAX as usize);

impl Meta {
    /// The bytes as a `Bytes` (copies inline bytes: one allocation).
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(self),
            Repr::Shared(b) => b.clone(),
        }
    }
}

impl Default for Meta {
    fn default() -> Self {
        Meta(Repr::Shared(Bytes::new()))
    }
}

impl From<Bytes> for Meta {
    fn from(b: Bytes) -> Self {
        Meta(Repr::Shared(b))
    }
}

impl std::ops::Deref for Meta {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..*len as usize],
            Repr::Shared(b) => b,
        }
    }
}

impl AsRef<[u8]> for Meta {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Meta {
    fn eq(&self, other: &Meta) -> bool {
        **self == **other
    }
}

impl Eq for Meta {}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Meta({:?})", Bytes::copy_from_slice(self))
    }
}

/// Value of each byte as a lower-case hex digit, `NOT_HEX` for the others: one load per byte
/// in `split` and `pack_hex`, which every stored object (PUT, snapshot load) runs over its
/// metadata.
const HEX_VALUE: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            b'0'..=b'9' => c as u8 - b'0',
            b'a'..=b'f' => c as u8 - b'a' + 10,
            _ => NOT_HEX,
        };
        c += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

fn hex_digit(c: u8) -> Option<u8> {
    let v = HEX_VALUE[c as usize];
    (v != NOT_HEX).then_some(v)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Where `meta` would split: (start, length in digits, even) of its longest lower-case hex run,
/// when the metadata can be templated at all.
pub(super) fn split(meta: &[u8]) -> Option<(usize, usize)> {
    if meta.len() > META_INLINE_BYTES {
        return None;
    }
    let (mut best, mut run_start) = ((0, 0), None);
    for (i, &c) in meta.iter().chain(std::iter::once(&b'-')).enumerate() {
        match (hex_digit(c).is_some() && i < meta.len(), run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(s)) => {
                if i - s > best.1 {
                    best = (s, i - s);
                }
                run_start = None;
            }
            _ => {}
        }
    }
    let (start, len) = (best.0, best.1 & !1);
    (len >= MIN_HEX_RUN && meta.len() - len <= MAX_TEMPLATE_BYTES).then_some((start, len))
}

/// Packs the hex run `digits` (even length, lower-case) two digits a byte into `out`;
/// returns the bytes written.
pub(super) fn pack_hex(digits: &[u8], out: &mut [u8]) -> usize {
    for (p, o) in digits.chunks_exact(2).zip(out.iter_mut()) {
        let hi = hex_digit(p[0]).expect("hex run");
        let lo = hex_digit(p[1]).expect("hex run");
        *o = hi << 4 | lo;
    }
    digits.len() / 2
}

/// A template: the bytes before the run, the run's length in digits, the bytes after it.
struct Shape {
    /// Prefix then suffix.
    bytes: Box<[u8]>,
    prefix_len: u8,
    run_len: u8,
}

impl Shape {
    fn is(&self, meta: &[u8], start: usize, run_len: usize) -> bool {
        let (pre, post) = self.bytes.split_at(self.prefix_len as usize);
        self.run_len as usize == run_len
            && pre == &meta[..start]
            && post == &meta[start + run_len..]
    }
}

/// The dictionary's key of a template: a 64-bit hash of its parts (no allocation to look one
/// up). Two shapes of the same hash: the second stays verbatim.
fn shape_hash(pre: &[u8], run_len: usize, post: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (pre, run_len, post).hash(&mut h);
    h.finish()
}

struct Template {
    shape: Shape,
    refs: u32,
}

/// The shard's templates, counted by the slots that use them; a template no slot uses is
/// freed and its id reused.
#[derive(Default)]
pub(super) struct Dict {
    templates: Vec<Option<Template>>,
    free: Vec<u32>,
    ids: HashMap<u64, u32>,
}

impl Dict {
    /// The template id for `meta` split at (`start`, `run_len`), counted once more; None when
    /// the dictionary is full.
    pub(super) fn intern(&mut self, meta: &[u8], start: usize, run_len: usize) -> Option<u32> {
        let hash = shape_hash(&meta[..start], run_len, &meta[start + run_len..]);
        if let Some(&id) = self.ids.get(&hash) {
            let t = self.templates[id as usize]
                .as_mut()
                .expect("interned template");
            if !t.shape.is(meta, start, run_len) {
                return None;
            }
            t.refs += 1;
            return Some(id);
        }
        if self.ids.len() >= MAX_TEMPLATES {
            return None;
        }
        let mut bytes = Vec::with_capacity(meta.len() - run_len);
        bytes.extend_from_slice(&meta[..start]);
        bytes.extend_from_slice(&meta[start + run_len..]);
        let t = Template {
            shape: Shape {
                bytes: bytes.into_boxed_slice(),
                prefix_len: u8::try_from(start).expect("bounded by META_INLINE_BYTES"),
                run_len: u8::try_from(run_len).expect("bounded by META_INLINE_BYTES"),
            },
            refs: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.templates[id as usize] = Some(t);
                id
            }
            None => {
                self.templates.push(Some(t));
                (self.templates.len() - 1) as u32
            }
        };
        self.ids.insert(hash, id);
        Some(id)
    }

    /// One slot less uses template `id`.
    pub(super) fn release(&mut self, id: u32) {
        let t = self.templates[id as usize]
            .as_mut()
            .expect("released template is interned");
        t.refs -= 1;
        if t.refs == 0 {
            let t = self.templates[id as usize]
                .take()
                .expect("interned template");
            let (pre, post) = t.shape.bytes.split_at(t.shape.prefix_len as usize);
            self.ids
                .remove(&shape_hash(pre, t.shape.run_len as usize, post));
            self.free.push(id);
        }
    }

    /// (whole metadata length, packed run bytes) of template `id`.
    pub(super) fn lens(&self, id: u32) -> (usize, usize) {
        let s = &self.templates[id as usize]
            .as_ref()
            .expect("template in use")
            .shape;
        (s.bytes.len() + s.run_len as usize, s.run_len as usize / 2)
    }

    /// The metadata of template `id` with its run packed as `packed`, inline.
    pub(super) fn rebuild(&self, id: u32, packed: &[u8]) -> Meta {
        let s = &self.templates[id as usize]
            .as_ref()
            .expect("template in use")
            .shape;
        let (pre, post) = s.bytes.split_at(s.prefix_len as usize);
        let mut buf = [0u8; META_INLINE_BYTES];
        let mut n = 0;
        buf[..pre.len()].copy_from_slice(pre);
        n += pre.len();
        for &b in packed {
            buf[n] = HEX[(b >> 4) as usize];
            buf[n + 1] = HEX[(b & 15) as usize];
            n += 2;
        }
        buf[n..n + post.len()].copy_from_slice(post);
        n += post.len();
        Meta(Repr::Inline { len: n as u8, buf })
    }

    /// Templates in use.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(d: &mut Dict, meta: &[u8]) -> Option<u32> {
        let (start, run) = split(meta)?;
        let id = d.intern(meta, start, run)?;
        let mut buf = [0u8; META_INLINE_BYTES / 2];
        let n = pack_hex(&meta[start..start + run], &mut buf);
        let packed = &buf[..n];
        assert_eq!(packed.len(), d.lens(id).1);
        assert_eq!(d.lens(id).0, meta.len());
        assert_eq!(&*d.rebuild(id, packed), meta);
        Some(id)
    }

    #[test]
    fn templates_round_trip_and_are_shared() {
        let mut d = Dict::default();
        let a = b"\x01\x01\x20\x000123456789abcdef0123456789abcdef\x02\x13\x00binary/octet-stream";
        let b = b"\x01\x01\x20\x00fedcba98765432100123456789abcdef\x02\x13\x00binary/octet-stream";
        let ia = round_trip(&mut d, a).expect("templated");
        let ib = round_trip(&mut d, b).expect("templated");
        assert_eq!(ia, ib);
        assert_eq!(d.len(), 1);
        // Odd-length run: the last digit goes to the suffix. Multipart-like "hex-N".
        let c = b"xx0123456789abcdef0-12";
        let ic = round_trip(&mut d, c).expect("templated");
        assert_ne!(ic, ia);
        d.release(ia);
        d.release(ib);
        assert_eq!(d.len(), 1);
        d.release(ic);
        assert_eq!(d.len(), 0);
        // Ids are reused.
        let again = round_trip(&mut d, a).expect("templated");
        assert!(again == ia || again == ic);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn what_stays_verbatim() {
        // No run, a short run, upper-case hex, too long, a long template.
        assert_eq!(split(b""), None);
        assert_eq!(split(b"binary/octet-stream"), None);
        assert_eq!(split(b"0123456789abcde"), None);
        assert_eq!(split(b"0123456789ABCDEF0123"), None);
        assert_eq!(split(&[b'a'; META_INLINE_BYTES + 1]), None);
        let mut long = vec![b'x'; MAX_TEMPLATE_BYTES + 1];
        long.extend_from_slice(b"0123456789abcdef");
        assert_eq!(split(&long), None);
        assert_eq!(split(b"0123456789abcdef"), Some((0, 16)));
        assert_eq!(split(b"z0123456789abcdef01z"), Some((1, 18)));
        // The longest run wins.
        assert_eq!(
            split(b"0123456789abcdef-0123456789abcdef0123"),
            Some((17, 20))
        );
    }

    #[test]
    fn the_dictionary_is_bounded() {
        let mut d = Dict::default();
        for i in 0..MAX_TEMPLATES {
            let m = format!("{i:08}-0123456789abcdef");
            assert!(round_trip(&mut d, m.as_bytes()).is_some());
        }
        assert_eq!(round_trip(&mut d, b"new-0123456789abcdef"), None);
        assert_eq!(d.len(), MAX_TEMPLATES);
    }
}
