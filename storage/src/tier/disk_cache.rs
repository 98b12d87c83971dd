//! The on-disk cache of remote blocks and footers: a directory of files, at
//! most `capacity` bytes, least recently used whole files out first.
//!
//! Layout: `<dir>/<station uid>/<segment stem>.<block offset, 16 hex>.blk` for
//! a block and `<dir>/<station uid>/<segment stem>.footer` for a segment's
//! footer, where the segment's object key is `…/stations/<uid>/<stem>.seg`.
//! A file holds the bytes exactly as the bucket served them, so it is checked
//! with the checksum the segment format already has (the block's or the
//! footer's CRC-32C) by whoever reads it; this module only stores bytes.
//!
//! What it guarantees:
//! - **Never on a caller's path.** Writes, evictions and removals run on one
//!   writer thread (`junction-tier-cache`), fed by a queue; a write that would
//!   take the queue past [`MAX_QUEUED_BYTES`] is skipped (a cache may forget).
//! - **Atomic files.** A file is written as `<name>.tmp` and renamed; a
//!   `.tmp` found at start is removed, never read.
//! - **Bounded.** Room is made (oldest files out) before a file is written, so
//!   the directory holds at most `capacity` bytes of cache files (plus the one
//!   `.tmp` being written).
//! - **Rebuilt at start** by scanning the directory, oldest modification time
//!   first; then [`DiskCache::retain`] removes the files of segments no station
//!   holds any more.
//!
//! Files of other names in the directory are left alone.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most bytes waiting for the writer thread; a write past it is skipped.
pub const MAX_QUEUED_BYTES: u64 = 64 * 1024 * 1024;

/// The disk cache's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct DiskCacheCounters {
    /// Reads served from a verified file.
    pub hits: AtomicU64,
    /// Files that failed their checksum (each was deleted and refetched).
    pub corrupt: AtomicU64,
    /// Files that could not be written, read or removed.
    pub errors: AtomicU64,
    /// Files written.
    pub writes: AtomicU64,
    /// Writes skipped because the queue was full.
    pub skipped: AtomicU64,
    /// Files removed to stay within the bound.
    pub evictions: AtomicU64,
}

/// The files in the cache, by name (`<uid>/<file>`), with least recently
/// used order.
#[derive(Default)]
struct Index {
    used: u64,
    tick: u64,
    /// name → (size, last use)
    entries: BTreeMap<String, (u64, u64)>,
    /// last use → name
    order: BTreeMap<u64, String>,
}

impl Index {
    fn insert(&mut self, name: String, size: u64) {
        self.remove(&name);
        self.tick += 1;
        self.used += size;
        self.order.insert(self.tick, name.clone());
        self.entries.insert(name, (size, self.tick));
    }

    fn remove(&mut self, name: &str) -> bool {
        match self.entries.remove(name) {
            Some((size, tick)) => {
                self.order.remove(&tick);
                self.used -= size;
                true
            }
            None => false,
        }
    }

    fn touch(&mut self, name: &str) -> bool {
        self.tick += 1;
        let tick = self.tick;
        let Some((_, last)) = self.entries.get_mut(name) else {
            return false;
        };
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, name.to_string());
        true
    }
}

enum Job {
    Write { name: String, bytes: Bytes },
    ForgetSegment { uid: String, stem: String },
    Retain(HashSet<(String, String)>),
}

/// The on-disk cache. Cheap to share behind an `Arc`.
pub struct DiskCache {
    dir: PathBuf,
    capacity: u64,
    index: Arc<Mutex<Index>>,
    jobs: std::sync::mpsc::Sender<Job>,
    queued: Arc<AtomicU64>,
    /// Counters for `/metrics`.
    pub counters: Arc<DiskCacheCounters>,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("dir", &self.dir)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The station uid and segment stem of an object key
/// `…/stations/<uid>/<stem>.seg`, when both are plain names.
pub fn segment_parts(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_suffix(".seg")?;
    let (head, stem) = rest.rsplit_once('/')?;
    let uid = head.rsplit('/').next()?;
    let plain = |s: &str| {
        !s.is_empty() && s.len() <= 120 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    };
    (plain(uid) && plain(stem)).then_some((uid, stem))
}

/// The cache name of a segment's block at `offset` (`Some`) or of its footer
/// (`None`); `None` for a key that is not a segment's.
pub fn file_name(key: &str, offset: Option<u64>) -> Option<String> {
    let (uid, stem) = segment_parts(key)?;
    Some(match offset {
        Some(o) => format!("{uid}/{stem}.{o:016x}.blk"),
        None => format!("{uid}/{stem}.footer"),
    })
}

/// The (uid, stem) of a cache file name, when it is one.
fn name_parts(name: &str) -> Option<(&str, &str)> {
    let (uid, file) = name.split_once('/')?;
    let stem = match file.strip_suffix(".footer") {
        Some(stem) => stem,
        None => {
            let (stem, offset) = file.strip_suffix(".blk")?.rsplit_once('.')?;
            u64::from_str_radix(offset, 16).ok()?;
            stem
        }
    };
    segment_parts(&format!("stations/{uid}/{stem}.seg"))
        .is_some()
        .then_some((uid, stem))
}

impl DiskCache {
    /// Opens (creates) the cache in `dir` with room for `capacity` bytes,
    /// indexing the files already there, and starts its writer thread.
    pub fn open(dir: &Path, capacity: u64) -> std::io::Result<DiskCache> {
        std::fs::create_dir_all(dir)?;
        let counters = Arc::new(DiskCacheCounters::default());
        let mut found: Vec<(std::time::SystemTime, String, u64)> = Vec::new();
        for station in std::fs::read_dir(dir)? {
            let station = station?;
            if !station.file_type()?.is_dir() {
                continue;
            }
            let uid = station.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(station.path())? {
                let file = file?;
                let fname = file.file_name().to_string_lossy().into_owned();
                let name = format!("{uid}/{fname}");
                if let Some(base) = fname.strip_suffix(".tmp") {
                    if name_parts(&format!("{uid}/{base}")).is_some() {
                        // A write cut short by a crash: never trusted.
                        let _ = std::fs::remove_file(file.path());
                    }
                    continue;
                }
                if name_parts(&name).is_none() {
                    continue;
                }
                let meta = file.metadata()?;
                if !meta.is_file() {
                    continue;
                }
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                found.push((modified, name, meta.len()));
            }
            // Removed only when empty.
            let _ = std::fs::remove_dir(station.path());
        }
        found.sort();
        let mut index = Index::default();
        for (_, name, size) in found {
            index.insert(name, size);
        }
        let index = Arc::new(Mutex::new(index));
        let queued = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            capacity,
            index: index.clone(),
            queued: queued.clone(),
            counters: counters.clone(),
        };
        writer.make_room(0);
        std::thread::Builder::new()
            .name("junction-tier-cache".into())
            .spawn(move || {
                super::background_priority();
                while let Ok(job) = rx.recv() {
                    writer.run(job);
                }
            })?;
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            capacity,
            index,
            jobs: tx,
            queued,
            counters,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bound, in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes and files in the cache now.
    pub fn usage(&self) -> (u64, u64) {
        let i = self.index.lock();
        (i.used, i.entries.len() as u64)
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// The bytes of file `name`, when it is cached (blocking: call it on a
    /// blocking thread). The caller checks them; a bad file goes through
    /// [`DiskCache::discard_corrupt`].
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        if !self.index.lock().entries.contains_key(name) {
            return None;
        }
        match std::fs::read(self.dir.join(name)) {
            Ok(bytes) => {
                self.index.lock().touch(name);
                Some(bytes)
            }
            Err(e) => {
                // Evicted meanwhile (NotFound), or unreadable: a miss either way.
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(file = %self.dir.join(name).display(), error = %e, "cannot read a tier cache file; reading from S3");
                }
                self.index.lock().remove(name);
                None
            }
        }
    }

    /// Whether file `name` is in the cache (nothing is read).
    pub fn contains(&self, name: &str) -> bool {
        self.index.lock().entries.contains_key(name)
    }

    /// A served hit (the caller verified the bytes).
    pub fn hit(&self) {
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Deletes file `name`, which failed its checksum (blocking), and counts
    /// and logs it.
    pub fn discard_corrupt(&self, name: &str, why: &dyn std::fmt::Display) {
        // Two readers of one bad file count it once.
        if !self.index.lock().remove(name) {
            return;
        }
        self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(name);
        tracing::error!(file = %path.display(), error = %why, "tier disk cache file failed its checks; deleted, reading from S3");
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(file = %path.display(), error = %e, "cannot delete a corrupt tier cache file");
        }
    }

    /// Queues `bytes` to be written as `name`; never blocks. Skipped when the
    /// file would not fit or the queue is full.
    pub fn store(&self, name: String, bytes: Bytes) {
        let len = bytes.len() as u64;
        if len > self.capacity || self.index.lock().entries.contains_key(&name) {
            return;
        }
        if self.queued.fetch_add(len, Ordering::AcqRel) + len > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.jobs.send(Job::Write { name, bytes }).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
        }
    }

    /// Removes the files of the segment with object key `key` (it was
    /// dropped from its station's index), in the background.
    pub fn forget_segment(&self, key: &str) {
        if let Some((uid, stem)) = segment_parts(key) {
            let _ = self.jobs.send(Job::ForgetSegment {
                uid: uid.to_string(),
                stem: stem.to_string(),
            });
        }
    }

    /// Removes, in the background, every file whose segment is not one of
    /// `live` (object keys of the segments the stations hold): files of
    /// deleted stations and dropped segments (at start).
    pub fn retain<'a>(&self, live: impl IntoIterator<Item = &'a str>) {
        let live = live
            .into_iter()
            .filter_map(segment_parts)
            .map(|(u, s)| (u.to_string(), s.to_string()))
            .collect();
        let _ = self.jobs.send(Job::Retain(live));
    }
}

/// The writer thread's side.
struct Writer {
    dir: PathBuf,
    capacity: u64,
    index: Arc<Mutex<Index>>,
    queued: Arc<AtomicU64>,
    counters: Arc<DiskCacheCounters>,
}

impl Writer {
    fn run(&self, job: Job) {
        match job {
            Job::Write { name, bytes } => {
                self.write(&name, &bytes);
                self.queued.fetch_sub(bytes.len() as u64, Ordering::AcqRel);
            }
            Job::ForgetSegment { uid, stem } => {
                let prefix = format!("{uid}/{stem}.");
                let names: Vec<String> = self
                    .index
                    .lock()
                    .entries
                    .range(prefix.clone()..)
                    .take_while(|(n, _)| n.starts_with(&prefix))
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in names {
                    self.remove(&name);
                }
                let _ = std::fs::remove_dir(self.dir.join(&uid));
            }
            Job::Retain(live) => {
                let doomed: Vec<String> = self
                    .index
                    .lock()
                    .entries
                    .keys()
                    .filter(|n| {
                        name_parts(n)
                            .is_none_or(|(u, s)| !live.contains(&(u.to_string(), s.to_string())))
                    })
                    .cloned()
                    .collect();
                let mut dirs = HashSet::new();
                for name in &doomed {
                    self.remove(name);
                    if let Some((uid, _)) = name.split_once('/') {
                        dirs.insert(uid.to_string());
                    }
                }
                for uid in dirs {
                    let _ = std::fs::remove_dir(self.dir.join(uid));
                }
                if !doomed.is_empty() {
                    tracing::info!(
                        files = doomed.len(),
                        "tier disk cache: removed files of segments no station holds"
                    );
                }
            }
        }
    }

    fn remove(&self, name: &str) {
        self.index.lock().remove(name);
        if let Err(e) = std::fs::remove_file(self.dir.join(name))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(file = %self.dir.join(name).display(), error = %e, "cannot remove a tier cache file");
        }
    }

    /// Removes least recently used files until `size` more bytes fit.
    fn make_room(&self, size: u64) {
        loop {
            let victim = {
                let i = self.index.lock();
                if i.used + size <= self.capacity {
                    return;
                }
                match i.order.first_key_value() {
                    Some((_, n)) => n.clone(),
                    None => return,
                }
            };
            self.remove(&victim);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        if self.index.lock().entries.contains_key(name) {
            return;
        }
        let size = bytes.len() as u64;
        self.make_room(size);
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let written = (|| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut f = std::fs::File::create(&tmp)?;
            // Not fsynced: every read checks the file with the segment's own
            // CRC-32C, so what a crash cuts short is found and fetched again;
            // an fsync here would share the disk's flushes with the publishes
            // that wait for theirs.
            f.write_all(bytes)?;
            std::fs::rename(&tmp, &path)
        })();
        match written {
            Ok(()) => {
                self.index.lock().insert(name.to_string(), size);
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %path.display(), error = %e, "cannot write a tier cache file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_idle(c: &DiskCache) {
        while c.queued_bytes() > 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn names_encode_station_segment_and_block() {
        let key = "p/stations/3-17/00000000000000000001-00000000000000000100-00000000000000ff.seg";
        let b = file_name(key, Some(4096)).expect("block name");
        assert_eq!(
            b,
            "3-17/00000000000000000001-00000000000000000100-00000000000000ff.0000000000001000.blk"
        );
        assert_eq!(name_parts(&b), segment_parts(key));
        let f = file_name(key, None).expect("footer name");
        assert_eq!(name_parts(&f), segment_parts(key));
        assert_eq!(file_name("p/stations/../x.seg", None), None);
        assert_eq!(file_name("p/stations/1/x.bin", None), None);
        assert_eq!(name_parts("1/x.zz.blk"), None);
    }

    #[test]
    fn bounded_lru_survives_reopen_and_forgets() {
        let dir = tempfile::tempdir().expect("dir");
        let key = |n: u64| format!("p/stations/1-1/{n:020}-{n:020}-0000000000000001.seg");
        let c = DiskCache::open(dir.path(), 3000).expect("open");
        for n in 0..5 {
            c.store(
                file_name(&key(n), Some(0)).expect("name"),
                Bytes::from(vec![n as u8; 1000]),
            );
            wait_idle(&c);
        }
        assert_eq!(c.usage(), (3000, 3));
        assert!(
            c.read(&file_name(&key(0), Some(0)).expect("name"))
                .is_none()
        );
        let got = c.read(&file_name(&key(4), Some(0)).expect("name"));
        assert_eq!(got, Some(vec![4u8; 1000]));
        drop(c);
        // A half-written file from a crash is removed, never indexed.
        std::fs::write(
            dir.path().join(format!(
                "{}.tmp",
                file_name(&key(9), Some(0)).expect("name")
            )),
            b"half",
        )
        .expect("tmp");
        let c = DiskCache::open(dir.path(), 3000).expect("reopen");
        assert_eq!(c.usage(), (3000, 3));
        let name = file_name(&key(3), Some(0)).expect("name");
        assert_eq!(c.read(&name), Some(vec![3u8; 1000]));
        c.forget_segment(&key(3));
        c.retain([key(4).as_str()]);
        // The writer thread runs the jobs; wait for the files to go.
        for _ in 0..1000 {
            if c.usage().1 == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(c.usage(), (1000, 1));
        assert!(c.read(&name).is_none());
        let files: Vec<_> = std::fs::read_dir(dir.path().join("1-1"))
            .expect("dir")
            .collect();
        assert_eq!(files.len(), 1);
    }
}
