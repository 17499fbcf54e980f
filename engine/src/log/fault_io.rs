//! The test half of the I/O seam: [`FaultIo`], an [`Io`] over the real
//! file system that injects torn writes, failed fsyncs and a full disk at
//! chosen points, armed through a shared [`Faults`]. Compiled for tests
//! only; the broker always runs on [`super::StdIo`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::io::{Io, IoFile, OpenMode, StdIo};

/// Faults [`FaultIo`] can inject. Shared, so a test can arm them while the
/// store runs.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Bytes that may still be written before writes are torn: once exhausted,
    /// the write that crosses the budget writes only its first part and fails,
    /// as if the machine lost power mid-write. `u64::MAX` means unlimited.
    write_budget_bytes: AtomicU64,
    /// Every fsync fails with EIO while set.
    fail_sync: AtomicBool,
    /// Every directory fsync fails with EIO while set (file fsyncs work).
    fail_sync_dir: AtomicBool,
    /// Every write fails with ENOSPC (nothing written) while set.
    disk_full: AtomicBool,
    /// Successful fsyncs of files, for group-commit tests.
    syncs: AtomicU64,
    /// Directory removals remove one file and fail with EIO while set (a
    /// removal cut short by a crash).
    cut_removals: AtomicBool,
    /// Directories fsynced so far, in order.
    synced_dirs: std::sync::Mutex<Vec<PathBuf>>,
    /// Successful fsyncs of directories, for durability-of-removal tests.
    dir_syncs: AtomicU64,
    /// Reads of each `.log` file, for tests of what opening a log reads.
    log_reads: Mutex<BTreeMap<PathBuf, u64>>,
    /// Each file written, with the length its last fsync made durable (0:
    /// never synced): what a power cut leaves ([`Faults::drop_unsynced`]).
    durable_lengths: Mutex<BTreeMap<PathBuf, u64>>,
    /// While closed, opening an offset index (`.index`) for reading blocks:
    /// a test holds a cold index load in the middle and looks at what else
    /// can proceed meanwhile.
    index_gate: IndexGate,
}

/// The state of [`Faults::close_index_gate`]: whether it is closed and how
/// many opens wait at it.
#[derive(Debug, Default)]
struct IndexGate {
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Faults {
    /// No faults armed.
    pub(crate) fn new() -> Arc<Self> {
        let faults = Self::default();
        faults.write_budget_bytes.store(u64::MAX, Ordering::SeqCst);
        Arc::new(faults)
    }
    /// A power cut, after the store using these faults is dropped: every
    /// file written is cut back to what its last fsync made durable (a file
    /// never synced loses everything written to it).
    pub(crate) fn drop_unsynced(&self) -> io::Result<()> {
        let lengths = std::mem::take(&mut *self.durable_lengths.lock().expect("lengths lock"));
        for (path, length) in lengths {
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(file) => {
                    if file.metadata()?.len() > length {
                        file.set_len(length)?;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Tear writes once `bytes` more bytes have been written.
    pub(crate) fn tear_writes_after(&self, bytes: u64) {
        self.write_budget_bytes.store(bytes, Ordering::SeqCst);
    }
    /// Make fsync fail (or succeed again).
    pub(crate) fn set_fail_sync(&self, fail: bool) {
        self.fail_sync.store(fail, Ordering::SeqCst);
    }
    /// Make directory fsyncs fail (or succeed again); file fsyncs unaffected.
    pub(crate) fn set_fail_sync_dir(&self, fail: bool) {
        self.fail_sync_dir.store(fail, Ordering::SeqCst);
    }
    /// Make writes fail with ENOSPC (or succeed again).
    pub(crate) fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::SeqCst);
    }
    /// Make directory removals stop after one file (or work again).
    pub(crate) fn set_cut_removals(&self, cut: bool) {
        self.cut_removals.store(cut, Ordering::SeqCst);
    }
    /// Directories fsynced so far, in order.
    pub(crate) fn synced_dirs(&self) -> Vec<PathBuf> {
        self.synced_dirs.lock().expect("synced dirs").clone()
    }
    /// File fsyncs that succeeded so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }
    /// Directory fsyncs that succeeded so far.
    pub(crate) fn dir_syncs(&self) -> u64 {
        self.dir_syncs.load(Ordering::SeqCst)
    }
    /// Reads of each `.log` file so far.
    pub(crate) fn log_reads(&self) -> BTreeMap<PathBuf, u64> {
        self.log_reads.lock().expect("log reads lock").clone()
    }
    /// Blocks every open of an offset index for reading until
    /// [`Self::open_index_gate`].
    pub(crate) fn close_index_gate(&self) {
        self.index_gate.state.lock().expect("gate lock").0 = true;
    }
    /// Lets blocked and future index opens through.
    pub(crate) fn open_index_gate(&self) {
        self.index_gate.state.lock().expect("gate lock").0 = false;
        self.index_gate.changed.notify_all();
    }
    /// Waits until an index open is blocked at the closed gate; false if
    /// none arrived within `timeout`.
    pub(crate) fn wait_at_index_gate(&self, timeout: std::time::Duration) -> bool {
        let state = self.index_gate.state.lock().expect("gate lock");
        let (state, _) = self
            .index_gate
            .changed
            .wait_timeout_while(state, timeout, |(_, waiting)| *waiting == 0)
            .expect("gate lock");
        state.1 > 0
    }
    fn pass_index_gate(&self, path: &Path, mode: OpenMode) {
        if mode != OpenMode::Read || path.extension().is_none_or(|ext| ext != "index") {
            return;
        }
        let gate = &self.index_gate;
        let mut state = gate.state.lock().expect("gate lock");
        if !state.0 {
            return;
        }
        state.1 += 1;
        gate.changed.notify_all();
        while state.0 {
            state = gate.changed.wait(state).expect("gate lock");
        }
        state.1 -= 1;
    }

    /// How much of a `len`-byte write may go through, consuming budget.
    fn admit(&self, len: u64) -> u64 {
        let mut budget = self.write_budget_bytes.load(Ordering::SeqCst);
        loop {
            if budget == u64::MAX {
                return len;
            }
            let allowed = budget.min(len);
            match self.write_budget_bytes.compare_exchange(
                budget,
                budget - allowed,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return allowed,
                Err(current) => budget = current,
            }
        }
    }
}

/// An [`Io`] over the real file system that injects [`Faults`].
pub(crate) struct FaultIo {
    faults: Arc<Faults>,
}

impl FaultIo {
    /// Wraps the real file system with `faults`.
    pub(crate) fn new(faults: Arc<Faults>) -> Self {
        Self { faults }
    }
}

struct FaultFile {
    inner: Arc<dyn IoFile>,
    faults: Arc<Faults>,
    path: PathBuf,
    /// Where reads are counted, for log files.
    log_path: Option<PathBuf>,
}

impl IoFile for FaultFile {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        if let Some(path) = &self.log_path {
            let mut reads = self.faults.log_reads.lock().expect("log reads lock");
            *reads.entry(path.clone()).or_default() += 1;
        }
        self.inner.read_exact_at(buf, position)
    }
    fn write_all_at(&self, data: &[u8], position: u64) -> io::Result<()> {
        if self.faults.disk_full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let allowed = self.faults.admit(data.len() as u64) as usize;
        {
            let mut lengths = self.faults.durable_lengths.lock().expect("lengths lock");
            lengths.entry(self.path.clone()).or_insert(0);
        }
        self.inner.write_all_at(&data[..allowed], position)?;
        if allowed < data.len() {
            return Err(io::Error::other("injected torn write"));
        }
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync()?;
        let length = self.inner.len()?;
        let mut lengths = self.faults.durable_lengths.lock().expect("lengths lock");
        lengths.insert(self.path.clone(), length);
        drop(lengths);
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        let mut lengths = self.faults.durable_lengths.lock().expect("lengths lock");
        if let Some(durable) = lengths.get_mut(&self.path) {
            *durable = (*durable).min(len);
        }
        Ok(())
    }
}

impl Io for FaultIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn IoFile>> {
        self.faults.pass_index_gate(path, mode);
        let inner = StdIo.open(path, mode)?;
        Ok(Arc::new(FaultFile {
            inner,
            faults: self.faults.clone(),
            path: path.to_path_buf(),
            log_path: path
                .extension()
                .is_some_and(|ext| ext == "log")
                .then(|| path.to_path_buf()),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdIo.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        StdIo.read_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdIo.rename(from, to)?;
        let mut lengths = self.faults.durable_lengths.lock().expect("lengths lock");
        match lengths.remove(from) {
            Some(length) => lengths.insert(to.to_path_buf(), length),
            None => lengths.remove(to),
        };
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdIo.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        if self.faults.cut_removals.load(Ordering::SeqCst) {
            if let Some(file) = first_file(path) {
                StdIo.remove_file(&file)?;
            }
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        StdIo.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst)
            || self.faults.fail_sync_dir.load(Ordering::SeqCst)
        {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        StdIo.sync_dir(path)?;
        let mut synced = self.faults.synced_dirs.lock().expect("synced dirs");
        synced.push(path.to_path_buf());
        self.faults.dir_syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        StdIo.exists(path)
    }
}

/// Some file under `dir`, depth first.
fn first_file(dir: &Path) -> Option<PathBuf> {
    let mut entries = StdIo.read_dir(dir).ok()?;
    entries.sort();
    entries.into_iter().find_map(|entry| {
        if entry.is_dir() {
            first_file(&entry)
        } else {
            Some(entry)
        }
    })
}
