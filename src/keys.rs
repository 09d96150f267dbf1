//! Access keys: the root key plus the entries of a keys file, each read-write or read-only and
//! optionally limited to some buckets; re-read on SIGHUP.
//!
//! A keys file (`--keys-file`, or a `[[keys]]` section of the `--config` file) is TOML:
//!
//! ```toml
//! [[keys]]
//! access_key = "reader"            # 3..=128 of A-Z a-z 0-9 . _ -
//! secret_key = "reader-secret-1"   # 8..=128 printable ASCII, no space
//! access = "read-only"             # or "read-write"
//! buckets = ["logs", "team-*"]     # optional: exact names, or a prefix ending in `*`
//! ```
//!
//! Read operations are those whose S3 name starts with `Get`, `Head` or `List`; every other
//! operation writes. A key may read a bucket in its scope and, when read-write, write it.
//! The root key (`--access-key`/`--secret-key`, `MINIO_ROOT_USER`/`MINIO_ROOT_PASSWORD`) is
//! read-write on every bucket and is never read from the file.
//!
//! Hot path: [`with_key`] reads a per-core copy of the table (a thread-local), refreshed when
//! the global generation number changes: one atomic load per request, no lock, no shared
//! read-modify-write. A reload builds a new table, swaps it in under a mutex and bumps the
//! generation; each core copies it on its next request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Largest keys file read, bytes.
pub const MAX_KEYS_FILE_BYTES: u64 = crate::cfgfile::MAX_CONFIG_FILE_BYTES;
/// Most entries in a keys file.
pub const MAX_KEYS: usize = 1000;
/// Most bucket patterns of one key.
pub const MAX_BUCKET_PATTERNS: usize = 100;
/// Access key length, characters.
pub const ACCESS_KEY_CHARS: std::ops::RangeInclusive<usize> = 3..=128;
/// Secret key length, characters.
pub const SECRET_KEY_CHARS: std::ops::RangeInclusive<usize> = 8..=128;
/// Longest bucket pattern (a bucket name is at most 63 characters, plus `*`).
pub const MAX_PATTERN_CHARS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

/// Which buckets a key reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BucketPattern {
    /// Exactly this bucket.
    Exact(String),
    /// Every bucket whose name starts with this (written `prefix*`; `*` alone is every bucket).
    Prefix(String),
}

impl BucketPattern {
    fn matches(&self, bucket: &str) -> bool {
        match self {
            BucketPattern::Exact(n) => n == bucket,
            BucketPattern::Prefix(p) => bucket.starts_with(p.as_str()),
        }
    }
}

impl std::fmt::Display for BucketPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BucketPattern::Exact(n) => f.write_str(n),
            BucketPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub access_key: String,
    pub secret_key: String,
    pub access: Access,
    /// `None`: every bucket.
    pub buckets: Option<Vec<BucketPattern>>,
}

impl Key {
    pub fn root(access_key: &str, secret_key: &str) -> Key {
        Key {
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            access: Access::ReadWrite,
            buckets: None,
        }
    }

    fn in_scope(&self, bucket: &str) -> bool {
        self.buckets
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p.matches(bucket)))
    }

    /// Whether this key may read `bucket` (its objects, listings, metadata).
    pub fn can_read(&self, bucket: &str) -> bool {
        self.in_scope(bucket)
    }

    /// Whether this key may change `bucket` or its objects (or create it).
    pub fn can_write(&self, bucket: &str) -> bool {
        self.access == Access::ReadWrite && self.in_scope(bucket)
    }

    /// Read-write on every bucket: no check needed.
    pub fn is_unrestricted(&self) -> bool {
        self.access == Access::ReadWrite && self.buckets.is_none()
    }
}

/// Every key the server accepts, by access key.
#[derive(Clone, Debug, Default)]
pub struct KeyTable {
    keys: Vec<Key>,
    index: HashMap<String, usize>,
}

impl KeyTable {
    /// The root key and the file's keys; an access key given twice is an error.
    pub fn new(root: Key, extra: Vec<Key>) -> Result<KeyTable, String> {
        let mut t = KeyTable::default();
        for k in std::iter::once(root).chain(extra) {
            if t.index.contains_key(&k.access_key) {
                return Err(format!(
                    "access key `{}` is given twice (the root key counts)",
                    k.access_key.escape_debug()
                ));
            }
            t.index.insert(k.access_key.clone(), t.keys.len());
            t.keys.push(k);
        }
        Ok(t)
    }

    pub fn get(&self, access_key: &str) -> Option<&Key> {
        self.index.get(access_key).map(|&i| &self.keys[i])
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }
}

// ---- parsing --------------------------------------------------------------------------------

/// Parses a keys file: its only top-level key is `keys`, an array of tables.
pub fn parse_keys_file(bytes: &[u8]) -> Result<Vec<Key>, String> {
    if bytes.len() as u64 > MAX_KEYS_FILE_BYTES {
        return Err(format!("larger than {MAX_KEYS_FILE_BYTES} bytes"));
    }
    let table = crate::cfgfile::parse_toml(bytes)?;
    if let Some(k) = table.keys().find(|k| *k != "keys") {
        return Err(format!(
            "unknown key `{}` (a keys file holds [[keys]] entries only)",
            k.escape_debug()
        ));
    }
    match table.get("keys") {
        Some(v) => parse_keys_section(v),
        None => Ok(Vec::new()),
    }
}

/// Parses the `keys` array (of a keys file or of the config file).
pub fn parse_keys_section(v: &toml::Value) -> Result<Vec<Key>, String> {
    let toml::Value::Array(entries) = v else {
        return Err("`keys` must be an array of [[keys]] tables".into());
    };
    if entries.len() > MAX_KEYS {
        return Err(format!(
            "{} keys; at most {MAX_KEYS} are allowed",
            entries.len()
        ));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| parse_entry(e).map_err(|m| format!("keys[{i}]: {m}")))
        .collect()
}

fn parse_entry(e: &toml::Value) -> Result<Key, String> {
    let toml::Value::Table(t) = e else {
        return Err("each entry must be a table ([[keys]])".into());
    };
    let allowed = ["access_key", "secret_key", "access", "buckets"];
    if let Some(k) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{}` (allowed: {})",
            k.escape_debug(),
            allowed.join(", ")
        ));
    }
    let string = |name: &str| -> Result<&str, String> {
        match t.get(name) {
            Some(toml::Value::String(s)) => Ok(s),
            Some(_) => Err(format!("`{name}` must be a string")),
            None => Err(format!("`{name}` is missing")),
        }
    };
    let access_key = string("access_key")?;
    check_access_key(access_key)?;
    let secret_key = string("secret_key")?;
    check_secret_key(secret_key).map_err(|m| format!("`{access_key}`: {m}"))?;
    let access = match string("access")? {
        "read-write" => Access::ReadWrite,
        "read-only" => Access::ReadOnly,
        other => {
            return Err(format!(
                "`{access_key}`: access {other:?} is not \"read-write\" or \"read-only\""
            ))
        }
    };
    let buckets = match t.get("buckets") {
        None => None,
        Some(v) => parse_patterns(v).map_err(|m| format!("`{access_key}`: {m}"))?,
    };
    Ok(Key {
        access_key: access_key.to_string(),
        secret_key: secret_key.to_string(),
        access,
        buckets,
    })
}

fn check_access_key(k: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !ACCESS_KEY_CHARS.contains(&k.len()) || !k.chars().all(ok_char) {
        return Err(format!(
            "access_key {k:?} must be {}..={} characters of A-Z a-z 0-9 . _ -",
            ACCESS_KEY_CHARS.start(),
            ACCESS_KEY_CHARS.end()
        ));
    }
    Ok(())
}

fn check_secret_key(s: &str) -> Result<(), String> {
    if !SECRET_KEY_CHARS.contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "secret_key must be {}..={} printable ASCII characters without spaces",
            SECRET_KEY_CHARS.start(),
            SECRET_KEY_CHARS.end()
        ));
    }
    Ok(())
}

/// `buckets = [...]`: `None` when it holds `"*"` (every bucket).
fn parse_patterns(v: &toml::Value) -> Result<Option<Vec<BucketPattern>>, String> {
    let toml::Value::Array(items) = v else {
        return Err("`buckets` must be an array of strings".into());
    };
    if items.is_empty() {
        return Err("`buckets` is empty (leave it out for every bucket)".into());
    }
    if items.len() > MAX_BUCKET_PATTERNS {
        return Err(format!(
            "{} bucket patterns; at most {MAX_BUCKET_PATTERNS}",
            items.len()
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let toml::Value::String(p) = it else {
            return Err("`buckets` must be an array of strings".into());
        };
        let ok_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
        let (name, prefix) = match p.strip_suffix('*') {
            Some(n) => (n, true),
            None => (p.as_str(), false),
        };
        if p.len() > MAX_PATTERN_CHARS || !name.chars().all(ok_char) || (name.is_empty() && !prefix)
        {
            return Err(format!(
                "bucket pattern {p:?} must be a bucket name (a-z 0-9 . -), or a prefix of one \
                 ending in `*`"
            ));
        }
        if prefix && name.is_empty() {
            return Ok(None);
        }
        out.push(if prefix {
            BucketPattern::Prefix(name.to_string())
        } else {
            BucketPattern::Exact(name.to_string())
        });
    }
    Ok(Some(out))
}

// ---- where keys come from, and reload -------------------------------------------------------

/// Where the extra keys are read from (again on SIGHUP).
#[derive(Clone, Debug)]
pub enum Source {
    /// A `--keys-file`.
    KeysFile(PathBuf),
    /// The `[[keys]]` section of the `--config` file.
    ConfigSection(PathBuf),
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::KeysFile(p) | Source::ConfigSection(p) => p,
        }
    }

    /// Reads the keys (bounded, one-line errors naming the file).
    pub fn load(&self) -> Result<Vec<Key>, String> {
        let shown = self.path().display();
        let bytes = read_bounded(self.path()).map_err(|e| format!("{shown}: {e}"))?;
        match self {
            Source::KeysFile(_) => parse_keys_file(&bytes),
            Source::ConfigSection(_) => {
                let table = crate::cfgfile::parse_toml(&bytes)?;
                match table.get(crate::cfgfile::KEYS_SECTION) {
                    Some(v) => parse_keys_section(v),
                    None => Ok(Vec::new()),
                }
            }
        }
        .map_err(|e| format!("{shown}: {e}"))
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut buf = Vec::new();
    f.take(MAX_KEYS_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_KEYS_FILE_BYTES {
        return Err(format!("larger than {MAX_KEYS_FILE_BYTES} bytes"));
    }
    Ok(buf)
}

struct Installed {
    table: Arc<KeyTable>,
    root: Key,
    source: Option<Source>,
}

static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);
/// Bumped (under the mutex) each time a table is installed; cores compare it per request.
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn install(table: KeyTable, root: Key, source: Option<Source>) {
    let mut g = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    *g = Some(Installed {
        table: Arc::new(table),
        root,
        source,
    });
    GENERATION.fetch_add(1, Ordering::Release);
}

/// Builds the table (root key plus the source's keys) without installing it.
pub fn build(root: &Key, source: Option<&Source>) -> Result<KeyTable, String> {
    let extra = match source {
        Some(s) => s.load()?,
        None => Vec::new(),
    };
    KeyTable::new(root.clone(), extra).map_err(|e| match source {
        Some(s) => format!("{}: {e}", s.path().display()),
        None => e,
    })
}

/// Installs the root key and the source's keys; call once at start. Returns how many keys.
pub fn init(root: Key, source: Option<Source>) -> Result<usize, String> {
    let table = build(&root, source.as_ref())?;
    let n = table.keys.len();
    install(table, root, source);
    Ok(n)
}

/// Re-reads the keys source (SIGHUP). On error the keys in force stay as they are.
pub fn reload() -> Result<usize, String> {
    let (root, source) = {
        let g = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = g.as_ref() else {
            return Err("no keys installed yet".into());
        };
        (i.root.clone(), i.source.clone())
    };
    let Some(source) = source else {
        return Ok(1); // only the root key: nothing to read
    };
    let table = build(&root, Some(&source))?;
    let n = table.keys.len();
    install(table, root, Some(source));
    Ok(n)
}

/// Starts a thread that re-reads the keys on every SIGHUP (and only the keys). The handler is
/// added to the process's SIGHUP handlers (signal-hook), replacing none.
pub fn reload_on_sighup() -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("bale-keys-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                match reload() {
                    Ok(n) => tracing::info!(keys = n, "SIGHUP: access keys reloaded"),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: access keys NOT reloaded; the keys in force stay"
                    ),
                }
            }
        })?;
    Ok(())
}

/// Where the extra keys of these settings come from: `--keys-file`, or the `[[keys]]` section
/// of the `--config` file (not both).
pub fn source_of(args: &crate::config::ServeArgs) -> Result<Option<Source>, String> {
    let in_config = match &args.config {
        Some(c) => crate::cfgfile::read_table(c)?.contains_key(crate::cfgfile::KEYS_SECTION),
        None => false,
    };
    match (&args.keys_file, &args.config) {
        (Some(_), Some(c)) if in_config => Err(format!(
            "keys are given twice: --keys-file and a [[keys]] section in {}",
            c.display()
        )),
        (Some(f), _) => Ok(Some(Source::KeysFile(f.clone()))),
        (None, Some(c)) if in_config => Ok(Some(Source::ConfigSection(c.clone()))),
        _ => Ok(None),
    }
}

// ---- per-core lookup ------------------------------------------------------------------------

/// One key as a core sees it: the key and its own signing-key cache.
pub struct CoreKey {
    pub key: Key,
    signing: RefCell<sigv4::SigningKeyCache>,
}

impl CoreKey {
    /// The SigV4 signing key of this key for `date`/`region`/`service` (cached per core per day).
    pub fn signing_key(&self, date: &str, region: &str, service: &str) -> [u8; 32] {
        self.signing
            .borrow_mut()
            .get(&self.key.secret_key, date, region, service)
    }
}

struct CoreTable {
    generation: u64,
    keys: Vec<CoreKey>,
    index: HashMap<String, usize>,
}

impl CoreTable {
    fn copy_of(t: &KeyTable, generation: u64) -> CoreTable {
        CoreTable {
            generation,
            keys: t
                .keys
                .iter()
                .map(|k| CoreKey {
                    key: k.clone(),
                    signing: RefCell::new(sigv4::SigningKeyCache::new()),
                })
                .collect(),
            index: t.index.clone(),
        }
    }
}

thread_local! {
    static CORE: RefCell<Option<Rc<CoreTable>>> = const { RefCell::new(None) };
}

/// The current table for this core, refreshed when a reload happened.
fn core_table() -> Option<Rc<CoreTable>> {
    let generation = GENERATION.load(Ordering::Acquire);
    CORE.with(|c| {
        if let Some(t) = c.borrow().as_ref() {
            if t.generation == generation {
                return Some(t.clone());
            }
        }
        let fresh = {
            let g = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
            let i = g.as_ref()?;
            Rc::new(CoreTable::copy_of(
                &i.table,
                GENERATION.load(Ordering::Acquire),
            ))
        };
        *c.borrow_mut() = Some(fresh.clone());
        Some(fresh)
    })
}

/// Calls `f` with the key named `access_key` (`None`: unknown, or no keys installed).
pub fn with_key<R>(access_key: &str, f: impl FnOnce(Option<&CoreKey>) -> R) -> R {
    let t = core_table();
    let k = t
        .as_ref()
        .and_then(|t| t.index.get(access_key).map(|&i| &t.keys[i]));
    f(k)
}

/// The secret of `access_key`, if it is a key in force.
pub fn secret_of(access_key: &str) -> Option<String> {
    with_key(access_key, |k| k.map(|k| k.key.secret_key.clone()))
}

/// The table in force (for `bale config check` and tests).
pub fn current() -> Option<Arc<KeyTable>> {
    let g = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    g.as_ref().map(|i| i.table.clone())
}

#[cfg(test)]
mod tests;
