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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
    /// The set's redundancy (`none`, `mirror`, `ec:K+M`), written at initialisation; a set
    /// from before the field is `none` (it gets the field at its next start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<String>,
}

/// A fresh set id: 128 random bits, hex.
fn new_set_id() -> String {
    let mut b = [0u8; 16];
    // SAFETY: b is a valid writable buffer of b.len() bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, b.len() as isize, "getrandom for the set id");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What protects objects against the loss of data directories (ADR 19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redundancy {
    /// One copy of every shard, in its home directory.
    None,
    /// Two copies of every shard: its home directory and the next one of the set.
    Mirror,
    /// Sealed volumes erasure-coded into stripes of k data + m parity.
    Ec { k: u32, m: u32 },
}

impl Redundancy {
    /// Parses `none`, `mirror` or `ec:K+M` (the flag's and the layout file's spelling).
    pub fn parse(s: &str) -> Result<Redundancy, String> {
        match s.trim() {
            "none" => Ok(Redundancy::None),
            "mirror" => Ok(Redundancy::Mirror),
            t => {
                let bad = || {
                    format!(
                        "redundancy {t:?} is not one of none, mirror, ec:K+M (for example ec:4+2)"
                    )
                };
                let km = t.strip_prefix("ec:").ok_or_else(bad)?;
                let (k, m) = km.split_once('+').ok_or_else(bad)?;
                let k: u32 = k.parse().map_err(|_| bad())?;
                let m: u32 = m.parse().map_err(|_| bad())?;
                if k == 0 || m == 0 || k + m > 256 {
                    return Err(format!(
                        "redundancy ec:{k}+{m}: k and m must be at least 1 and k+m at most 256"
                    ));
                }
                Ok(Redundancy::Ec { k, m })
            }
        }
    }

    /// The redundancy ADR 19 gives `dirs` directories: 1 none, 2-3 mirror, then erasure
    /// coding 4: 2+2, 5: 3+2, 6-7: 4+2, 8-11: 6+2, 12-13: 8+4, 14+: 10+4.
    pub fn default_for(dirs: usize) -> Redundancy {
        let (k, m) = match dirs {
            0 | 1 => return Redundancy::None,
            2 | 3 => return Redundancy::Mirror,
            4 => (2, 2),
            5 => (3, 2),
            6 | 7 => (4, 2),
            8..=11 => (6, 2),
            12 | 13 => (8, 4),
            _ => (10, 4),
        };
        Redundancy::Ec { k, m }
    }

    /// Checks that `dirs` directories can hold this redundancy.
    pub fn validate(self, dirs: usize) -> Result<(), String> {
        match self {
            Redundancy::None => Ok(()),
            Redundancy::Mirror if dirs < 2 => Err(format!(
                "--redundancy mirror needs at least 2 data directories (got {dirs}): each shard is \
                 kept on two"
            )),
            Redundancy::Mirror => Ok(()),
            Redundancy::Ec { k, m } if (k + m) as usize > dirs => Err(format!(
                "--redundancy ec:{k}+{m} needs k+m = {} data directories, got {dirs}",
                k + m
            )),
            Redundancy::Ec { .. } => Ok(()),
        }
    }

    /// Copies of each shard's open volumes, journal and snapshot (1 + m).
    pub fn copies(self) -> usize {
        match self {
            Redundancy::None => 1,
            Redundancy::Mirror => 2,
            Redundancy::Ec { m, .. } => 1 + m as usize,
        }
    }
}

impl std::fmt::Display for Redundancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Redundancy::None => f.write_str("none"),
            Redundancy::Mirror => f.write_str("mirror"),
            Redundancy::Ec { k, m } => write!(f, "ec:{k}+{m}"),
        }
    }
}

/// The default redundancy by directory count, in words (the start log and `bale doctor`).
pub const DEFAULT_TABLE: &str = "1 dir: none, 2-3: mirror, 4: ec:2+2, 5: ec:3+2, 6-7: ec:4+2, \
                                 8-11: ec:6+2, 12-13: ec:8+4, 14+: ec:10+4";

/// The redundancy to initialise a new set of `dirs` directories with: the flag's, or the
/// default for the count (`Redundancy::default_for`: erasure coding from 4 directories, now
/// that stripes are compacted, ADR 19), said in one INFO line with the table when there is more
/// than one directory.
pub fn choose(flag: Option<Redundancy>, dirs: usize) -> anyhow::Result<Redundancy> {
    match flag {
        Some(r) => {
            r.validate(dirs).map_err(anyhow::Error::msg)?;
            Ok(r)
        }
        None => {
            let d = Redundancy::default_for(dirs);
            // One directory has no choice to explain (the start line says "none"), and a start
            // that fails keeps its single error line.
            if dirs > 1 {
                tracing::info!(
                dirs,
                "new set of {dirs} data directories: redundancy {d}, the default for that count \
                 ({DEFAULT_TABLE}); --redundancy none|mirror|ec:K+M chooses another, fixed from \
                 now on"
                );
            }
            Ok(d)
        }
    }
}

/// What protects objects, in one line for the start log and `bale doctor`.
pub fn redundancy_line(r: Redundancy, dirs: usize, failed: usize) -> String {
    match r {
        Redundancy::None if dirs == 1 => {
            "redundancy: none (one data directory): losing its disk loses every object".to_string()
        }
        Redundancy::None => format!(
            "redundancy: none ({dirs} data directories, each holding its own shards): losing \
             one disk loses the objects of its shards (this set was made without redundancy)"
        ),
        Redundancy::Mirror if failed == 0 => format!(
            "redundancy: mirror ({dirs} data directories, every shard on two of them): any one \
             disk can be lost"
        ),
        Redundancy::Mirror => format!(
            "redundancy: mirror ({dirs} data directories), DEGRADED: {failed} directory(ies) \
             failed; shards with a lost copy serve reads and refuse writes until it is rebuilt \
             (an empty directory in its place is rebuilt at start)"
        ),
        Redundancy::Ec { k, m } if failed == 0 => format!(
            "redundancy: ec:{k}+{m} ({dirs} data directories: every shard's journal, snapshot \
             and open volumes on {} of them, sealed volumes in stripes of {k} + {m} parity): any \
             {m} disks can be lost",
            m + 1
        ),
        Redundancy::Ec { k, m } => format!(
            "redundancy: ec:{k}+{m} ({dirs} data directories), DEGRADED: {failed} \
             directory(ies) failed{}; shards with a lost copy serve reads and refuse writes \
             until it is rebuilt (an empty directory in its place is rebuilt at start)",
            if failed as u32 > m {
                " (more than m: shards with no copy left refuse the start)"
            } else {
                ""
            }
        ),
    }
}

/// One shard: its global id, its primary copy (the directory it is opened and read from) and
/// all its live copies (primary first), and how many copies a write needs.
#[derive(Debug, Clone)]
pub struct ShardPlace {
    pub shard_id: usize,
    pub dir: PathBuf,
    pub copies: Vec<PathBuf>,
    pub copies_wanted: usize,
    /// With erasure coding (ADR 19): where the shard's stripes go (its directory at each of
    /// the k+m positions from its home; None where failed).
    pub stripes: Option<bale_io::StripeLayout>,
}

/// The set as it opens: its redundancy, its shards, the directories that failed (and why)
/// and those that are live.
#[derive(Debug)]
pub struct Prepared {
    pub redundancy: Redundancy,
    pub places: Vec<ShardPlace>,
    pub failed: Vec<(PathBuf, String)>,
    pub live_dirs: Vec<PathBuf>,
}

/// The state of one position of the set, found without writing anything.
#[derive(Debug)]
enum Probe {
    /// A directory of this set at this position (set id checked later).
    Ours(DirLayout),
    /// Missing, or present without a layout file: new (a new set) or, when empty, a
    /// replacement (an existing set). `has_files`: it holds something (never used as a
    /// replacement: it could be another program's directory).
    Empty { exists: bool, has_files: bool },
    /// Unusable here; why.
    Bad(String),
}

fn probe(dir: &Path, i: usize, dir_count: u32) -> Probe {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Probe::Empty {
                exists: false,
                has_files: false,
            }
        }
        Err(e) => return Probe::Bad(format!("cannot read {}: {e}", dir.display())),
        // A freshly made ext4 file system's root holds lost+found: still empty.
        Ok(rd) => rd
            .flatten()
            .filter(|e| e.file_name() != "lost+found")
            .count(),
    };
    let c = match std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) {
        Ok(c) => c,
        Err(_) => return Probe::Bad("it has a NUL in its name".into()),
    };
    // Checked without writing: a full disk must still start (reads and deletes work).
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        return Probe::Bad(format!(
            "data directory {} is not writable: {e}",
            dir.display()
        ));
    }
    let path = dir.join(LAYOUT_FILE);
    if !path.exists() {
        return Probe::Empty {
            exists: true,
            has_files: entries > 0,
        };
    }
    let l: DirLayout = match fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            return Probe::Bad(format!(
                "{} is not a valid layout file: {e}",
                path.display()
            ))
        }
    };
    if l.version != LAYOUT_VERSION {
        return Probe::Bad(format!(
            "{} has layout version {}, this bale reads {}",
            path.display(),
            l.version,
            LAYOUT_VERSION
        ));
    }
    if l.dir_index != i as u32 || l.dir_count != dir_count {
        return Probe::Bad(format!(
            "{} was initialised as data directory {} of {}, but is given as {} of {}: pass the --data directories in their original order",
            dir.display(),
            l.dir_index + 1,
            l.dir_count,
            i + 1,
            dir_count
        ));
    }
    Probe::Ours(l)
}

/// Open or initialise every data directory; returns all shards in id order. `flag` is the
/// `--redundancy` asked for (None: the set's own, or the default for a new set). Without
/// redundancy any bad directory refuses the start; with it, a missing, unreadable or wrong
/// directory is marked failed as long as every shard keeps a copy, and an empty directory in
/// a failed position (or a stale copy) is rebuilt at `rebuild_rate_bytes_per_s` before the
/// shards open.
pub fn prepare(
    dirs: &[PathBuf],
    default_shards_per_dir: u32,
    flag: Option<Redundancy>,
    rebuild_rate_bytes_per_s: u64,
) -> anyhow::Result<Prepared> {
    use anyhow::{bail, Context};
    let dir_count = dirs.len() as u32;
    let probes: Vec<Probe> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| probe(d, i, dir_count))
        .collect();
    let layouts: Vec<Option<&DirLayout>> = probes
        .iter()
        .map(|p| match p {
            Probe::Ours(l) => Some(l),
            _ => None,
        })
        .collect();
    let initialised = layouts.iter().any(Option::is_some);
    let redundancy = set_redundancy(&layouts, flag, dirs.len())?;
    let mirrored = redundancy != Redundancy::None;
    // Which set the directories belong to: the id most of them carry (a tie between two ids
    // is refused: which one is wrong cannot be told).
    let mut ids: Vec<(&str, usize)> = Vec::new();
    for l in layouts.iter().flatten() {
        if let Some(id) = l.set_id.as_deref() {
            match ids.iter_mut().find(|(x, _)| *x == id) {
                Some((_, n)) => *n += 1,
                None => ids.push((id, 1)),
            }
        }
    }
    ids.sort_by_key(|x| std::cmp::Reverse(x.1));
    if !mirrored || (ids.len() > 1 && ids[0].1 == ids[1].1) {
        check_set_id(
            dirs,
            &layouts.iter().map(|l| l.cloned()).collect::<Vec<_>>(),
        )?;
    }
    let set_id = ids
        .first()
        .map_or_else(new_set_id, |(id, _)| id.to_string());
    let mut shards_per_dir: Option<u32> = None;
    for l in layouts.iter().flatten() {
        if l.set_id.as_deref().is_some_and(|id| id != set_id) {
            continue;
        }
        match shards_per_dir {
            None => shards_per_dir = Some(l.shards_per_dir),
            Some(s) if s != l.shards_per_dir => {
                bail!("data directories disagree on shards per directory")
            }
            _ => {}
        }
    }
    let spd = shards_per_dir.unwrap_or(default_shards_per_dir.max(1));
    let (failed, replacement) = position_states(dirs, &probes, &set_id, initialised, mirrored)?;
    // New directories (a new set, or replacements) get their layout file.
    for (i, dir) in dirs.iter().enumerate() {
        if failed[i].is_some() || matches!(probes[i], Probe::Ours(_)) {
            continue;
        }
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        write_layout(
            dir,
            &DirLayout {
                version: LAYOUT_VERSION,
                dir_index: i as u32,
                dir_count,
                shards_per_dir: spd,
                set_id: Some(set_id.clone()),
                redundancy: Some(redundancy.to_string()),
            },
        )?;
    }
    // A set initialised before set ids (or the redundancy field) existed gets them now.
    for (i, (dir, p)) in dirs.iter().zip(&probes).enumerate() {
        if let Probe::Ours(l) = p {
            if failed[i].is_none() && (l.set_id.is_none() || l.redundancy.is_none()) {
                let mut l = l.clone();
                l.set_id = Some(set_id.clone());
                l.redundancy = Some(redundancy.to_string());
                write_layout(dir, &l)?;
            }
        }
    }
    for (i, why) in failed.iter().enumerate() {
        if let Some(why) = why {
            tracing::error!(position = i + 1, dir = %dirs[i].display(), why = %why, "data directory failed: serving without it (degraded)");
        }
    }
    let copies_wanted = redundancy.copies().min(dirs.len());
    let (mut places, rebuilds) = place_shards(dirs, &failed, &replacement, spd, copies_wanted)?;
    if !rebuilds.is_empty() {
        rebuild(&rebuilds, rebuild_rate_bytes_per_s)?;
        // With more than two copies, the ones that were neither source nor destination are
        // as current as the rebuilt pair (whose generation the rebuild raised): they get it too.
        for p in &places {
            if rebuilds.iter().any(|(_, d)| p.copies.contains(d)) {
                level_generations(&p.copies).with_context(|| {
                    format!("levelling the generation of shard {}'s copies", p.shard_id)
                })?;
            }
        }
    }
    if let Redundancy::Ec { k, m } = redundancy {
        let n = dirs.len();
        for p in &mut places {
            let home = p.shard_id / spd as usize;
            let name = format!("shard-{:04}", p.shard_id);
            p.stripes = Some(bale_io::StripeLayout {
                k: k as usize,
                m: m as usize,
                dirs: (0..(k + m) as usize)
                    .map(|q| {
                        let pos = (home + q) % n;
                        failed[pos].is_none().then(|| dirs[pos].join(&name))
                    })
                    .collect(),
                rebuild_rate_bytes_per_s,
            });
        }
    }
    Ok(Prepared {
        redundancy,
        places,
        failed: failed
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.clone().map(|w| (dirs[i].clone(), w)))
            .collect(),
        live_dirs: dirs
            .iter()
            .enumerate()
            .filter(|(i, _)| failed[*i].is_none())
            .map(|(_, d)| d.clone())
            .collect(),
    })
}

/// Each position's state: live, failed (why), or to be rebuilt (an empty replacement). Without
/// redundancy any failed position refuses the start.
fn position_states(
    dirs: &[PathBuf],
    probes: &[Probe],
    set_id: &str,
    initialised: bool,
    mirrored: bool,
) -> anyhow::Result<(Vec<Option<String>>, Vec<bool>)> {
    use anyhow::bail;
    let mut failed: Vec<Option<String>> = vec![None; dirs.len()];
    let mut replacement = vec![false; dirs.len()];
    for (i, (dir, p)) in dirs.iter().zip(probes).enumerate() {
        match p {
            Probe::Ours(l) if l.set_id.as_deref().is_some_and(|id| id != set_id) => {
                failed[i] = Some(format!(
                    "{} belongs to another bale set (set id {}, not {set_id}): a wrong disk is never used",
                    dir.display(),
                    l.set_id.as_deref().unwrap_or("")
                ))
            }
            Probe::Ours(_) => {}
            Probe::Empty { exists, has_files } if initialised => {
                if !mirrored {
                    bail!(
                        "data directory {} is new but the others are initialised: a set of directories cannot grow",
                        dir.display()
                    );
                }
                if *has_files {
                    failed[i] = Some(format!(
                        "{} has files but no {LAYOUT_FILE}: not this set's directory, and not empty, so never used as a replacement",
                        dir.display()
                    ));
                } else if *exists {
                    replacement[i] = true;
                } else {
                    failed[i] = Some(format!("{} is missing", dir.display()));
                }
            }
            Probe::Empty { .. } => {}
            Probe::Bad(why) => failed[i] = Some(why.clone()),
        }
        if !mirrored {
            if let Some(why) = &failed[i] {
                bail!("{why}");
            }
        }
    }
    Ok((failed, replacement))
}

/// The set's redundancy: what its directories say (none for a set from before the field), or,
/// for a new set, the flag's or the default. A flag that would change a set's is refused.
fn set_redundancy(
    layouts: &[Option<&DirLayout>],
    flag: Option<Redundancy>,
    dirs: usize,
) -> anyhow::Result<Redundancy> {
    let initialised = layouts.iter().any(Option::is_some);
    let stored = layouts.iter().flatten().find_map(|l| l.redundancy.clone());
    if initialised {
        let r = match &stored {
            Some(s) => Redundancy::parse(s).map_err(|e| anyhow::anyhow!("{LAYOUT_FILE}: {e}"))?,
            None => Redundancy::None,
        };
        if let Some(f) = flag.filter(|f| *f != r) {
            anyhow::bail!(
                "this set of data directories was initialised with redundancy {r}; --redundancy {f} \
                 would change it, which bale does not do (every object would have to be \
                 rewritten): drop the flag or give --redundancy {r}"
            );
        }
        Ok(r)
    } else {
        choose(flag, dirs)
    }
}

/// Each shard's copies (home position first, then the next `copies_wanted - 1` positions):
/// the live ones of the highest generation; a live copy that is missing or stale is listed too
/// and returned as a `(source, destination)` rebuild.
#[allow(clippy::type_complexity)]
fn place_shards(
    dirs: &[PathBuf],
    failed: &[Option<String>],
    replacement: &[bool],
    spd: u32,
    copies_wanted: usize,
) -> anyhow::Result<(Vec<ShardPlace>, Vec<(PathBuf, PathBuf)>)> {
    use anyhow::{bail, Context};
    let n = dirs.len();
    let mut places = Vec::new();
    let mut rebuilds: Vec<(PathBuf, PathBuf)> = Vec::new();
    for home in 0..n {
        for j in 0..spd {
            let shard_id = home * spd as usize + j as usize;
            let name = format!("shard-{shard_id:04}");
            let positions: Vec<usize> = (0..copies_wanted).map(|c| (home + c) % n).collect();
            // Copies that hold a shard, with their generation; the highest is current.
            let mut held: Vec<(usize, u64)> = Vec::new();
            for &p in &positions {
                if failed[p].is_some() || replacement[p] {
                    continue;
                }
                let d = dirs[p].join(&name);
                if bale_io::copies::holds_copy(&d) {
                    let g = bale_io::copies::generation(&d).with_context(|| {
                        format!("cannot read the generation of {}", d.display())
                    })?;
                    held.push((p, g));
                }
            }
            let top = held.iter().map(|(_, g)| *g).max();
            let current: Vec<usize> = held
                .iter()
                .filter(|(_, g)| Some(*g) == top)
                .map(|(p, _)| *p)
                .collect();
            // No copy anywhere is a new shard only when every position is here: with one
            // failed or replaced, its copies may have been there.
            let unknown = top.is_none()
                && positions
                    .iter()
                    .any(|&p| failed[p].is_some() || replacement[p]);
            let mut copies = Vec::new();
            for &p in positions.iter().filter(|_| !unknown) {
                if failed[p].is_some() {
                    continue;
                }
                let d = dirs[p].join(&name);
                if top.is_none() || current.contains(&p) {
                    copies.push(d);
                    continue;
                }
                // A copy in a live directory that is missing or older than the current ones
                // (it was away, or failed, while they moved on): never trusted, rebuilt.
                if !replacement[p] {
                    tracing::warn!(copy = %d.display(), "shard copy is missing or stale (lower generation than the other copy): rebuilding it");
                }
                let src = dirs[current[0]].join(&name);
                rebuilds.push((src, d.clone()));
                copies.push(d);
            }
            if copies.is_empty() {
                bail!(
                    "shard {shard_id} has no good copy left (its directories: {}): refusing to start \
                     rather than serve without its objects",
                    positions
                        .iter()
                        .map(|&p| format!(
                            "{} ({})",
                            dirs[p].display(),
                            failed[p].as_deref().unwrap_or("ok")
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            places.push(ShardPlace {
                shard_id,
                dir: copies[0].clone(),
                copies,
                copies_wanted,
                stripes: None,
            });
        }
    }
    Ok((places, rebuilds))
}

/// Sets every copy in `copies` (all current) to the highest generation among them.
fn level_generations(copies: &[PathBuf]) -> std::io::Result<()> {
    let mut top = 0;
    for c in copies {
        top = top.max(bale_io::copies::generation(c)?);
    }
    for c in copies {
        if bale_io::copies::generation(c)? != top {
            bale_io::copies::set_generation(c, top)?;
        }
    }
    Ok(())
}

/// Rebuilds each `(source, destination)` shard copy, at most `rate_bytes_per_s` overall,
/// logging progress (percent, bytes, ETA).
fn rebuild(jobs: &[(PathBuf, PathBuf)], rate_bytes_per_s: u64) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut total = 0;
    for (src, _) in jobs {
        total += bale_io::copies::copy_bytes(src)
            .with_context(|| format!("cannot size {}", src.display()))?;
    }
    tracing::info!(
        copies = jobs.len(),
        total_bytes = total,
        rate_bytes_per_s,
        "rebuilding shard copies"
    );
    let mut r = bale_io::copies::Rebuild::new(total, rate_bytes_per_s);
    for (src, dst) in jobs {
        r.copy(src, dst)
            .with_context(|| format!("rebuilding {} from {}", dst.display(), src.display()))?;
    }
    r.report("rebuild done");
    Ok(())
}

/// The stored redundancy of a set and how many of its directories look failed, read without
/// writing anything (for `bale doctor`).
pub fn inspect(dirs: &[PathBuf]) -> (Option<Redundancy>, usize) {
    let n = dirs.len() as u32;
    let probes: Vec<Probe> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| probe(d, i, n))
        .collect();
    let stored = probes.iter().find_map(|p| match p {
        Probe::Ours(l) => Some(
            l.redundancy
                .as_deref()
                .and_then(|r| Redundancy::parse(r).ok())
                .unwrap_or(Redundancy::None),
        ),
        _ => None,
    });
    let failed = if stored.is_some() {
        probes
            .iter()
            .filter(|p| !matches!(p, Probe::Ours(_)))
            .count()
    } else {
        0
    };
    (stored, failed)
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
        let p = prepare(&[a.clone(), b.clone()], 2, Some(Redundancy::None), 0).unwrap();
        assert_eq!(p.places.len(), 4);
        assert_eq!(p.places[3].dir, b.join("shard-0003"));
        // A different default later does not change an initialised layout.
        let p2 = prepare(&[a.clone(), b.clone()], 8, Some(Redundancy::None), 0).unwrap();
        assert_eq!(p2.places.len(), 4);
        // Swapped order is refused.
        assert!(prepare(&[b.clone(), a.clone()], 2, Some(Redundancy::None), 0).is_err());
    }

    fn read(dir: &Path) -> DirLayout {
        serde_json::from_str(&fs::read_to_string(dir.join(LAYOUT_FILE)).unwrap()).unwrap()
    }

    #[test]
    fn a_directory_of_another_set_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let (c, d) = (t.path().join("c"), t.path().join("d"));
        prepare(&[a.clone(), b.clone()], 1, Some(Redundancy::None), 0).unwrap();
        prepare(&[c.clone(), d.clone()], 1, Some(Redundancy::None), 0).unwrap();
        let (la, lb, lc) = (read(&a), read(&b), read(&c));
        assert_eq!(la.set_id, lb.set_id);
        assert_eq!(la.set_id.as_ref().unwrap().len(), 32);
        assert_ne!(la.set_id, lc.set_id);
        // d is position 2 of 2 like b, but of the other set.
        let e = prepare(&[a.clone(), d.clone()], 1, Some(Redundancy::None), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to another bale set"), "{e}");
        // The right set still opens, unchanged.
        prepare(&[a.clone(), b.clone()], 1, Some(Redundancy::None), 0).unwrap();
        assert_eq!(read(&a), la);
    }

    #[test]
    fn a_set_from_before_set_ids_gets_one() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        prepare(&[a.clone(), b.clone()], 1, Some(Redundancy::None), 0).unwrap();
        for d in [&a, &b] {
            let mut l = read(d);
            l.set_id = None;
            write_layout(d, &l).unwrap();
            assert!(!fs::read_to_string(d.join(LAYOUT_FILE))
                .unwrap()
                .contains("set_id"));
        }
        prepare(&[a.clone(), b.clone()], 1, Some(Redundancy::None), 0).unwrap();
        assert!(read(&a).set_id.is_some());
        assert_eq!(read(&a).set_id, read(&b).set_id);
    }

    #[test]
    fn redundancy_is_parsed_defaulted_and_validated() {
        assert_eq!(Redundancy::parse("mirror").unwrap(), Redundancy::Mirror);
        assert_eq!(
            Redundancy::parse("ec:4+2").unwrap(),
            Redundancy::Ec { k: 4, m: 2 }
        );
        for bad in ["", "raid5", "ec:4", "ec:0+2", "ec:4+x", "ec:200+100"] {
            assert!(Redundancy::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Redundancy::default_for(1), Redundancy::None);
        assert_eq!(Redundancy::default_for(3), Redundancy::Mirror);
        assert_eq!(Redundancy::default_for(6), Redundancy::Ec { k: 4, m: 2 });
        assert_eq!(Redundancy::default_for(14), Redundancy::Ec { k: 10, m: 4 });
        assert!(Redundancy::Mirror.validate(1).is_err());
        assert!(Redundancy::Ec { k: 4, m: 2 }.validate(5).is_err());
        assert!(Redundancy::Ec { k: 4, m: 2 }.validate(6).is_ok());
        assert_eq!(Redundancy::Ec { k: 4, m: 2 }.to_string(), "ec:4+2");
        // Erasure coding is taken when asked for, and is the default from 4 directories.
        assert_eq!(
            choose(Some(Redundancy::Ec { k: 2, m: 2 }), 4).unwrap(),
            Redundancy::Ec { k: 2, m: 2 }
        );
        assert!(choose(Some(Redundancy::Ec { k: 4, m: 2 }), 5).is_err());
        assert_eq!(choose(None, 4).unwrap(), Redundancy::Ec { k: 2, m: 2 });
        assert_eq!(choose(None, 3).unwrap(), Redundancy::Mirror);
        assert_eq!(choose(None, 1).unwrap(), Redundancy::None);
        for n in 1..=48 {
            let d = choose(None, n).unwrap();
            assert!(d.validate(n).is_ok(), "default for {n} fits");
            if n >= 4 {
                assert!(matches!(d, Redundancy::Ec { .. }), "{n}: {d}");
            }
        }
        assert_eq!(Redundancy::default_for(12), Redundancy::Ec { k: 8, m: 4 });
        assert_eq!(Redundancy::default_for(5), Redundancy::Ec { k: 3, m: 2 });
    }

    #[test]
    fn mirror_places_copies_marks_failed_dirs_and_rebuilds() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let dirs = [a.clone(), b.clone()];
        let p = prepare(&dirs, 1, None, 0).unwrap();
        assert_eq!(p.redundancy, Redundancy::Mirror);
        assert_eq!(read(&a).redundancy.as_deref(), Some("mirror"));
        assert_eq!(
            p.places[1].copies,
            vec![b.join("shard-0001"), a.join("shard-0001")]
        );
        assert!(p.places.iter().all(|s| s.copies_wanted == 2));
        // Shard copies with contents (as an opened shard leaves them).
        for d in [&a, &b] {
            for s in ["shard-0000", "shard-0001"] {
                fs::create_dir_all(d.join(s)).unwrap();
                fs::write(d.join(s).join("index.snap"), s).unwrap();
            }
        }
        // Changing the redundancy is refused.
        let e = prepare(&dirs, 1, Some(Redundancy::None), 0).unwrap_err();
        assert!(
            e.to_string().contains("initialised with redundancy mirror"),
            "{e}"
        );
        // A missing directory is failed, not recreated; every shard keeps one copy.
        fs::rename(&b, t.path().join("b.away")).unwrap();
        let p = prepare(&dirs, 1, None, 0).unwrap();
        assert_eq!(p.failed.len(), 1);
        assert!(!b.exists());
        assert_eq!(p.places[1].copies, vec![a.join("shard-0001")]);
        assert_eq!(p.live_dirs, vec![a.clone()]);
        // An empty directory in its place is rebuilt from the survivor, generations raised.
        fs::create_dir_all(&b).unwrap();
        let p = prepare(&dirs, 1, None, 0).unwrap();
        assert!(p.failed.is_empty());
        assert_eq!(read(&b).dir_index, 1);
        assert_eq!(read(&b).set_id, read(&a).set_id);
        assert_eq!(
            fs::read(b.join("shard-0001/index.snap")).unwrap(),
            b"shard-0001"
        );
        let g = bale_io::copies::generation(&b.join("shard-0000")).unwrap();
        assert_eq!(g, 1);
        // The old directory back: stale (lower generation), rebuilt from the current copy.
        fs::remove_dir_all(&b).unwrap();
        fs::rename(t.path().join("b.away"), &b).unwrap();
        fs::write(b.join("shard-0000/index.snap"), b"old").unwrap();
        prepare(&dirs, 1, None, 0).unwrap();
        assert_eq!(
            fs::read(b.join("shard-0000/index.snap")).unwrap(),
            b"shard-0000"
        );
        // Both copies of a shard gone: refused.
        fs::rename(b.join("shard-0000"), t.path().join("s0")).unwrap();
        fs::rename(a.join("shard-0000"), t.path().join("s1")).unwrap();
        fs::write(a.join("keep"), b"").unwrap();
        fs::rename(&a, t.path().join("a.away")).unwrap();
        let e = prepare(&dirs, 1, None, 0).unwrap_err();
        assert!(e.to_string().contains("no good copy left"), "{e}");
        fs::rename(t.path().join("a.away"), &a).unwrap();
        fs::rename(t.path().join("s1"), a.join("shard-0000")).unwrap();
        // A directory of another set in a position, with two directories: which one is wrong
        // cannot be told, so the start is refused; never used or overwritten.
        let c = t.path().join("c");
        prepare(&[t.path().join("x"), c.clone()], 1, None, 0).unwrap();
        fs::remove_dir_all(&b).unwrap();
        fs::rename(&c, &b).unwrap();
        let e = prepare(&dirs, 1, None, 0).unwrap_err();
        assert!(e.to_string().contains("another bale set"), "{e}");
    }

    #[test]
    fn ec_keeps_m_plus_one_copies_and_survives_m_lost_dirs() {
        let t = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..6).map(|i| t.path().join(format!("d{i}"))).collect();
        let ec = Redundancy::Ec { k: 4, m: 2 };
        let p = prepare(&dirs, 1, Some(ec), 0).unwrap();
        assert_eq!(p.redundancy, ec);
        assert_eq!(read(&dirs[0]).redundancy.as_deref(), Some("ec:4+2"));
        assert!(p.places.iter().all(|s| s.copies_wanted == 3));
        assert_eq!(
            p.places[5].copies,
            vec![
                dirs[5].join("shard-0005"),
                dirs[0].join("shard-0005"),
                dirs[1].join("shard-0005")
            ]
        );
        for s in &p.places {
            for c in &s.copies {
                fs::create_dir_all(c).unwrap();
                fs::write(c.join("index.snap"), b"x").unwrap();
            }
        }
        // The stored choice is kept without the flag.
        assert_eq!(prepare(&dirs, 1, None, 0).unwrap().redundancy, ec);
        // Two directories gone: every shard keeps a copy.
        fs::rename(&dirs[1], t.path().join("away1")).unwrap();
        fs::rename(&dirs[2], t.path().join("away2")).unwrap();
        let p = prepare(&dirs, 1, None, 0).unwrap();
        assert_eq!(p.failed.len(), 2);
        assert_eq!(p.places[0].copies, vec![dirs[0].join("shard-0000")]);
        assert!(redundancy_line(ec, 6, 2).contains("DEGRADED"));
        // A third: shard 0 (dirs 0, 1, 2) has no copy left, the start is refused.
        fs::rename(&dirs[0], t.path().join("away0")).unwrap();
        let e = prepare(&dirs, 1, None, 0).unwrap_err();
        assert!(e.to_string().contains("no good copy left"), "{e}");
    }
}
