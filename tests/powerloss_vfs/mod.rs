//! A SQLite VFS that simulates power loss, in the spirit of SQLite's own crash tests
//! (src/test6.c), for the journal power-loss tests.
//!
//! The VFS "powerloss" wraps the default (unix) VFS. Files are grouped into *machines*: a
//! [`Machine`] owns a directory, and every database/WAL/journal file opened through this VFS
//! below that directory belongs to it. For those files:
//!
//! * `xWrite`/`xTruncate` do not touch the real file: they land in an in-memory [`Overlay`]
//!   (a simulated OS page cache, one per file *path*, shared by all handles on that path just
//!   like a page cache is shared by all file descriptors of an inode).
//! * `xRead`/`xFileSize`/`xAccess` see the real file with the overlay on top.
//! * `xSync` writes the overlay to the real file, then fsyncs it for real. Only synced data
//!   is on disk.
//! * [`Machine::cut`] is the power cut: pending overlays are dropped (or, in torn mode,
//!   partially written back), and from then on the machine is *off*: every
//!   write/sync/truncate/delete is a silent no-op returning SQLITE_OK, and no new file can be
//!   opened. The process is a ghost: the SQLite connections still run, may think they
//!   committed, and may checkpoint and try to delete the WAL when they close — none of it
//!   reaches the disk, so closing them afterwards can neither rescue nor destroy anything.
//!
//! Each test uses its own tempdir, hence its own machine: tests running in parallel threads
//! of the one test process (cargo's default) cannot cut each other's power.
//!
//! Not modelled: directory entries (creating or deleting a file is durable at once), and the
//! wal-index (`-shm`), which SQLite maps via xShmMap and rebuilds from the WAL after a crash
//! anyway. Files opened without a name (SQLite temp files) pass straight through.

#![allow(dead_code)]

pub mod overlay;

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use rusqlite::ffi;

use overlay::{Backing, Overlay, Read, Rng};

/// The name to pass as `WriterOptions::vfs` / `Connection::open_with_flags_and_vfs`.
pub const VFS_NAME: &str = "powerloss";

/// How the power fails.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// Nothing that was not fsynced reaches the disk.
    DropAll,
    /// The disk had written back an arbitrary subset (seeded) of the unsynced data, in
    /// 512-byte pieces, before the power failed.
    Torn { seed: u64 },
}

/// Counters for the test reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// fsyncs that reached the real file (since the machine was attached).
    pub syncs: u64,
    /// Unsynced bytes lost by the cut.
    pub bytes_lost: u64,
    /// Unsynced bytes written back anyway by a torn cut.
    pub bytes_torn_in: u64,
    /// Writes, syncs, truncates and deletes ignored after the cut.
    pub ops_after_cut: u64,
}

/// A simulated computer owning one directory; see the module docs.
pub struct Machine {
    inner: Arc<MachineInner>,
}

struct MachineInner {
    root: PathBuf,
    state: Mutex<MachineState>,
}

#[derive(Default)]
struct MachineState {
    off: bool,
    /// Page cache: path -> pending data. Entries outlive closed handles (closing a file does
    /// not make it durable) and leave on delete (POSIX unlink: open handles keep the Arc).
    files: HashMap<PathBuf, Arc<Mutex<Overlay>>>,
    /// A cut armed by [`Machine::cut_at_sync`]: syncs to go (this one included), and how.
    armed: Option<(u64, Cut)>,
    stats: Stats,
}

/// Live machines. Weak, so that a dropped [`Machine`] frees its directory.
static MACHINES: Mutex<Vec<Weak<MachineInner>>> = Mutex::new(Vec::new());

/// Never poisoned in practice (no panics while held), but panicking inside an `extern "C"`
/// callback would abort the process, so don't unwrap.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Machine {
    /// Registers the VFS (once per process) and makes `dir` a powered-on machine.
    pub fn attach(dir: &Path) -> Machine {
        register();
        // xOpen receives the path as xFullPathname made it (absolute, symlinks resolved).
        let root = std::fs::canonicalize(dir).expect("machine directory must exist");
        let inner = Arc::new(MachineInner { root, state: Mutex::new(MachineState::default()) });
        let mut all = lock(&MACHINES);
        all.retain(|m| m.strong_count() > 0);
        for m in all.iter().filter_map(Weak::upgrade) {
            assert!(
                !m.root.starts_with(&inner.root) && !inner.root.starts_with(&m.root),
                "machines must not share directories: {} vs {}",
                m.root.display(),
                inner.root.display()
            );
        }
        all.push(Arc::downgrade(&inner));
        Machine { inner }
    }

    pub fn is_on(&self) -> bool {
        // Under the machine lock, like xSync: if this returns true after an xSync returned,
        // that xSync really reached the disk (it held the lock; the cut takes it too).
        !lock(&self.inner.state).off
    }

    /// Pulls the plug. Idempotent. Blocks while an xSync is in progress, so a sync is either
    /// wholly before the cut (durable) or wholly after it (a no-op).
    pub fn cut(&self, how: Cut) {
        lock(&self.inner.state).cut(how);
    }

    /// Arms a cut *inside* the `n`-th xSync from now (1 = the next one), like SQLite's
    /// crash tests: that sync never happens, so the writes it was to make durable are
    /// exactly what the cut finds pending — a commit caught in flight.
    pub fn cut_at_sync(&self, n: u64, how: Cut) {
        assert!(n >= 1);
        lock(&self.inner.state).armed = Some((n, how));
    }

    /// Unsynced bytes across the machine's files.
    pub fn pending_bytes(&self) -> u64 {
        let st = lock(&self.inner.state);
        st.files.values().map(|f| lock(f).pending_bytes()).sum()
    }

    pub fn stats(&self) -> Stats {
        lock(&self.inner.state).stats
    }
}

impl MachineState {
    fn cut(&mut self, how: Cut) {
        if self.off {
            return;
        }
        self.off = true;
        self.armed = None;
        let MachineState { files, stats, .. } = self;
        let mut rng = Rng::new(match how {
            Cut::DropAll => 0,
            Cut::Torn { seed } => seed,
        });
        let mut paths: Vec<&PathBuf> = files.keys().collect();
        paths.sort(); // HashMap order is random; keep torn cuts reproducible per seed
        for path in paths {
            let mut ov = lock(&files[path]);
            let mut torn_in = 0;
            if let Cut::Torn { .. } = how {
                // Written with a separate descriptor: the sqlite3_file belongs to whichever
                // thread runs its connection, and must not be used concurrently. (Closing
                // it drops this process's POSIX locks on the file — the classic fcntl wart —
                // which is harmless: the machine is off, the connections holding them are
                // ghosts, and the checking connection only opens after they are closed.)
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
                    for (off, data) in ov.torn_pieces(&mut rng, 512) {
                        if f.write_at(data, off).is_ok() {
                            torn_in += data.len() as u64;
                        }
                    }
                    let _ = f.sync_all();
                }
            }
            stats.bytes_torn_in += torn_in;
            stats.bytes_lost += ov.pending_bytes().saturating_sub(torn_in);
            ov.discard();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Registration

struct Registered {
    /// The real VFS; also stored in our vfs' pAppData.
    real: *mut ffi::sqlite3_vfs,
}
// The pointers refer to process-lifetime SQLite objects that SQLite itself synchronizes.
unsafe impl Send for Registered {}
unsafe impl Sync for Registered {}

static REGISTERED: OnceLock<Registered> = OnceLock::new();

/// Our file object. SQLite allocates `szOsFile` bytes and hands us a pointer to them as a
/// `sqlite3_file*`, so `base` must come first; the real VFS's file object follows at
/// [`REAL_OFFSET`] (8-aligned, as SQLite's own allocations are).
#[repr(C)]
struct PlFile {
    base: ffi::sqlite3_file,
    /// Box<FileState>, or null if the open failed.
    state: *mut FileState,
}

const REAL_OFFSET: usize = (std::mem::size_of::<PlFile>() + 7) & !7;

struct FileState {
    tracked: Option<Tracked>,
}

/// A file belonging to a machine.
struct Tracked {
    machine: Arc<MachineInner>,
    inode: Arc<Mutex<Overlay>>,
    /// For debugging: the name the file was opened under.
    path: PathBuf,
}

fn register() {
    REGISTERED.get_or_init(|| unsafe {
        let real = ffi::sqlite3_vfs_find(ptr::null()); // also runs sqlite3_initialize
        assert!(!real.is_null(), "no default SQLite VFS");
        let name = CString::new(VFS_NAME).unwrap().into_raw(); // leaked: lives as long as the VFS
        let vfs = Box::new(ffi::sqlite3_vfs {
            // Version 2: up to xCurrentTimeInt64. No xSetSystemCall & co. (those would let
            // SQLite's own test harness swap the real VFS's syscalls from under us).
            iVersion: 2,
            szOsFile: (REAL_OFFSET + (*real).szOsFile as usize) as c_int,
            mxPathname: (*real).mxPathname,
            pNext: ptr::null_mut(),
            zName: name,
            pAppData: real.cast(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: Some(x_dl_open),
            xDlError: Some(x_dl_error),
            xDlSym: Some(x_dl_sym),
            xDlClose: Some(x_dl_close),
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: Some(x_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        });
        let rc = ffi::sqlite3_vfs_register(Box::into_raw(vfs), 0);
        assert_eq!(rc, ffi::SQLITE_OK, "sqlite3_vfs_register");
        Registered { real }
    });
}

fn real_vfs() -> *mut ffi::sqlite3_vfs {
    REGISTERED.get().expect("registered before any open").real
}

/// The machine owning `path`, if any.
fn machine_for(path: &Path) -> Option<Arc<MachineInner>> {
    lock(&MACHINES).iter().filter_map(Weak::upgrade).find(|m| path.starts_with(&m.root))
}

unsafe fn c_path(z: *const c_char) -> Option<PathBuf> {
    if z.is_null() {
        return None;
    }
    // For the main database SQLite appends URI parameters after the NUL: CStr stops there.
    Some(PathBuf::from(CStr::from_ptr(z).to_string_lossy().into_owned()))
}

// ---------------------------------------------------------------------------------------------
// VFS methods

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let me = file.cast::<PlFile>();
    // SQLite calls xClose whenever pMethods is non-null after xOpen, failed or not: keep it
    // null until everything has succeeded.
    (*me).base.pMethods = ptr::null();
    (*me).state = ptr::null_mut();

    let tracked = match c_path(z_name) {
        None => None, // temp file: not part of any machine's durable state
        Some(path) => match machine_for(&path) {
            None => {
                // Refuse rather than silently pass through: a test that forgets to attach
                // its directory must not quietly test nothing.
                eprintln!("powerloss VFS: {} is not under an attached machine", path.display());
                return ffi::SQLITE_CANTOPEN;
            }
            Some(machine) => {
                let mut st = lock(&machine.state);
                if st.off {
                    // Creating a file would be a disk write; the machine is off.
                    return ffi::SQLITE_CANTOPEN;
                }
                let inode = st.files.entry(path.clone()).or_default().clone();
                drop(st);
                Some(Tracked { machine, inode, path })
            }
        },
    };

    let real = real_file(file);
    let rvfs = real_vfs();
    // The real file object is opened with the real vfs pointer: unixOpen keeps it and reads
    // its pAppData (the locking-style finder), which is not ours.
    let rc = ((*rvfs).xOpen.unwrap())(rvfs, z_name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        if !(*real).pMethods.is_null() {
            ((*(*real).pMethods).xClose.unwrap())(real);
        }
        return rc;
    }
    (*me).state = Box::into_raw(Box::new(FileState { tracked }));
    (*me).base.pMethods = &IO_METHODS;
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(_vfs: *mut ffi::sqlite3_vfs, z_name: *const c_char, sync_dir: c_int) -> c_int {
    let rvfs = real_vfs();
    let path = c_path(z_name);
    if let Some((path, machine)) = path.and_then(|p| machine_for(&p).map(|m| (p, m))) {
        let mut st = lock(&machine.state);
        if st.off {
            // Notably the WAL that a ghost connection deletes on close after "checkpointing".
            st.stats.ops_after_cut += 1;
            return ffi::SQLITE_OK;
        }
        // Unlink: the name goes, handles still open keep their (now nameless) overlay.
        if let Some(inode) = st.files.remove(&path) {
            lock(&inode).discard();
        }
        return ((*rvfs).xDelete.unwrap())(rvfs, z_name, sync_dir);
    }
    ((*rvfs).xDelete.unwrap())(rvfs, z_name, sync_dir)
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    flags: c_int,
    res: *mut c_int,
) -> c_int {
    // unixAccess(EXISTS) reports a zero-length file as missing, which is how SQLite sees a
    // WAL or journal that exists but is empty. With writes pending, the real file may still
    // be empty while the logical one is not: answer from the overlay in that case.
    if flags == ffi::SQLITE_ACCESS_EXISTS {
        if let Some(path) = c_path(z_name) {
            if let Some(machine) = machine_for(&path) {
                let st = lock(&machine.state);
                if let Some(inode) = st.files.get(&path) {
                    let ov = lock(inode);
                    if !ov.is_clean() {
                        // A size is recorded whenever anything is pending.
                        let mut none = NoBacking;
                        *res = (ov.size(&mut none).unwrap_or(0) > 0) as c_int;
                        return ffi::SQLITE_OK;
                    }
                }
            }
        }
    }
    let rvfs = real_vfs();
    ((*rvfs).xAccess.unwrap())(rvfs, z_name, flags, res)
}

/// Only used when the overlay is known to hold a size (never consulted then).
struct NoBacking;
impl Backing for NoBacking {
    fn size(&mut self) -> Result<u64, c_int> {
        Err(ffi::SQLITE_IOERR)
    }
    fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), c_int> {
        Err(ffi::SQLITE_IOERR)
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), c_int> {
        Err(ffi::SQLITE_IOERR)
    }
    fn truncate(&mut self, _: u64) -> Result<(), c_int> {
        Err(ffi::SQLITE_IOERR)
    }
}

// The rest of the VFS methods delegate to the real VFS, passing *its* pointer.

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    n_out: c_int,
    z_out: *mut c_char,
) -> c_int {
    let r = real_vfs();
    ((*r).xFullPathname.unwrap())(r, z_name, n_out, z_out)
}
unsafe extern "C" fn x_dl_open(_vfs: *mut ffi::sqlite3_vfs, z: *const c_char) -> *mut c_void {
    let r = real_vfs();
    match (*r).xDlOpen {
        Some(f) => f(r, z),
        None => ptr::null_mut(),
    }
}
unsafe extern "C" fn x_dl_error(_vfs: *mut ffi::sqlite3_vfs, n: c_int, z: *mut c_char) {
    let r = real_vfs();
    if let Some(f) = (*r).xDlError {
        f(r, n, z)
    }
}
type DlSym = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;
unsafe extern "C" fn x_dl_sym(_vfs: *mut ffi::sqlite3_vfs, h: *mut c_void, z: *const c_char) -> DlSym {
    let r = real_vfs();
    match (*r).xDlSym {
        Some(f) => f(r, h, z),
        None => None,
    }
}
unsafe extern "C" fn x_dl_close(_vfs: *mut ffi::sqlite3_vfs, h: *mut c_void) {
    let r = real_vfs();
    if let Some(f) = (*r).xDlClose {
        f(r, h)
    }
}
unsafe extern "C" fn x_randomness(_vfs: *mut ffi::sqlite3_vfs, n: c_int, z: *mut c_char) -> c_int {
    let r = real_vfs();
    ((*r).xRandomness.unwrap())(r, n, z)
}
unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, us: c_int) -> c_int {
    let r = real_vfs();
    ((*r).xSleep.unwrap())(r, us)
}
unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, t: *mut f64) -> c_int {
    let r = real_vfs();
    ((*r).xCurrentTime.unwrap())(r, t)
}
unsafe extern "C" fn x_get_last_error(_vfs: *mut ffi::sqlite3_vfs, n: c_int, z: *mut c_char) -> c_int {
    let r = real_vfs();
    match (*r).xGetLastError {
        Some(f) => f(r, n, z),
        None => 0,
    }
}
unsafe extern "C" fn x_current_time_int64(_vfs: *mut ffi::sqlite3_vfs, t: *mut ffi::sqlite3_int64) -> c_int {
    let r = real_vfs();
    if (*r).iVersion >= 2 {
        if let Some(f) = (*r).xCurrentTimeInt64 {
            return f(r, t);
        }
    }
    let mut d = 0f64;
    let rc = ((*r).xCurrentTime.unwrap())(r, &mut d);
    *t = (d * 86_400_000.0) as ffi::sqlite3_int64;
    rc
}

// ---------------------------------------------------------------------------------------------
// File methods

/// Version 3 so that SQLite finds the shared-memory methods (WAL needs them: iVersion >= 2)
/// and xFetch. Our xFetch always declines, which makes SQLite fall back to xRead: a memory
/// mapping of the real file would show the disk, not the page cache.
static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(f_close),
    xRead: Some(f_read),
    xWrite: Some(f_write),
    xTruncate: Some(f_truncate),
    xSync: Some(f_sync),
    xFileSize: Some(f_file_size),
    xLock: Some(f_lock),
    xUnlock: Some(f_unlock),
    xCheckReservedLock: Some(f_check_reserved_lock),
    xFileControl: Some(f_file_control),
    xSectorSize: Some(f_sector_size),
    xDeviceCharacteristics: Some(f_device_characteristics),
    xShmMap: Some(f_shm_map),
    xShmLock: Some(f_shm_lock),
    xShmBarrier: Some(f_shm_barrier),
    xShmUnmap: Some(f_shm_unmap),
    xFetch: Some(f_fetch),
    xUnfetch: Some(f_unfetch),
};

unsafe fn real_file(f: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    f.cast::<u8>().add(REAL_OFFSET).cast()
}

unsafe fn real_methods<'a>(f: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    &*(*real_file(f)).pMethods
}

unsafe fn tracked<'a>(f: *mut ffi::sqlite3_file) -> Option<&'a Tracked> {
    let state = (*f.cast::<PlFile>()).state;
    (*state).tracked.as_ref()
}

/// The real file as a [`Backing`] for the overlay.
struct RealFile(*mut ffi::sqlite3_file);

impl Backing for RealFile {
    fn size(&mut self) -> Result<u64, c_int> {
        let mut n: ffi::sqlite3_int64 = 0;
        let rc = unsafe { ((*(*self.0).pMethods).xFileSize.unwrap())(self.0, &mut n) };
        if rc == ffi::SQLITE_OK {
            Ok(n as u64)
        } else {
            Err(rc)
        }
    }
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<(), c_int> {
        let rc = unsafe {
            ((*(*self.0).pMethods).xRead.unwrap())(self.0, buf.as_mut_ptr().cast(), buf.len() as c_int, off as i64)
        };
        // A short read is no error here: the real VFS zero-fills, and whether the *logical*
        // read is short is the overlay's call.
        match rc {
            ffi::SQLITE_OK | ffi::SQLITE_IOERR_SHORT_READ => Ok(()),
            rc => Err(rc),
        }
    }
    fn write(&mut self, off: u64, data: &[u8]) -> Result<(), c_int> {
        let rc = unsafe {
            ((*(*self.0).pMethods).xWrite.unwrap())(self.0, data.as_ptr().cast(), data.len() as c_int, off as i64)
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(rc)
        }
    }
    fn truncate(&mut self, size: u64) -> Result<(), c_int> {
        let rc = unsafe { ((*(*self.0).pMethods).xTruncate.unwrap())(self.0, size as i64) };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(rc)
        }
    }
}

fn rc_of(r: Result<(), c_int>) -> c_int {
    r.err().unwrap_or(ffi::SQLITE_OK)
}

unsafe extern "C" fn f_close(f: *mut ffi::sqlite3_file) -> c_int {
    let real = real_file(f);
    let rc = (real_methods(f).xClose.unwrap())(real);
    // Pending data stays in the machine's page cache: close() is not fsync().
    let me = f.cast::<PlFile>();
    drop(Box::from_raw((*me).state));
    (*me).state = ptr::null_mut();
    rc
}

unsafe extern "C" fn f_read(f: *mut ffi::sqlite3_file, buf: *mut c_void, n: c_int, off: ffi::sqlite3_int64) -> c_int {
    let real = real_file(f);
    let Some(t) = tracked(f) else {
        return (real_methods(f).xRead.unwrap())(real, buf, n, off);
    };
    if n <= 0 || buf.is_null() || off < 0 {
        return ffi::SQLITE_OK;
    }
    let _st = lock(&t.machine.state); // machine, then inode: the one lock order
    let ov = lock(&t.inode);
    let buf = std::slice::from_raw_parts_mut(buf.cast::<u8>(), n as usize);
    match ov.read(&mut RealFile(real), off as u64, buf) {
        Ok(Read::Full) => ffi::SQLITE_OK,
        Ok(Read::Short) => ffi::SQLITE_IOERR_SHORT_READ,
        Err(rc) => rc,
    }
}

unsafe extern "C" fn f_write(
    f: *mut ffi::sqlite3_file,
    buf: *const c_void,
    n: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    let real = real_file(f);
    let Some(t) = tracked(f) else {
        return (real_methods(f).xWrite.unwrap())(real, buf, n, off);
    };
    if n <= 0 || buf.is_null() || off < 0 {
        return ffi::SQLITE_OK;
    }
    let mut st = lock(&t.machine.state);
    if st.off {
        st.stats.ops_after_cut += 1;
        return ffi::SQLITE_OK;
    }
    let data = std::slice::from_raw_parts(buf.cast::<u8>(), n as usize);
    rc_of(lock(&t.inode).write(&mut RealFile(real), off as u64, data))
}

unsafe extern "C" fn f_truncate(f: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    let real = real_file(f);
    let Some(t) = tracked(f) else {
        return (real_methods(f).xTruncate.unwrap())(real, size);
    };
    let mut st = lock(&t.machine.state);
    if st.off {
        st.stats.ops_after_cut += 1;
        return ffi::SQLITE_OK;
    }
    // A truncation is a metadata change that needs fsync to be durable, like a write.
    lock(&t.inode).truncate(size as u64);
    ffi::SQLITE_OK
}

unsafe extern "C" fn f_sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let real = real_file(f);
    let Some(t) = tracked(f) else {
        return (real_methods(f).xSync.unwrap())(real, flags);
    };
    // The machine lock is held across flush *and* fsync: a concurrent cut waits, so every
    // xSync that returned before the cut is entirely on disk, and none after it is.
    let mut st = lock(&t.machine.state);
    match st.armed {
        Some((1, how)) => st.cut(how), // the power fails instead of this sync
        Some((n, how)) => st.armed = Some((n - 1, how)),
        None => {}
    }
    if st.off {
        st.stats.ops_after_cut += 1;
        return ffi::SQLITE_OK;
    }
    let rc = rc_of(lock(&t.inode).flush(&mut RealFile(real)));
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    st.stats.syncs += 1;
    (real_methods(f).xSync.unwrap())(real, flags)
}

unsafe extern "C" fn f_file_size(f: *mut ffi::sqlite3_file, out: *mut ffi::sqlite3_int64) -> c_int {
    let real = real_file(f);
    let Some(t) = tracked(f) else {
        return (real_methods(f).xFileSize.unwrap())(real, out);
    };
    let _st = lock(&t.machine.state);
    match lock(&t.inode).size(&mut RealFile(real)) {
        Ok(n) => {
            *out = n as ffi::sqlite3_int64;
            ffi::SQLITE_OK
        }
        Err(rc) => rc,
    }
}

// Locks are process/OS state, not disk content: straight through.
unsafe extern "C" fn f_lock(f: *mut ffi::sqlite3_file, l: c_int) -> c_int {
    (real_methods(f).xLock.unwrap())(real_file(f), l)
}
unsafe extern "C" fn f_unlock(f: *mut ffi::sqlite3_file, l: c_int) -> c_int {
    (real_methods(f).xUnlock.unwrap())(real_file(f), l)
}
unsafe extern "C" fn f_check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    (real_methods(f).xCheckReservedLock.unwrap())(real_file(f), out)
}

unsafe extern "C" fn f_file_control(f: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    if tracked(f).is_some() {
        match op {
            // The unix VFS would grow the real file (fallocate/ftruncate) behind the overlay.
            // Both are hints; SQLite ignores how they are answered.
            ffi::SQLITE_FCNTL_SIZE_HINT | ffi::SQLITE_FCNTL_CHUNK_SIZE => return ffi::SQLITE_OK,
            // Keep the real file's own mmap off too (xFetch declines anyway).
            ffi::SQLITE_FCNTL_MMAP_SIZE => {
                let req = arg.cast::<ffi::sqlite3_int64>();
                if !req.is_null() && *req > 0 {
                    *req = 0;
                }
            }
            _ => {}
        }
    }
    (real_methods(f).xFileControl.unwrap())(real_file(f), op, arg)
}

unsafe extern "C" fn f_sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    (real_methods(f).xSectorSize.unwrap())(real_file(f))
}

/// What the simulated disk promises SQLite.
///
/// * POWERSAFE_OVERWRITE is kept (the unix VFS reports it by default, so production SQLite
///   runs with it): it promises that a write, lost or torn, never damages bytes *outside*
///   the written range. The simulated disk honours it exactly — a cut drops or keeps pending
///   bytes, never touches synced ones — and keeping it makes SQLite take the same code path
///   as in production (no WAL padding to sector boundaries). Clearing it would test a
///   configuration the gateway never runs in.
/// * ATOMIC*, SAFE_APPEND, SEQUENTIAL and BATCH_ATOMIC are cleared: each lets SQLite skip a
///   sync or a safety step (SEQUENTIAL even skips the WAL header sync), and the torn cut
///   breaks all of them. The unix VFS does not report them on ext4 anyway.
unsafe extern "C" fn f_device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    let real = (real_methods(f).xDeviceCharacteristics.unwrap())(real_file(f));
    if tracked(f).is_none() {
        return real;
    }
    let unsafe_promises = ffi::SQLITE_IOCAP_ATOMIC
        | ffi::SQLITE_IOCAP_ATOMIC512
        | ffi::SQLITE_IOCAP_ATOMIC1K
        | ffi::SQLITE_IOCAP_ATOMIC2K
        | ffi::SQLITE_IOCAP_ATOMIC4K
        | ffi::SQLITE_IOCAP_ATOMIC8K
        | ffi::SQLITE_IOCAP_ATOMIC16K
        | ffi::SQLITE_IOCAP_ATOMIC32K
        | ffi::SQLITE_IOCAP_ATOMIC64K
        | ffi::SQLITE_IOCAP_SAFE_APPEND
        | ffi::SQLITE_IOCAP_SEQUENTIAL
        | ffi::SQLITE_IOCAP_BATCH_ATOMIC;
    real & !unsafe_promises
}

// The wal-index: shared memory between connections, mapped by the real VFS from the `-shm`
// file. Not durable state (recovery rebuilds it from the WAL), so it passes through.
unsafe extern "C" fn f_shm_map(
    f: *mut ffi::sqlite3_file,
    pg: c_int,
    pgsz: c_int,
    extend: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    match real_methods(f).xShmMap {
        Some(m) => m(real_file(f), pg, pgsz, extend, pp),
        None => ffi::SQLITE_IOERR,
    }
}
unsafe extern "C" fn f_shm_lock(f: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    match real_methods(f).xShmLock {
        Some(m) => m(real_file(f), offset, n, flags),
        None => ffi::SQLITE_IOERR,
    }
}
unsafe extern "C" fn f_shm_barrier(f: *mut ffi::sqlite3_file) {
    if let Some(m) = real_methods(f).xShmBarrier {
        m(real_file(f))
    }
}
unsafe extern "C" fn f_shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    let Some(m) = real_methods(f).xShmUnmap else {
        return ffi::SQLITE_OK;
    };
    // Always unmap (the real VFS must release its shm node), but once the power is off the
    // `-shm` file must not be unlinked either: nothing at all happens to the disk.
    let delete = match tracked(f) {
        Some(t) if lock(&t.machine.state).off => 0,
        _ => delete,
    };
    m(real_file(f), delete)
}

unsafe extern "C" fn f_fetch(
    f: *mut ffi::sqlite3_file,
    off: ffi::sqlite3_int64,
    n: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    if tracked(f).is_none() {
        if let Some(m) = real_methods(f).xFetch {
            return m(real_file(f), off, n, pp);
        }
    }
    // "No mapping available": SQLite reads through xRead, i.e. through the overlay.
    *pp = ptr::null_mut();
    ffi::SQLITE_OK
}
unsafe extern "C" fn f_unfetch(f: *mut ffi::sqlite3_file, off: ffi::sqlite3_int64, p: *mut c_void) -> c_int {
    if tracked(f).is_none() {
        if let Some(m) = real_methods(f).xUnfetch {
            return m(real_file(f), off, p);
        }
    }
    ffi::SQLITE_OK
}
