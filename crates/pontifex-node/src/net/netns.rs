//! Named network namespaces, compatible with `ip netns`: a namespace named `NAME` is kept alive by a bind
//! mount of its nsfs inode on `/run/netns/NAME`, so `ip netns exec NAME …`, `ip -n NAME …` and this module
//! see the same namespaces.
//!
//! Entering a namespace is per thread (`setns(2)` with `CLONE_NEWNET` changes only the calling thread), so
//! [`run_in`] runs its closure on a fresh thread that enters the namespace and then ends: the namespace can
//! never leak into a thread pool. Sockets created there (a netlink socket, a listener) stay bound to that
//! namespace wherever they are used later, and processes spawned there start inside it.
//!
//! No `unsafe` here: `nix` wraps `setns`, `unshare` and `mount`.
//!
//! What it does not do: user or mount namespaces, or anything about what runs inside.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Where `ip netns` keeps its bind mounts.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A namespace operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// The name is empty, too long, or has a `/` or a leading `.` (it is a file name under `/run/netns`).
    #[error("invalid network namespace name {0:?}")]
    InvalidName(String),
    /// No namespace of that name exists.
    #[error("network namespace {0:?} does not exist")]
    NotFound(String),
    /// A system call failed.
    #[error("network namespace {name:?}: {op}: {source}")]
    Sys {
        /// The namespace.
        name: String,
        /// What was being done.
        op: &'static str,
        /// The error from the kernel.
        #[source]
        source: io::Error,
    },
    /// The thread that entered the namespace panicked (the panic came from the caller's closure).
    #[error("network namespace {0:?}: the thread running inside it panicked")]
    Panicked(String),
}

fn sys<'a>(name: &'a str, op: &'static str) -> impl FnOnce(nix::Error) -> NetnsError + 'a {
    move |e| NetnsError::Sys {
        name: name.to_owned(),
        op,
        source: io::Error::from(e),
    }
}

fn io_err<'a>(name: &'a str, op: &'static str) -> impl FnOnce(io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Sys {
        name: name.to_owned(),
        op,
        source,
    }
}

fn validate(name: &str) -> Result<(), NetnsError> {
    // `ip netns` accepts any file name; we also cap the length so names stay readable in `ip netns list`.
    if name.is_empty()
        || name.len() > 200
        || name.contains('/')
        || name.starts_with('.')
        || name.contains('\0')
    {
        return Err(NetnsError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// The path of the bind mount that holds namespace `name` (it may not exist).
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Open namespace `name`: the file can be passed to `setns(2)` or to a netlink "move link to namespace by
/// fd" request. Errors with [`NetnsError::NotFound`] when it does not exist.
pub fn open(name: &str) -> Result<File, NetnsError> {
    validate(name)?;
    if !exists(name)? {
        return Err(NetnsError::NotFound(name.to_owned()));
    }
    File::open(path(name)).map_err(io_err(name, "open"))
}

/// Whether namespace `name` exists: its file is a mounted nsfs inode (a file left by a crash between
/// creating the file and mounting on it does not count).
pub fn exists(name: &str) -> Result<bool, NetnsError> {
    validate(name)?;
    match nix::sys::statfs::statfs(&path(name)) {
        Ok(st) => Ok(st.filesystem_type() == nix::sys::statfs::NSFS_MAGIC),
        Err(nix::Error::ENOENT) => Ok(false),
        Err(e) => Err(sys(name, "statfs")(e)),
    }
}

/// Make `/run/netns` a shared mount point, as `ip netns add` does, so namespace mounts made later
/// propagate into mount namespaces cloned from this one (and unmounts too).
fn prepare_run_dir() -> Result<(), NetnsError> {
    let dir = Path::new(NETNS_RUN_DIR);
    std::fs::create_dir_all(dir).map_err(io_err(NETNS_RUN_DIR, "mkdir"))?;
    let shared = |d: &Path| {
        nix::mount::mount(
            None::<&str>,
            d,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared(dir) {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself first (what iproute2 does on EINVAL).
        Err(nix::Error::EINVAL) => {
            nix::mount::mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys(NETNS_RUN_DIR, "bind mount"))?;
            shared(dir).map_err(sys(NETNS_RUN_DIR, "make shared"))
        }
        Err(e) => Err(sys(NETNS_RUN_DIR, "make shared")(e)),
    }
}

/// Create namespace `name` (with only a `lo`, down). Idempotent: an existing namespace is kept as it is.
pub fn create(name: &str) -> Result<(), NetnsError> {
    validate(name)?;
    if exists(name)? {
        return Ok(());
    }
    prepare_run_dir()?;
    let target = path(name);
    // The mount point must exist; an empty file left by an earlier crash is reused.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&target)
        .map_err(io_err(name, "create mount point"))?;
    let name_owned = name.to_owned();
    let made = std::thread::scope(|s| {
        s.spawn(move || -> Result<(), NetnsError> {
            // This thread alone moves to a new namespace; it ends right after, so nothing else runs there.
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(sys(&name_owned, "unshare"))?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys(&name_owned, "bind mount"))
        })
        .join()
    });
    match made {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            // Another creator may have won the race for the same name: then it exists and that is fine.
            if exists(name)? {
                return Ok(());
            }
            let _ = std::fs::remove_file(path(name));
            Err(e)
        }
        Err(_) => Err(NetnsError::Panicked(name.to_owned())),
    }
}

/// Delete namespace `name`: unmount and remove its file. The namespace itself disappears once no process
/// and no open file keeps it alive (its links go with it). Idempotent: a missing namespace is not an error.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    validate(name)?;
    let target = path(name);
    match nix::mount::umount2(&target, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a leftover file); ENOENT: already gone.
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(sys(name, "umount")(e)),
    }
    match std::fs::remove_file(&target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(name, "remove")(e)),
    }
}

/// The names of the existing namespaces that start with `prefix` (all of them for `""`), sorted.
pub fn list(prefix: &str) -> Result<Vec<String>, NetnsError> {
    let entries = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(NETNS_RUN_DIR, "list")(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(NETNS_RUN_DIR, "list"))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(prefix) && validate(&name).is_ok() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Run `f` inside namespace `name` on a dedicated thread, and return what it returns.
///
/// The thread enters the namespace before `f` and ends after it. Inside `f` one may build a
/// current-thread tokio runtime, open sockets (they stay in the namespace), or spawn processes (a child
/// starts in the namespace of the thread that forked it). A panic in `f` is reported as
/// [`NetnsError::Panicked`].
pub fn run_in<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let ns = open(name)?;
    let joined = std::thread::scope(|s| {
        s.spawn(move || -> Result<T, NetnsError> {
            nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(sys(name, "setns"))?;
            drop(ns);
            Ok(f())
        })
        .join()
    });
    joined.unwrap_or_else(|_| Err(NetnsError::Panicked(name.to_owned())))
}
