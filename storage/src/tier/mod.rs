//! The S3 tier: sealed ranges of a station's log as segment objects in an
//! S3-compatible bucket, and reading them back.
//!
//! Owns the segment format ([`segment`]), the client ([`Remote`], on the
//! `object_store` crate), the bounded block cache in memory, the on-disk
//! cache of blocks and footers ([`disk_cache`]), and the encoding of the
//! remote index entries ([`SegmentRef`]) that the engine keeps in the store's
//! `meta` keyspace. It does not decide when to seal or what to delete locally:
//! the engine's uploader does, and it records a segment only after its upload
//! succeeded.
//!
//! All S3 I/O runs on the tier's own small runtime ([`Remote::runtime`]), so a
//! slow or absent S3 never occupies the threads of the front-ends or the
//! storage writer; a synchronous read waits at most [`READ_TIMEOUT`] for it and
//! then fails with [`TierError::Unavailable`].

pub mod disk_cache;
pub mod manifest;
pub mod segment;

use bytes::Bytes;
use disk_cache::DiskCache;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::Mutex;
use segment::{BlockRef, Footer, SegmentError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Record;

/// How long a read waits for S3 before it fails as unavailable.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the tier could not do something.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    /// The bucket could not be reached or answered with an error; the data is
    /// not lost, it cannot be read now.
    #[error("remote tier unavailable: {0}")]
    Unavailable(String),
    /// A segment object failed its checks.
    #[error("remote segment {key}: {error}")]
    Corrupt {
        /// The object's key.
        key: String,
        /// What is wrong.
        error: SegmentError,
    },
    /// The `[tier]` settings cannot be used.
    #[error("tier: {0}")]
    Config(String),
}

/// Where the tier's bucket is and how to sign in (`[tier]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierSettings {
    /// The S3 endpoint URL (unset: AWS).
    pub endpoint: Option<String>,
    /// The bucket.
    pub bucket: String,
    /// Prefix of every key Junction writes.
    pub prefix: String,
    /// The region.
    pub region: Option<String>,
    /// Access key id (unset: `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (unset: `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// Bytes of decoded blocks kept in memory.
    pub cache_bytes: u64,
    /// Bytes of blocks and footers kept on disk (0: no disk cache).
    pub disk_cache_bytes: u64,
    /// The disk cache's directory (unset: no disk cache).
    pub disk_cache_dir: Option<std::path::PathBuf>,
}

/// One uploaded segment, as the remote index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    /// The object's key.
    pub key: String,
    /// First and last sequence covered.
    pub first_seq: u64,
    /// Last sequence covered.
    pub last_seq: u64,
    /// Records in it.
    pub messages: u64,
    /// Their accounted bytes.
    pub bytes: u64,
    /// Oldest and newest record time (ns since the epoch).
    pub min_time_ns: u64,
    /// Newest record time.
    pub max_time_ns: u64,
    /// The object's size.
    pub object_len: u64,
}

impl SegmentRef {
    /// The remote index entry's value: `u32 crc32c | u64 × 7 | key`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(60 + self.key.len());
        for v in [
            self.first_seq,
            self.last_seq,
            self.messages,
            self.bytes,
            self.min_time_ns,
            self.max_time_ns,
            self.object_len,
        ] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(self.key.as_bytes());
        let mut out = crc32c::crc32c(&b).to_be_bytes().to_vec();
        out.extend_from_slice(&b);
        out
    }

    /// Reads [`SegmentRef::encode`]'s bytes.
    pub fn decode(v: &[u8]) -> Result<SegmentRef, SegmentError> {
        if v.len() < 60 {
            return Err(SegmentError::Malformed("remote index entry is too short"));
        }
        let (crc, body) = v.split_at(4);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return Err(SegmentError::Checksum("remote index entry"));
        }
        let n = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&body[i * 8..i * 8 + 8]);
            u64::from_be_bytes(a)
        };
        let key = String::from_utf8(body[56..].to_vec())
            .map_err(|_| SegmentError::Malformed("remote index key is not UTF-8"))?;
        Ok(SegmentRef {
            key,
            first_seq: n(0),
            last_seq: n(1),
            messages: n(2),
            bytes: n(3),
            min_time_ns: n(4),
            max_time_ns: n(5),
            object_len: n(6),
        })
    }
}

/// What [`Remote::put_manifest`] did.
#[derive(Debug)]
pub enum ManifestWrite {
    /// Written; its new e-tag (if the server gave one).
    Written(Option<String>),
    /// The object was not the version expected: another writer changed it.
    Conflict,
    /// The bucket could not be reached or refused; retried later.
    Failed(TierError),
}

/// Counters of the remote tier, for `/metrics`.
#[derive(Debug, Default)]
pub struct TierCounters {
    /// Segments uploaded.
    pub uploads: AtomicU64,
    /// Upload attempts that failed (each is retried).
    pub upload_errors: AtomicU64,
    /// Bytes uploaded.
    pub uploaded_bytes: AtomicU64,
    /// Block reads served from a cache (memory or disk).
    pub cache_hits: AtomicU64,
    /// Block reads that went to S3.
    pub cache_misses: AtomicU64,
    /// GET requests for reads (footers, blocks, spans, whole segments).
    pub get_requests: AtomicU64,
    /// Remote reads that failed (unavailable or corrupt).
    pub read_errors: AtomicU64,
    /// Segments or blocks that failed their checksum.
    pub corrupt: AtomicU64,
    /// Station manifests written.
    pub manifest_writes: AtomicU64,
    /// Manifest writes that failed (retried on the next tick).
    pub manifest_errors: AtomicU64,
    /// Manifest writes refused because another writer changed the object.
    pub manifest_conflicts: AtomicU64,
    /// Segments restored into a remote index from a manifest.
    pub segments_restored: AtomicU64,
    /// Objects the reconciler deleted (orphans and deleted stations' leftovers).
    pub orphans_removed: AtomicU64,
}

/// One reader's share of the block reads (a station's), besides the
/// broker's [`TierCounters`].
#[derive(Debug, Default)]
pub struct ReadCounters {
    /// Block reads served from a cache (memory or disk).
    pub hits: AtomicU64,
    /// The part of `hits` served from the disk cache.
    pub disk_hits: AtomicU64,
    /// Block reads that went to S3.
    pub misses: AtomicU64,
}

/// A decoded block: its records in sequence order.
pub type Block = Arc<Vec<Record>>;

/// Decoded blocks by (object key, offset), least recently used out first, at
/// most `capacity` bytes of record payloads and subjects.
struct BlockCache {
    capacity: u64,
    used: u64,
    tick: u64,
    entries: HashMap<(String, u64), (Block, u64, u64)>,
    order: BTreeMap<u64, (String, u64)>,
}

impl BlockCache {
    fn get(&mut self, key: &(String, u64)) -> Option<Block> {
        self.tick += 1;
        let tick = self.tick;
        let (block, _, last) = self.entries.get_mut(key)?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, key.clone());
        Some(block.clone())
    }

    fn insert(&mut self, key: (String, u64), block: Block) {
        let size: u64 = block
            .iter()
            .map(|r| (r.payload.len() + r.subject.len() + 64) as u64)
            .sum();
        if size > self.capacity {
            return;
        }
        self.tick += 1;
        if let Some((_, old, last)) = self.entries.remove(&key) {
            self.order.remove(&last);
            self.used -= old;
        }
        while self.used + size > self.capacity {
            let Some((_, k)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, s, _)) = self.entries.remove(&k) {
                self.used -= s;
            }
        }
        self.used += size;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (block, size, self.tick));
    }
}

/// Most footers the tier keeps in memory: a footer is a few
/// kilobytes (one entry per block), so this bounds the cache at a few
/// megabytes however many segments a broker's stations hold.
pub const FOOTER_CACHE_ENTRIES: usize = 1024;

/// Most bytes one read-ahead GET asks for: the blocks after the one a
/// consumer reads that are in neither cache are fetched together in one
/// ranged GET up to this size, not one GET each. Every S3 request has its own
/// latency and price (AWS suggests ranges of 8 or 16 MB for throughput), and
/// some servers (moto) read the whole object for each ranged GET, so 32 block
/// GETs of a 32 MiB segment cost 32 object reads.
pub const SPAN_BYTES: u64 = 8 * 1024 * 1024;

/// Segments up to this size are read whole, in one GET, the first time one of
/// their blocks is needed (see `Remote::footer_to_read`).
pub const WHOLE_READ_BYTES: u64 = 4 * 1024 * 1024;

/// Decoded footers by object key, least recently used out first, at most
/// `capacity` entries; a dropped segment's footer is removed at once.
struct FooterCache {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (Arc<Footer>, u64)>,
    order: BTreeMap<u64, String>,
}

impl FooterCache {
    fn new(capacity: usize) -> FooterCache {
        FooterCache {
            capacity: capacity.max(1),
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get(&mut self, key: &str) -> Option<Arc<Footer>> {
        self.tick += 1;
        let tick = self.tick;
        let (footer, last) = self.entries.get_mut(key)?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, key.to_string());
        Some(footer.clone())
    }

    fn insert(&mut self, key: String, footer: Arc<Footer>) {
        self.tick += 1;
        if let Some((_, last)) = self.entries.remove(&key) {
            self.order.remove(&last);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, k)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&k);
        }
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (footer, self.tick));
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, last)) = self.entries.remove(key) {
            self.order.remove(&last);
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The bucket, the tier's runtime and the block cache. Cheap to share.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: Option<tokio::runtime::Runtime>,
    /// Replays' reads ahead and their decoding, at background priority
    /// ([`background_priority`]).
    read_runtime: Option<tokio::runtime::Runtime>,
    cache: Mutex<BlockCache>,
    footers: Mutex<FooterCache>,
    disk: Option<Arc<DiskCache>>,
    /// Counters for `/metrics`.
    pub counters: TierCounters,
    /// The server refused an `If-Match` update whose e-tag matched (logged
    /// once).
    pub if_match_refused: std::sync::atomic::AtomicBool,
}

impl Drop for Remote {
    /// The runtime may be dropped inside another runtime (a broker started in a
    /// test); it is shut down without waiting.
    fn drop(&mut self) {
        for rt in [self.runtime.take(), self.read_runtime.take()]
            .into_iter()
            .flatten()
        {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Remote {
    /// The S3 bucket `settings` describe. Credentials not given come from the
    /// standard AWS environment variables.
    pub fn s3(settings: &TierSettings) -> Result<Remote, TierError> {
        use object_store::aws::AmazonS3Builder;
        if settings.bucket.trim().is_empty() {
            return Err(TierError::Config("bucket is required".into()));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&settings.bucket);
        if let Some(e) = &settings.endpoint {
            b = b.with_endpoint(e);
            // An endpoint is usually a self-hosted S3 (RGW, MinIO, moto): path-style.
            b = b.with_virtual_hosted_style_request(false);
        }
        b = b.with_region(settings.region.as_deref().unwrap_or("us-east-1"));
        if let Some(k) = &settings.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &settings.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        b = b
            .with_allow_http(settings.allow_http)
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_allow_http(settings.allow_http)
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(Duration::from_secs(30)),
            )
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(4),
                ..Default::default()
            });
        let store = b.build().map_err(|e| TierError::Config(e.to_string()))?;
        let remote = Self::with_store(Arc::new(store), &settings.prefix, settings.cache_bytes)?;
        match &settings.disk_cache_dir {
            Some(dir) if settings.disk_cache_bytes > 0 => {
                remote.with_disk_cache(dir, settings.disk_cache_bytes)
            }
            _ => Ok(remote),
        }
    }

    /// Adds the on-disk cache in `dir`, at most `bytes` (its files are
    /// indexed now).
    pub fn with_disk_cache(
        mut self,
        dir: &std::path::Path,
        bytes: u64,
    ) -> Result<Remote, TierError> {
        let cache = DiskCache::open(dir, bytes).map_err(|e| {
            TierError::Config(format!("disk_cache_dir: cannot use {}: {e}", dir.display()))
        })?;
        self.disk = Some(Arc::new(cache));
        Ok(self)
    }

    /// The on-disk cache, when there is one.
    pub fn disk_cache(&self) -> Option<&Arc<DiskCache>> {
        self.disk.as_ref()
    }

    /// Removes the cached footer of a segment that left its station's index,
    /// and its disk cache files (in the background). The block cache keeps its
    /// blocks until they age out.
    pub fn forget_cached(&self, key: &str) {
        self.footers.lock().remove(key);
        if let Some(d) = &self.disk {
            d.forget_segment(key);
        }
    }

    /// Reads and checks a cached file on a blocking thread: `Some` when
    /// `decode` accepts its bytes; a file it refuses is deleted and counted.
    async fn read_disk_cache<T: Send + 'static>(
        &self,
        name: Option<String>,
        decode: impl FnOnce(&[u8]) -> Result<T, SegmentError> + Send + 'static,
    ) -> Option<T> {
        let (disk, name) = (self.disk.clone()?, name?);
        tokio::task::spawn_blocking(move || {
            let bytes = disk.read(&name)?;
            match decode(&bytes) {
                Ok(v) => {
                    disk.hit();
                    Some(v)
                }
                Err(e) => {
                    disk.discard_corrupt(&name, &e);
                    None
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// A tier over any object store (tests use `object_store::memory::InMemory`).
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        cache_bytes: u64,
    ) -> Result<Remote, TierError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("junction-tier")
            .enable_all()
            .build()
            .map_err(|e| TierError::Config(format!("cannot start the tier's threads: {e}")))?;
        let read_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("junction-tier-read")
            .on_thread_start(background_priority)
            .enable_all()
            .build()
            .map_err(|e| TierError::Config(format!("cannot start the tier's threads: {e}")))?;
        Ok(Remote {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            runtime: Some(runtime),
            read_runtime: Some(read_runtime),
            cache: Mutex::new(BlockCache {
                capacity: cache_bytes,
                used: 0,
                tick: 0,
                entries: HashMap::new(),
                order: BTreeMap::new(),
            }),
            footers: Mutex::new(FooterCache::new(FOOTER_CACHE_ENTRIES)),
            disk: None,
            counters: TierCounters::default(),
            if_match_refused: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The runtime uploads, deletes and the reads a caller waits for
    /// ([`Remote::wait`]) run on, at normal priority.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        // Set in every constructor; taken only by Drop.
        match &self.runtime {
            Some(rt) => rt.handle(),
            None => unreachable_runtime(),
        }
    }

    /// The runtime a replay's reads ahead run on: fetching, checking and
    /// decoding blocks, and handing them to the station's consumer groups.
    /// Its threads (and their blocking pool) run at background priority
    /// ([`background_priority`]), so that a replay from S3 takes the CPU
    /// publishes and local reads leave idle.
    pub fn read_runtime(&self) -> &tokio::runtime::Handle {
        // Set in every constructor; taken only by Drop.
        match &self.read_runtime {
            Some(rt) => rt.handle(),
            None => unreachable_runtime(),
        }
    }

    /// The key of a new segment of station `uid` (its unique id) covering
    /// `first..=last`; `attempt` makes each upload attempt's key its own.
    pub fn segment_key(&self, uid: &str, first: u64, last: u64, attempt: u64) -> String {
        let tail = format!("stations/{uid}/{first:020}-{last:020}-{attempt:016x}.seg");
        if self.prefix.is_empty() {
            tail
        } else {
            format!("{}/{tail}", self.prefix)
        }
    }

    /// The key of station `uid`'s manifest, next to its segments.
    pub fn manifest_key(&self, uid: &str) -> String {
        let tail = format!("stations/{uid}/manifest");
        if self.prefix.is_empty() {
            tail
        } else {
            format!("{}/{tail}", self.prefix)
        }
    }

    /// Writes station `uid`'s manifest conditionally: replacing exactly the
    /// version `previous` names (`PutMode::Update` with its e-tag), or
    /// creating it when `previous` is `None` (`PutMode::Create`). Returns the
    /// new e-tag. [`ManifestWrite::Conflict`]: someone else wrote it since.
    pub async fn put_manifest(
        &self,
        uid: &str,
        manifest: &manifest::Manifest,
        previous: Option<String>,
    ) -> ManifestWrite {
        let mode = match previous {
            Some(e_tag) => PutMode::Update(object_store::UpdateVersion {
                e_tag: Some(e_tag),
                version: None,
            }),
            None => PutMode::Create,
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let path = ObjectPath::from(self.manifest_key(uid));
        match self
            .store
            .put_opts(&path, PutPayload::from(manifest.encode()), opts)
            .await
        {
            Ok(r) => ManifestWrite::Written(r.e_tag),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => ManifestWrite::Conflict,
            Err(e) => ManifestWrite::Failed(TierError::Unavailable(e.to_string())),
        }
    }

    /// Writes station `uid`'s manifest over whatever is there (for servers
    /// that refuse an `If-Match` update whose e-tag does match: Ceph RGW
    /// before Squid answers those 412).
    pub async fn overwrite_manifest(
        &self,
        uid: &str,
        manifest: &manifest::Manifest,
    ) -> ManifestWrite {
        let path = ObjectPath::from(self.manifest_key(uid));
        match self
            .store
            .put_opts(
                &path,
                PutPayload::from(manifest.encode()),
                PutOptions::default(),
            )
            .await
        {
            Ok(r) => ManifestWrite::Written(r.e_tag),
            Err(e) => ManifestWrite::Failed(TierError::Unavailable(e.to_string())),
        }
    }

    /// Station `uid`'s manifest and its e-tag; `Ok(None)` when there is none.
    /// A manifest that fails its checks is [`TierError::Corrupt`].
    pub async fn get_manifest(
        &self,
        uid: &str,
    ) -> Result<Option<(manifest::Manifest, Option<String>)>, TierError> {
        let key = self.manifest_key(uid);
        let unavailable = |e: object_store::Error| TierError::Unavailable(e.to_string());
        let got = match self.store.get(&ObjectPath::from(key.as_str())).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let e_tag = got.meta.e_tag.clone();
        let bytes = got.bytes().await.map_err(unavailable)?;
        let m = manifest::Manifest::decode(&bytes).map_err(|e| self.corrupt(&key, e))?;
        Ok(Some((m, e_tag)))
    }

    /// Whether an object is in the bucket (a HEAD); an error when the bucket
    /// cannot tell now.
    pub async fn exists(&self, key: &str) -> Result<bool, TierError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(TierError::Unavailable(e.to_string())),
        }
    }

    /// The e-tag of station `uid`'s manifest, whatever its bytes (`None`: no
    /// manifest).
    pub async fn manifest_e_tag(&self, uid: &str) -> Result<Option<String>, TierError> {
        match self
            .store
            .head(&ObjectPath::from(self.manifest_key(uid)))
            .await
        {
            Ok(meta) => Ok(meta.e_tag),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(TierError::Unavailable(e.to_string())),
        }
    }

    /// Checks that segment `seg` is in the bucket as its index entry says:
    /// its footer reads and agrees with the entry's counts.
    pub async fn verify_segment(&self, seg: &SegmentRef) -> Result<(), TierError> {
        let footer = self.footer(seg).await?;
        let first = footer.blocks.first().map(|b| b.first_seq);
        if footer.messages != seg.messages
            || footer.bytes != seg.bytes
            || first.is_some_and(|f| f < seg.first_seq)
        {
            self.footers.lock().remove(&seg.key);
            return Err(self.corrupt(
                &seg.key,
                SegmentError::Malformed("footer disagrees with the manifest"),
            ));
        }
        Ok(())
    }

    /// Uploads a segment, refusing to overwrite an existing object
    /// (`PutMode::Create`).
    pub async fn put_segment(&self, key: &str, object: Bytes) -> Result<(), TierError> {
        let len = object.len() as u64;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&ObjectPath::from(key), PutPayload::from(object), opts)
            .await
        {
            Ok(_) => {
                self.counters.uploads.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .uploaded_bytes
                    .fetch_add(len, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.counters.upload_errors.fetch_add(1, Ordering::Relaxed);
                Err(TierError::Unavailable(e.to_string()))
            }
        }
    }

    /// Whether the server honours `If-None-Match: *` (`PutMode::Create`):
    /// a probe object is written twice, the second time conditionally, and
    /// read back. `Ok(false)`: the second write replaced the first, so a
    /// retried upload could overwrite a segment (Garage ignores the header).
    /// An error: the server could not be asked now.
    pub async fn honours_conditional_writes(&self) -> Result<bool, TierError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tail = format!("probe/conditional-write-{nanos:x}");
        let key = if self.prefix.is_empty() {
            tail
        } else {
            format!("{}/{tail}", self.prefix)
        };
        let path = ObjectPath::from(key.as_str());
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let unavailable = |e: object_store::Error| TierError::Unavailable(e.to_string());
        self.store
            .put_opts(&path, PutPayload::from_static(b"first"), create())
            .await
            .map_err(unavailable)?;
        // Refused (412, or any error) is what must happen; only what is read
        // back tells.
        let _ = self
            .store
            .put_opts(&path, PutPayload::from_static(b"second"), create())
            .await;
        let body = self
            .store
            .get(&path)
            .await
            .map_err(unavailable)?
            .bytes()
            .await
            .map_err(unavailable)?;
        let _ = self.store.delete(&path).await;
        Ok(body.as_ref() == b"first")
    }

    /// Deletes an object (a segment whose index entry could not be written).
    pub async fn delete(&self, key: &str) -> Result<(), TierError> {
        self.store
            .delete(&ObjectPath::from(key))
            .await
            .map_err(|e| TierError::Unavailable(e.to_string()))
    }

    /// Keys of the objects under `stations/<uid>/`, with when each was
    /// written (the reconciler, tests).
    pub async fn list_station(
        &self,
        uid: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, TierError> {
        use futures::StreamExt;
        let prefix = if self.prefix.is_empty() {
            format!("stations/{uid}")
        } else {
            format!("{}/stations/{uid}", self.prefix)
        };
        let mut out = Vec::new();
        let mut list = self.store.list(Some(&ObjectPath::from(prefix)));
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(|e| TierError::Unavailable(e.to_string()))?;
            out.push((meta.location.to_string(), meta.last_modified.into()));
        }
        Ok(out)
    }

    /// The unique ids with a folder under `stations/` (one list call with a
    /// delimiter per thousand ids): every station, of any broker sharing the
    /// bucket and prefix, that uploaded something and was not cleaned away.
    pub async fn list_station_uids(&self) -> Result<Vec<String>, TierError> {
        let prefix = if self.prefix.is_empty() {
            "stations".to_string()
        } else {
            format!("{}/stations", self.prefix)
        };
        let listed = self
            .store
            .list_with_delimiter(Some(&ObjectPath::from(prefix)))
            .await
            .map_err(|e| TierError::Unavailable(e.to_string()))?;
        let mut uids: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        uids.sort();
        Ok(uids)
    }

    fn corrupt(&self, key: &str, error: SegmentError) -> TierError {
        self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
        tracing::error!(key, error = %error, "remote segment failed its checks");
        TierError::Corrupt {
            key: key.to_string(),
            error,
        }
    }

    /// A segment's footer: one suffix GET (a second ranged one for a footer
    /// longer than [`segment::FOOTER_READ`]), cached.
    async fn footer(&self, seg: &SegmentRef) -> Result<Arc<Footer>, TierError> {
        if let Some(f) = self.footers.lock().get(&seg.key) {
            return Ok(f);
        }
        let name = disk_cache::file_name(&seg.key, None);
        let object_len = seg.object_len;
        if let Some(footer) = self
            .read_disk_cache(name.clone(), move |b| segment::decode_footer(b, object_len))
            .await
        {
            let footer = Arc::new(footer);
            self.footers.lock().insert(seg.key.clone(), footer.clone());
            return Ok(footer);
        }
        let path = ObjectPath::from(seg.key.as_str());
        let want = segment::FOOTER_READ.min(seg.object_len);
        let unavailable = |e: object_store::Error| TierError::Unavailable(e.to_string());
        let mut tail = self
            .read_range(&path, seg.object_len - want..seg.object_len)
            .await
            .map_err(unavailable)?;
        let span = segment::footer_span(&tail).map_err(|e| self.corrupt(&seg.key, e))? as u64;
        if span > want {
            if span > seg.object_len {
                return Err(self.corrupt(
                    &seg.key,
                    SegmentError::Malformed("footer is longer than the object"),
                ));
            }
            tail = self
                .read_range(&path, seg.object_len - span..seg.object_len)
                .await
                .map_err(unavailable)?;
        }
        let footer = Arc::new(
            segment::decode_footer(&tail, seg.object_len).map_err(|e| self.corrupt(&seg.key, e))?,
        );
        if let (Some(d), Some(name)) = (&self.disk, name) {
            // Only the footer's own bytes (its span), as checked above.
            let from = tail.len().saturating_sub(span as usize);
            d.store(name, tail.slice(from..));
        }
        self.footers.lock().insert(seg.key.clone(), footer.clone());
        Ok(footer)
    }

    /// The block of `seg` that holds `seq` (or the first after it), from the
    /// cache or S3, counted in `reads` too. `None`: the segment has nothing at
    /// or after `seq`.
    pub async fn block_for(
        &self,
        seg: &SegmentRef,
        seq: u64,
        reads: &ReadCounters,
    ) -> Result<Option<(BlockRef, Block)>, TierError> {
        let footer = self.footer_to_read(seg, reads).await?;
        let Some(b) = footer.block_for(seq).copied() else {
            return Ok(None);
        };
        Ok(Some((b, self.block(seg, &b, reads).await?)))
    }

    /// The first block of `seg` with a record at or after `time_ns`.
    pub async fn block_at_time(
        &self,
        seg: &SegmentRef,
        time_ns: u64,
        reads: &ReadCounters,
    ) -> Result<Option<Block>, TierError> {
        let footer = self.footer_to_read(seg, reads).await?;
        let Some(b) = footer.block_at_time(time_ns).copied() else {
            return Ok(None);
        };
        Ok(Some(self.block(seg, &b, reads).await?))
    }

    /// One ranged GET for a read, counted.
    async fn read_range(
        &self,
        path: &ObjectPath,
        range: std::ops::Range<u64>,
    ) -> object_store::Result<Bytes> {
        self.counters.get_requests.fetch_add(1, Ordering::Relaxed);
        self.store.get_range(path, range).await
    }

    /// Whether a block is in the memory or the disk cache (nothing is read,
    /// no recency changes).
    pub fn has_block(&self, key: &str, offset: u64) -> bool {
        self.is_cached(key, offset)
            || self.disk.as_ref().is_some_and(|d| {
                disk_cache::file_name(key, Some(offset)).is_some_and(|n| d.contains(&n))
            })
    }

    /// The blocks of `footer` from number `i` on that one span fetch reads
    /// ([`Remote::fetch_span`]): those that follow each other in the object,
    /// start below `below`, are in neither cache and not `busy` (being
    /// fetched), at most `max_bytes` of them (always the first, if it
    /// qualifies).
    pub fn span_from(
        &self,
        key: &str,
        footer: &Footer,
        i: usize,
        below: u64,
        max_bytes: u64,
        busy: impl Fn(u64) -> bool,
    ) -> Vec<BlockRef> {
        let mut span: Vec<BlockRef> = Vec::new();
        let mut bytes = 0u64;
        for b in footer.blocks.iter().skip(i) {
            if b.first_seq >= below || busy(b.offset) || self.has_block(key, b.offset) {
                break;
            }
            if let Some(prev) = span.last()
                && (prev.offset + u64::from(prev.len) != b.offset
                    || bytes + u64::from(b.len) > max_bytes)
            {
                break;
            }
            bytes += u64::from(b.len);
            span.push(*b);
        }
        span
    }

    /// Fetches `blocks` of `seg` (consecutive in the object, from
    /// [`Remote::span_from`]) in one ranged GET, checks each and caches it in
    /// memory and on disk.
    pub async fn fetch_span(
        &self,
        seg: &SegmentRef,
        blocks: &[BlockRef],
        reads: &ReadCounters,
    ) -> Result<(), TierError> {
        let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
            return Ok(());
        };
        let (from, to) = (first.offset, last.offset + u64::from(last.len));
        let bytes = self
            .read_range(&ObjectPath::from(seg.key.as_str()), from..to)
            .await
            .map_err(|e| TierError::Unavailable(e.to_string()))?;
        if bytes.len() as u64 != to - from {
            return Err(self.corrupt(
                &seg.key,
                SegmentError::Malformed("a ranged read returned the wrong length"),
            ));
        }
        for b in blocks {
            let at = (b.offset - from) as usize;
            let part = bytes.slice(at..at + b.len as usize);
            let records = segment::decode_block(b, &part).map_err(|e| self.corrupt(&seg.key, e))?;
            self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
            reads.misses.fetch_add(1, Ordering::Relaxed);
            if let (Some(d), Some(name)) =
                (&self.disk, disk_cache::file_name(&seg.key, Some(b.offset)))
            {
                d.store(name, part);
            }
            self.cache
                .lock()
                .insert((seg.key.clone(), b.offset), Arc::new(records));
        }
        Ok(())
    }

    /// The memory cache's size in bytes.
    pub fn cache_capacity(&self) -> u64 {
        self.cache.lock().capacity
    }

    /// A block already in the cache.
    pub fn cached(&self, key: &str, offset: u64) -> Option<Block> {
        self.cache.lock().get(&(key.to_string(), offset))
    }

    /// Whether a block is in the cache (its recency is not changed).
    pub fn is_cached(&self, key: &str, offset: u64) -> bool {
        self.cache
            .lock()
            .entries
            .contains_key(&(key.to_string(), offset))
    }

    /// The cached footer of a segment, if it was read.
    pub fn cached_footer(&self, key: &str) -> Option<Arc<Footer>> {
        self.footers.lock().get(key)
    }

    /// How many footers the memory cache holds (at most
    /// [`FOOTER_CACHE_ENTRIES`]).
    pub fn cached_footers(&self) -> usize {
        self.footers.lock().len()
    }

    /// The footer of a segment about to be read. A small segment (at most
    /// [`WHOLE_READ_BYTES`]) not read before is read whole, in one GET: its
    /// footer and every block, all cached, instead of a GET for the footer and
    /// then one per block. A quiet station's segments, sealed by age, are small.
    async fn footer_to_read(
        &self,
        seg: &SegmentRef,
        reads: &ReadCounters,
    ) -> Result<Arc<Footer>, TierError> {
        if seg.object_len > WHOLE_READ_BYTES || self.footers.lock().get(&seg.key).is_some() {
            return self.footer(seg).await;
        }
        // On the disk cache, its blocks may be too: read as for a large one.
        let object_len = seg.object_len;
        if let Some(footer) = self
            .read_disk_cache(disk_cache::file_name(&seg.key, None), move |b| {
                segment::decode_footer(b, object_len)
            })
            .await
        {
            let footer = Arc::new(footer);
            self.footers.lock().insert(seg.key.clone(), footer.clone());
            return Ok(footer);
        }
        let all = self
            .read_range(&ObjectPath::from(seg.key.as_str()), 0..seg.object_len)
            .await
            .map_err(|e| TierError::Unavailable(e.to_string()))?;
        let corrupt = |e| self.corrupt(&seg.key, e);
        let span = segment::footer_span(&all).map_err(corrupt)?;
        if span > all.len() {
            return Err(corrupt(SegmentError::Malformed(
                "footer is longer than the object",
            )));
        }
        let tail = all.slice(all.len() - span..);
        let footer = Arc::new(segment::decode_footer(&tail, seg.object_len).map_err(corrupt)?);
        for b in &footer.blocks {
            let (from, to) = (b.offset as usize, b.offset as usize + b.len as usize);
            if to > all.len() - span {
                return Err(corrupt(SegmentError::Malformed(
                    "block past the end of the object",
                )));
            }
            let bytes = all.slice(from..to);
            let records = segment::decode_block(b, &bytes).map_err(corrupt)?;
            self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
            reads.misses.fetch_add(1, Ordering::Relaxed);
            if let (Some(d), Some(name)) =
                (&self.disk, disk_cache::file_name(&seg.key, Some(b.offset)))
            {
                d.store(name, bytes);
            }
            self.cache
                .lock()
                .insert((seg.key.clone(), b.offset), Arc::new(records));
        }
        if let (Some(d), Some(name)) = (&self.disk, disk_cache::file_name(&seg.key, None)) {
            d.store(name, tail);
        }
        self.footers.lock().insert(seg.key.clone(), footer.clone());
        Ok(footer)
    }

    async fn block(
        &self,
        seg: &SegmentRef,
        b: &BlockRef,
        reads: &ReadCounters,
    ) -> Result<Block, TierError> {
        if let Some(block) = self.cached(&seg.key, b.offset) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            reads.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(block);
        }
        let name = disk_cache::file_name(&seg.key, Some(b.offset));
        let bref = *b;
        if let Some(records) = self
            .read_disk_cache(name.clone(), move |bytes| {
                segment::decode_block(&bref, bytes)
            })
            .await
        {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            reads.hits.fetch_add(1, Ordering::Relaxed);
            reads.disk_hits.fetch_add(1, Ordering::Relaxed);
            let block: Block = Arc::new(records);
            self.cache
                .lock()
                .insert((seg.key.clone(), b.offset), block.clone());
            return Ok(block);
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        reads.misses.fetch_add(1, Ordering::Relaxed);
        let bytes = self
            .read_range(
                &ObjectPath::from(seg.key.as_str()),
                b.offset..b.offset + u64::from(b.len),
            )
            .await
            .map_err(|e| TierError::Unavailable(e.to_string()))?;
        let records = segment::decode_block(b, &bytes).map_err(|e| self.corrupt(&seg.key, e))?;
        if let (Some(d), Some(name)) = (&self.disk, name) {
            d.store(name, bytes);
        }
        let block: Block = Arc::new(records);
        self.cache
            .lock()
            .insert((seg.key.clone(), b.offset), block.clone());
        Ok(block)
    }

    /// Runs `f` on the tier's runtime and waits for it, at most
    /// [`READ_TIMEOUT`]. Safe to call from any thread, including another
    /// runtime's (it never blocks the tier's own threads).
    pub fn wait<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T, TierError>> + Send + 'static,
    ) -> Result<T, TierError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime().spawn(async move {
            let r = match tokio::time::timeout(READ_TIMEOUT, f).await {
                Ok(r) => r,
                Err(_) => Err(TierError::Unavailable(format!(
                    "no answer within {}s",
                    READ_TIMEOUT.as_secs()
                ))),
            };
            let _ = tx.send(r);
        });
        let waited = || {
            rx.recv_timeout(READ_TIMEOUT + Duration::from_secs(1))
                .unwrap_or_else(|_| Err(TierError::Unavailable("remote read timed out".into())))
        };
        let r = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(waited),
            _ => waited(),
        };
        if r.is_err() {
            self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

/// Lowers the calling thread to background priority: on Linux the
/// `SCHED_IDLE` policy, which the kernel runs with the smallest weight and
/// preempts for any normal thread that wakes up (it still gets a share of a
/// busy CPU, so it never stops). Elsewhere, or when refused, the thread keeps
/// its priority (logged at debug).
pub fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        ) {
            tracing::debug!(error = ?e, "cannot lower a tier thread's priority");
        }
    }
}

#[cold]
fn unreachable_runtime() -> ! {
    // The runtime is only taken out in Drop, after which no method runs.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    /// A replay's reads from S3 must not take the CPU from publishes: the
    /// read runtime's threads, its blocking pool included, run `SCHED_IDLE`;
    /// uploads and waited-for reads keep normal priority.
    #[cfg(target_os = "linux")]
    #[test]
    fn replay_reads_run_at_background_priority_and_uploads_do_not() {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        let r = Remote::with_store(Arc::new(InMemory::new()), "p", 1 << 20).unwrap();
        let policy = || thread_priority::unix::thread_schedule_policy().unwrap();
        let on = |h: &tokio::runtime::Handle| {
            let (worker, blocking) = h.block_on(async {
                let worker = tokio::spawn(async move { policy() }).await.unwrap();
                let blocking = tokio::task::spawn_blocking(policy).await.unwrap();
                (worker, blocking)
            });
            (worker, blocking)
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let normal = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
        assert_eq!(on(r.read_runtime()), (idle, idle));
        assert_eq!(on(r.runtime()), (normal, normal));
    }

    fn record(seq: u64) -> Record {
        Record {
            seq,
            time_ns: seq * 1_000,
            subject: Bytes::from_static(b"a.b"),
            headers: None,
            payload: Bytes::from(seq.to_be_bytes().to_vec()),
            lineage: Bytes::new(),
        }
    }

    #[test]
    fn segment_ref_round_trip_and_damage() {
        let s = SegmentRef {
            key: "p/stations/3/x.seg".into(),
            first_seq: 5,
            last_seq: 9,
            messages: 5,
            bytes: 100,
            min_time_ns: 1,
            max_time_ns: 2,
            object_len: 4000,
        };
        let v = s.encode();
        assert_eq!(SegmentRef::decode(&v), Ok(s));
        let mut bad = v.clone();
        bad[10] ^= 1;
        assert!(SegmentRef::decode(&bad).is_err());
    }

    #[test]
    fn manifest_is_written_conditionally_and_read_back() {
        let remote =
            Arc::new(Remote::with_store(Arc::new(InMemory::new()), "t", 1 << 20).expect("remote"));
        let m = manifest::Manifest {
            floor: 3,
            segments: vec![],
        };
        let r = remote.clone();
        let (m2, r2) = (m.clone(), remote.clone());
        let first = r.wait(async move {
            Ok(match r2.put_manifest("9-1", &m2, None).await {
                ManifestWrite::Written(t) => t,
                other => panic!("{other:?}"),
            })
        });
        let e_tag = first.expect("written");
        let (m2, r2) = (m.clone(), remote.clone());
        let again = r.wait(async move { Ok(r2.put_manifest("9-1", &m2, None).await) });
        assert!(matches!(again, Ok(ManifestWrite::Conflict)), "{again:?}");
        let (m2, r2, t) = (m.clone(), remote.clone(), e_tag.clone());
        let update = r.wait(async move { Ok(r2.put_manifest("9-1", &m2, t).await) });
        assert!(
            matches!(update, Ok(ManifestWrite::Written(_))),
            "{update:?}"
        );
        let (m2, r2) = (m.clone(), remote.clone());
        let stale = r.wait(async move { Ok(r2.put_manifest("9-1", &m2, e_tag).await) });
        assert!(matches!(stale, Ok(ManifestWrite::Conflict)), "{stale:?}");
        let r2 = remote.clone();
        let read = r
            .wait(async move { r2.get_manifest("9-1").await })
            .expect("read");
        assert_eq!(read.map(|(m, _)| m), Some(m));
        let r2 = remote.clone();
        assert_eq!(
            r.wait(async move { r2.get_manifest("none").await })
                .expect("read"),
            None
        );
    }

    #[test]
    fn footer_cache_is_bounded_and_forgets_dropped_segments() {
        let footer = || {
            let mut w = segment::SegmentWriter::with_block_bytes(
                segment::Header {
                    station: 1,
                    first_seq: 1,
                    last_seq: 1,
                    created_ns: 0,
                },
                256,
            );
            w.push(&record(1));
            Arc::new(w.finish().1)
        };
        let mut c = FooterCache::new(3);
        for k in ["a", "b", "c"] {
            c.insert(k.into(), footer());
        }
        assert!(c.get("a").is_some(), "a is now the most recent");
        c.insert("d".into(), footer());
        assert_eq!(c.len(), 3);
        assert!(c.get("b").is_none(), "the least recently used went");
        for k in ["a", "c", "d"] {
            assert!(c.get(k).is_some(), "{k}");
        }
        c.remove("c");
        assert_eq!(c.len(), 2);
        assert!(c.get("c").is_none());
        for i in 0..100 {
            c.insert(format!("k{i}"), footer());
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.order.len(), 3);
    }

    /// Records 1..=100 as one segment of 256-byte blocks: the object, its
    /// footer, and its index entry under `attempt`'s key.
    fn segment_of_100(remote: &Remote, attempt: u64) -> (Vec<u8>, segment::Footer, SegmentRef) {
        let mut w = segment::SegmentWriter::with_block_bytes(
            segment::Header {
                station: 1,
                first_seq: 1,
                last_seq: 100,
                created_ns: 0,
            },
            256,
        );
        for s in 1..=100 {
            w.push(&record(s));
        }
        let (object, footer) = w.finish();
        let seg = SegmentRef {
            key: remote.segment_key("1-0", 1, 100, attempt),
            first_seq: 1,
            last_seq: 100,
            messages: footer.messages,
            bytes: footer.bytes,
            min_time_ns: 1000,
            max_time_ns: 100_000,
            object_len: object.len() as u64,
        };
        (object, footer, seg)
    }

    #[test]
    fn put_is_create_only_and_blocks_read_back_through_the_cache() {
        let remote = Remote::with_store(Arc::new(InMemory::new()), "t", 1 << 20).expect("remote");
        let (object, _, seg) = segment_of_100(&remote, 7);
        let key = seg.key.clone();
        let bytes = Bytes::from(object);
        let k = key.clone();
        let b = bytes.clone();
        let r = Arc::new(remote);
        let r2 = r.clone();
        r.wait(async move { r2.put_segment(&k, b).await })
            .expect("first put");
        let (k, r2) = (key.clone(), r.clone());
        let again = r.wait(async move { r2.put_segment(&k, bytes).await });
        assert!(matches!(again, Err(TierError::Unavailable(_))), "{again:?}");
        for seq in [1u64, 50, 100] {
            let (s, r2) = (seg.clone(), r.clone());
            let (_, block) = r
                .wait(async move { r2.block_for(&s, seq, &ReadCounters::default()).await })
                .expect("read")
                .expect("block");
            assert!(block.iter().any(|x| x == &record(seq)));
        }
        let (s, r2) = (seg.clone(), r.clone());
        r.wait(async move { r2.block_for(&s, 50, &ReadCounters::default()).await })
            .expect("again");
        assert!(r.counters.cache_hits.load(Ordering::Relaxed) >= 1);
        let (s, r2) = (seg.clone(), r.clone());
        assert!(
            r.wait(async move { r2.block_for(&s, 101, &ReadCounters::default()).await })
                .expect("past")
                .is_none()
        );
    }

    /// A small segment is read whole: the first read fetches the object once
    /// and caches every block, so later reads need the bucket no more (the
    /// object deleted from it, they still come); a flipped byte in a block is
    /// a corruption error and counted, never other data.
    #[test]
    fn a_small_segment_is_read_whole_in_one_get_and_checked() {
        let store = Arc::new(InMemory::new());
        let remote = Remote::with_store(store.clone(), "t", 1 << 20).expect("remote");
        let (object, footer, seg) = segment_of_100(&remote, 7);
        assert!(footer.blocks.len() > 4, "several blocks");
        let key = seg.key.clone();
        assert!(seg.object_len <= WHOLE_READ_BYTES);
        let r = Arc::new(remote);
        let (k, r2, b) = (key.clone(), r.clone(), Bytes::from(object.clone()));
        r.wait(async move { r2.put_segment(&k, b).await })
            .expect("put");
        let read = |seq: u64| {
            let (s, r2) = (seg.clone(), r.clone());
            r.wait(async move { r2.block_for(&s, seq, &ReadCounters::default()).await })
        };
        let (_, first) = read(1).expect("read").expect("block");
        assert!(first.iter().any(|x| x == &record(1)));
        assert_eq!(
            r.counters.cache_misses.load(Ordering::Relaxed),
            footer.blocks.len() as u64,
            "every block fetched by the first read"
        );
        for b in &footer.blocks {
            assert!(r.is_cached(&key, b.offset));
        }
        let path = ObjectPath::from(key.as_str());
        let s2 = store.clone();
        r.wait(async move {
            s2.delete(&path)
                .await
                .map_err(|e| TierError::Unavailable(e.to_string()))
        })
        .expect("delete");
        for seq in 1..=100 {
            let (_, block) = read(seq).expect("cached").expect("block");
            assert!(block.iter().any(|x| x == &record(seq)));
        }

        // The same object with a byte of its second block flipped, under
        // another key: the whole read fails its checks.
        let mut bad = object;
        bad[footer.blocks[1].offset as usize + 3] ^= 0x40;
        let key2 = r.segment_key("1-0", 1, 100, 8);
        let (k, r2) = (key2.clone(), r.clone());
        r.wait(async move { r2.put_segment(&k, Bytes::from(bad)).await })
            .expect("put");
        let seg2 = SegmentRef {
            key: key2,
            ..seg.clone()
        };
        let (s, r2) = (seg2, r.clone());
        let before = r.counters.corrupt.load(Ordering::Relaxed);
        let got = r.wait(async move { r2.block_for(&s, 1, &ReadCounters::default()).await });
        assert!(matches!(got, Err(TierError::Corrupt { .. })), "{got:?}");
        assert_eq!(r.counters.corrupt.load(Ordering::Relaxed), before + 1);
    }

    /// A replay's read-ahead fetches the blocks after the one being read in
    /// one ranged GET: those that follow each other, are in no cache, are not
    /// being fetched, start below the local log, up to a size. Each is
    /// checked; a flipped byte is a corruption error, never other data.
    #[test]
    fn consecutive_blocks_are_read_ahead_in_one_get_and_checked() {
        let store = Arc::new(InMemory::new());
        let remote = Remote::with_store(store, "t", 1 << 20).expect("remote");
        let (object, footer, seg) = segment_of_100(&remote, 7);
        assert!(footer.blocks.len() > 6, "several blocks");
        let r = Arc::new(remote);
        let (k, r2, b) = (seg.key.clone(), r.clone(), Bytes::from(object.clone()));
        r.wait(async move { r2.put_segment(&k, b).await })
            .expect("put");
        let blocks = &footer.blocks;
        let bytes = |bs: &[BlockRef]| bs.iter().map(|b| u64::from(b.len)).sum::<u64>();
        let max = bytes(&blocks[1..4]);
        let span = r.span_from(&seg.key, &footer, 1, u64::MAX, max, |_| false);
        assert_eq!(span, blocks[1..4].to_vec(), "up to the size");
        let busy = blocks[3].offset;
        assert_eq!(
            r.span_from(&seg.key, &footer, 1, u64::MAX, max, |o| o == busy),
            blocks[1..3].to_vec(),
            "not past a block being fetched"
        );
        assert_eq!(
            r.span_from(&seg.key, &footer, 1, blocks[2].first_seq, max, |_| false),
            blocks[1..2].to_vec(),
            "not into the local log"
        );
        assert_eq!(
            r.span_from(&seg.key, &footer, 1, u64::MAX, 1, |_| false),
            blocks[1..2].to_vec(),
            "one block however small the limit"
        );

        let reads = Arc::new(ReadCounters::default());
        let (s, r2, sp, rd) = (seg.clone(), r.clone(), span.clone(), reads.clone());
        r.wait(async move { r2.fetch_span(&s, &sp, &rd).await })
            .expect("span");
        assert_eq!(
            r.counters.get_requests.load(Ordering::Relaxed),
            1,
            "one GET"
        );
        assert_eq!(reads.misses.load(Ordering::Relaxed), 3, "three blocks");
        for b in &blocks[1..4] {
            let block = r.cached(&seg.key, b.offset).expect("cached");
            let want: Vec<Record> = (b.first_seq..=b.last_seq).map(record).collect();
            assert_eq!(*block, want);
        }
        assert!(
            r.span_from(&seg.key, &footer, 1, u64::MAX, u64::MAX, |_| false)
                .is_empty(),
            "cached: nothing to fetch"
        );
        assert_eq!(
            r.span_from(&seg.key, &footer, 0, u64::MAX, u64::MAX, |_| false),
            blocks[0..1].to_vec(),
            "not over a cached block"
        );

        // The same object with a byte of its sixth block flipped.
        let mut bad = object;
        bad[blocks[5].offset as usize + 3] ^= 0x40;
        let key2 = r.segment_key("1-0", 1, 100, 8);
        let (k, r2) = (key2.clone(), r.clone());
        r.wait(async move { r2.put_segment(&k, Bytes::from(bad)).await })
            .expect("put");
        let seg2 = SegmentRef {
            key: key2.clone(),
            ..seg.clone()
        };
        let span = r.span_from(&key2, &footer, 4, u64::MAX, u64::MAX, |_| false);
        assert_eq!(span, blocks[4..].to_vec());
        let before = r.counters.corrupt.load(Ordering::Relaxed);
        let (s, r2, rd) = (seg2, r.clone(), reads.clone());
        let got = r.wait(async move { r2.fetch_span(&s, &span, &rd).await });
        assert!(matches!(got, Err(TierError::Corrupt { .. })), "{got:?}");
        assert_eq!(r.counters.corrupt.load(Ordering::Relaxed), before + 1);
        assert!(r.cached(&key2, blocks[5].offset).is_none());
    }
}
