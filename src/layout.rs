//! Data directory layout: which shards live in which directory.
//!
//! Each `--data` directory holds `bale-layout.json` (written once, when the directory is
//! initialised) and one `shard-NNNN/` directory per shard it holds. The layout is fixed at
//! initialisation: the shard count decides where keys live, so changing `--cores` later only
//! changes which core owns which shard, never where an object is.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LAYOUT_FILE: &str = "bale-layout.json";
pub const LAYOUT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirLayout {
    pub version: u32,
    pub dir_index: u32,
    pub dir_count: u32,
    pub shards_per_dir: u32,
    /// Random id shared by every directory of one set, written when the set is initialised
    /// (or, for a set initialised before it existed, at the first start that sees all of its
    /// directories): a directory of another bale at the same position is refused, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_id: Option<String>,
}

/// A fresh set id: 128 random bits, hex.
fn new_set_id() -> String {
    let mut b = [0u8; 16];
    // SAFETY: b is a valid writable buffer of b.len() bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, b.len() as isize, "getrandom for the set id");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What protects objects against the loss of a data directory, in one line for the start log
/// and `bale doctor`. Mirroring and erasure coding are designed (ADR 19) but not built.
pub fn redundancy_line(dirs: usize) -> String {
    if dirs == 1 {
        "redundancy: none (one data directory): losing its disk loses every object".to_string()
    } else {
        format!(
            "redundancy: none ({dirs} data directories, each holding its own shards): losing \
             one disk loses the objects of its shards; mirroring and erasure coding are not \
             built yet (ADR 19)"
        )
    }
}

/// One shard: its global id and its directory.
#[derive(Debug, Clone)]
pub struct ShardPlace {
    pub shard_id: usize,
    pub dir: PathBuf,
}

/// Open or initialise every data directory; returns all shards in id order.
pub fn prepare(dirs: &[PathBuf], default_shards_per_dir: u32) -> anyhow::Result<Vec<ShardPlace>> {
    use anyhow::{bail, Context};
    let dir_count = dirs.len() as u32;
    let mut shards_per_dir: Option<u32> = None;
    let mut layouts = Vec::with_capacity(dirs.len());
    for (i, dir) in dirs.iter().enumerate() {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        // Checked without writing: a full disk must still start (reads and deletes work).
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .with_context(|| format!("data directory {} has a NUL in its name", dir.display()))?;
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
            let e = std::io::Error::last_os_error();
            anyhow::bail!("data directory {} is not writable: {e}", dir.display());
        }
        let path = dir.join(LAYOUT_FILE);
        let layout = if path.exists() {
            let text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let l: DirLayout = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid layout file", path.display()))?;
            if l.version != LAYOUT_VERSION {
                bail!(
                    "{} has layout version {}, this bale reads {}",
                    path.display(),
                    l.version,
                    LAYOUT_VERSION
                );
            }
            if l.dir_index != i as u32 || l.dir_count != dir_count {
                bail!(
                    "{} was initialised as data directory {} of {}, but is given as {} of {}: pass the --data directories in their original order",
                    dir.display(),
                    l.dir_index + 1,
                    l.dir_count,
                    i + 1,
                    dir_count
                );
            }
            Some(l)
        } else {
            None
        };
        if let Some(l) = &layout {
            match shards_per_dir {
                None => shards_per_dir = Some(l.shards_per_dir),
                Some(s) if s != l.shards_per_dir => {
                    bail!("data directories disagree on shards per directory")
                }
                _ => {}
            }
        }
        layouts.push(layout);
    }
    let set_id = check_set_id(dirs, &layouts)?;
    let spd = shards_per_dir.unwrap_or(default_shards_per_dir.max(1));
    for (i, (dir, layout)) in dirs.iter().zip(&layouts).enumerate() {
        if layout.is_none() {
            if layouts.iter().any(|l| l.is_some()) {
                anyhow::bail!(
                    "data directory {} is new but the others are initialised: a set of directories cannot grow",
                    dir.display()
                );
            }
            write_layout(
                dir,
                &DirLayout {
                    version: LAYOUT_VERSION,
                    dir_index: i as u32,
                    dir_count,
                    shards_per_dir: spd,
                    set_id: Some(set_id.clone()),
                },
            )?;
        }
    }
    // A set initialised before set ids existed gets one now (every directory is present).
    for (dir, layout) in dirs.iter().zip(layouts) {
        if let Some(mut l) = layout.filter(|l| l.set_id.is_none()) {
            l.set_id = Some(set_id.clone());
            write_layout(dir, &l)?;
        }
    }
    let mut places = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        for j in 0..spd {
            let shard_id = i * spd as usize + j as usize;
            places.push(ShardPlace {
                shard_id,
                dir: dir.join(format!("shard-{shard_id:04}")),
            });
        }
    }
    Ok(places)
}

/// The set id every initialised directory agrees on (a new one for a new or pre-id set);
/// a directory that belongs to another set is refused.
fn check_set_id(dirs: &[PathBuf], layouts: &[Option<DirLayout>]) -> anyhow::Result<String> {
    let mut seen: Option<(&PathBuf, &str)> = None;
    for (dir, l) in dirs.iter().zip(layouts) {
        let Some(id) = l.as_ref().and_then(|l| l.set_id.as_deref()) else {
            continue;
        };
        match seen {
            None => seen = Some((dir, id)),
            Some((first, fid)) if fid != id => anyhow::bail!(
                "data directory {} belongs to another bale set than {} (set id {id}, not {fid}): \
                 a wrong disk is never used; pass the directories this set was created with",
                dir.display(),
                first.display()
            ),
            _ => {}
        }
    }
    Ok(seen.map_or_else(new_set_id, |(_, id)| id.to_string()))
}

fn write_layout(dir: &Path, layout: &DirLayout) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = dir.join(LAYOUT_FILE);
    let tmp = dir.join(format!("{LAYOUT_FILE}.tmp"));
    let mut f =
        fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(layout)?.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot rename into {}", path.display()))?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_fixed_at_init() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        let b = t.path().join("b");
        let p = prepare(&[a.clone(), b.clone()], 2).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[3].dir, b.join("shard-0003"));
        // A different default later does not change an initialised layout.
        let p2 = prepare(&[a.clone(), b.clone()], 8).unwrap();
        assert_eq!(p2.len(), 4);
        // Swapped order is refused.
        assert!(prepare(&[b.clone(), a.clone()], 2).is_err());
    }

    fn read(dir: &Path) -> DirLayout {
        serde_json::from_str(&fs::read_to_string(dir.join(LAYOUT_FILE)).unwrap()).unwrap()
    }

    #[test]
    fn a_directory_of_another_set_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let (c, d) = (t.path().join("c"), t.path().join("d"));
        prepare(&[a.clone(), b.clone()], 1).unwrap();
        prepare(&[c.clone(), d.clone()], 1).unwrap();
        let (la, lb, lc) = (read(&a), read(&b), read(&c));
        assert_eq!(la.set_id, lb.set_id);
        assert_eq!(la.set_id.as_ref().unwrap().len(), 32);
        assert_ne!(la.set_id, lc.set_id);
        // d is position 2 of 2 like b, but of the other set.
        let e = prepare(&[a.clone(), d.clone()], 1).unwrap_err().to_string();
        assert!(e.contains("belongs to another bale set"), "{e}");
        // The right set still opens, unchanged.
        prepare(&[a.clone(), b.clone()], 1).unwrap();
        assert_eq!(read(&a), la);
    }

    #[test]
    fn a_set_from_before_set_ids_gets_one() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        prepare(&[a.clone(), b.clone()], 1).unwrap();
        for d in [&a, &b] {
            let mut l = read(d);
            l.set_id = None;
            write_layout(d, &l).unwrap();
            assert!(!fs::read_to_string(d.join(LAYOUT_FILE))
                .unwrap()
                .contains("set_id"));
        }
        prepare(&[a.clone(), b.clone()], 1).unwrap();
        assert!(read(&a).set_id.is_some());
        assert_eq!(read(&a).set_id, read(&b).set_id);
    }
}
