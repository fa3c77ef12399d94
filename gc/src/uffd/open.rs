//! Creating a userfaultfd: the three open paths, the explanations recorded in
//! [`OpenAttempt`], the feature probe and the `UFFDIO_API` handshake.
//!
//! Nothing here runs in a signal handler, so it allocates freely (reasons are
//! human-readable strings built from `/proc`, `/etc/passwd` and `stat()`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{
    errno, sys, Features, Ioctls, OpenAttempt, OpenOptions, OpenPath, Uffd, UffdError, PAGE_SIZE,
};

/// Symbolic errno name, e.g. `"EPERM"`.
fn ename(errno: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(errno))
}

/// `userfaultfd(flags)`; the new descriptor or the errno.
fn userfaultfd_syscall(flags: libc::c_int) -> Result<OwnedFd, i32> {
    // SAFETY: `userfaultfd(2)` takes one int flags argument and returns a new
    // descriptor or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: the kernel just created `fd` for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// `open("/dev/userfaultfd")` + `USERFAULTFD_IOC_NEW(flags)`; on failure the
/// errno and whether it came from `open` (true) or the ioctl (false). No
/// allocation (usable right after `fork`).
fn dev_userfaultfd(flags: libc::c_int) -> Result<OwnedFd, (i32, bool)> {
    // SAFETY: a constant NUL-terminated path; `open` does not retain it.
    let dev = unsafe {
        libc::open(
            sys::DEV_USERFAULTFD_C.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC,
        )
    };
    if dev < 0 {
        return Err((errno(), true));
    }
    // SAFETY: `dev` was just opened by us and is owned by nobody else.
    let dev = unsafe { OwnedFd::from_raw_fd(dev) };
    // SAFETY: USERFAULTFD_IOC_NEW is `_IO`: its argument is the flags word
    // passed by value (as an unsigned long, the width the kernel reads), no
    // memory is shared. It returns a new descriptor or -1.
    let fd = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            sys::USERFAULTFD_IOC_NEW,
            flags as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err((errno(), false));
    }
    // SAFETY: the kernel just created `fd` for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Look a numeric id up in an `/etc/passwd`-style file (name:x:id:...).
fn id_name(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let _pw = fields.next()?;
                (fields.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

/// `ls -l` style description of the device node, e.g. `crw------- root:root`.
fn describe_device() -> String {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: the path is NUL-terminated and `st` is a writable `struct stat`.
    if unsafe { libc::stat(sys::DEV_USERFAULTFD_C.as_ptr(), st.as_mut_ptr()) } != 0 {
        return format!(
            "{} cannot be stat()ed ({})",
            sys::DEV_USERFAULTFD,
            ename(errno())
        );
    }
    // SAFETY: `stat` returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFDIR => 'd',
        libc::S_IFREG => '-',
        _ => '?',
    };
    let mut mode = String::from(kind);
    for shift in [6u32, 3, 0] {
        let bits = (st.st_mode >> shift) & 7;
        mode.push(if bits & 4 != 0 { 'r' } else { '-' });
        mode.push(if bits & 2 != 0 { 'w' } else { '-' });
        mode.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    format!(
        "{} is {} {}:{}",
        sys::DEV_USERFAULTFD,
        mode,
        id_name("/etc/passwd", st.st_uid),
        id_name("/etc/group", st.st_gid)
    )
}

/// A field of this *thread's* `/proc/thread-self/status` (credentials are
/// per thread; `/proc/self` would show the main thread's).
fn thread_status(field: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
}

/// Whether the effective capability set has `CAP_SYS_PTRACE` (bit 19).
/// Only used to word explanations.
fn has_cap_sys_ptrace() -> Option<bool> {
    let caps = u64::from_str_radix(&thread_status("CapEff:")?, 16).ok()?;
    Some(caps & (1 << 19) != 0)
}

/// The filesystem uid used for permission checks (4th `Uid:` field).
fn fsuid() -> Option<String> {
    thread_status("Uid:")?
        .split_whitespace()
        .nth(3)
        .map(str::to_string)
}

/// `vm.unprivileged_userfaultfd`, if readable.
fn unprivileged_sysctl() -> Option<String> {
    std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Try one path. `Ok((fd, description))` or `Err((errno, reason))`.
fn try_path(path: OpenPath, nonblocking: bool) -> Result<(OwnedFd, String), (i32, String)> {
    let mut flags = libc::O_CLOEXEC;
    let mut flag_text = String::from("O_CLOEXEC");
    if nonblocking {
        flags |= libc::O_NONBLOCK;
        flag_text.push_str("|O_NONBLOCK");
    }
    match path {
        OpenPath::UserModeOnly => {
            userfaultfd_syscall(flags | sys::UFFD_USER_MODE_ONLY)
                .map(|fd| (fd, format!("userfaultfd({flag_text}|UFFD_USER_MODE_ONLY)")))
                .map_err(|e| {
                    let why = match e {
                        libc::EINVAL => "kernel predates UFFD_USER_MODE_ONLY (Linux < 5.11)",
                        libc::ENOSYS => "userfaultfd(2) not available (CONFIG_USERFAULTFD=n or filtered)",
                        libc::EPERM => "userfaultfd(UFFD_USER_MODE_ONLY) denied by seccomp/LSM policy",
                        libc::EMFILE | libc::ENFILE => "out of file descriptors",
                        _ => "userfaultfd(UFFD_USER_MODE_ONLY) failed",
                    };
                    (e, format!("{}: {why}", ename(e)))
                })
        }
        OpenPath::DevUserfaultfd => dev_userfaultfd(flags)
            .map(|fd| (fd, format!("{} + USERFAULTFD_IOC_NEW({flag_text})", sys::DEV_USERFAULTFD)))
            .map_err(|(e, at_open)| {
                let why = if !at_open {
                    format!("USERFAULTFD_IOC_NEW on {} failed", sys::DEV_USERFAULTFD)
                } else if e == libc::ENOENT {
                    format!("{} does not exist (Linux < 6.1 or no device node)", sys::DEV_USERFAULTFD)
                } else if e == libc::EACCES || e == libc::EPERM {
                    let who = fsuid().unwrap_or_else(|| "?".into());
                    format!("{} (our fsuid is {who})", describe_device())
                } else {
                    format!("open({}) failed", sys::DEV_USERFAULTFD)
                };
                (e, format!("{}: {why}", ename(e)))
            }),
        OpenPath::Syscall => userfaultfd_syscall(flags)
            .map(|fd| (fd, format!("userfaultfd({flag_text})")))
            .map_err(|e| {
                let why = match e {
                    libc::EPERM => {
                        let sysctl = unprivileged_sysctl().unwrap_or_else(|| "?".into());
                        match has_cap_sys_ptrace() {
                            Some(true) => format!(
                                "vm.unprivileged_userfaultfd={sysctl}; CAP_SYS_PTRACE present but not \
                                 in the initial user namespace, or denied by seccomp/LSM"
                            ),
                            _ => format!("vm.unprivileged_userfaultfd={sysctl} and no CAP_SYS_PTRACE"),
                        }
                    }
                    libc::ENOSYS => "userfaultfd(2) not available (CONFIG_USERFAULTFD=n or filtered)".into(),
                    _ => "userfaultfd(2) failed".into(),
                };
                (e, format!("{}: {why}", ename(e)))
            }),
    }
}

/// A descriptor for probing: user-mode-only via the syscall, else via the
/// device (still user-mode-only). Records the attempts.
fn probe_fd(attempts: &mut Vec<OpenAttempt>) -> Option<OwnedFd> {
    let flags = libc::O_CLOEXEC | sys::UFFD_USER_MODE_ONLY;
    match userfaultfd_syscall(flags) {
        Ok(fd) => {
            attempts.push(OpenAttempt {
                path: OpenPath::UserModeOnly,
                errno: None,
                reason: "userfaultfd(O_CLOEXEC|UFFD_USER_MODE_ONLY) (probe)".into(),
                ok: true,
            });
            return Some(fd);
        }
        Err(e) => attempts.push(OpenAttempt {
            path: OpenPath::UserModeOnly,
            errno: Some(e),
            reason: format!(
                "{}: userfaultfd(UFFD_USER_MODE_ONLY) failed (probe)",
                ename(e)
            ),
            ok: false,
        }),
    }
    match dev_userfaultfd(flags) {
        Ok(fd) => {
            attempts.push(OpenAttempt {
                path: OpenPath::DevUserfaultfd,
                errno: None,
                reason: format!(
                    "{} + USERFAULTFD_IOC_NEW(UFFD_USER_MODE_ONLY) (probe)",
                    sys::DEV_USERFAULTFD
                ),
                ok: true,
            });
            Some(fd)
        }
        Err((e, _)) => {
            attempts.push(OpenAttempt {
                path: OpenPath::DevUserfaultfd,
                errno: Some(e),
                reason: format!("{}: {} unusable (probe)", ename(e), sys::DEV_USERFAULTFD),
                ok: false,
            });
            None
        }
    }
}

/// `UFFDIO_API` with `features`; the kernel's reply or the errno.
fn api(fd: &OwnedFd, features: u64) -> Result<sys::uffdio_api, i32> {
    let mut arg = sys::uffdio_api {
        api: sys::UFFD_API,
        features,
        ioctls: 0,
    };
    loop {
        // SAFETY: `fd` is an open, not yet initialised userfaultfd; `arg` is
        // a writable `uffdio_api` whose size is encoded in the request.
        let rc = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                sys::UFFDIO_API,
                &mut arg as *mut sys::uffdio_api,
            )
        };
        if rc == 0 {
            return Ok(arg);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Supported features and descriptor ioctls, from a throw-away descriptor.
pub(super) fn probe_supported() -> Result<(Features, Ioctls), UffdError> {
    let mut attempts = Vec::new();
    let Some(fd) = probe_fd(&mut attempts) else {
        return Err(UffdError::Unavailable {
            reason: "cannot create a user-mode-only userfaultfd to probe features".into(),
            attempts,
        });
    };
    match api(&fd, 0) {
        Ok(reply) => Ok((
            Features::from_bits_retain(reply.features),
            Ioctls::from_bits_retain(reply.ioctls),
        )),
        Err(e) => Err(UffdError::Unavailable {
            reason: format!("UFFDIO_API(features=0) failed: {}", ename(e)),
            attempts,
        }),
    }
}

/// Whether this process may enable `EVENT_FORK` (needs `CAP_SYS_PTRACE` in
/// the initial user namespace), asked of the kernel on a throw-away fd.
fn event_fork_allowed() -> bool {
    let mut scratch = Vec::new();
    probe_fd(&mut scratch).is_some_and(|fd| api(&fd, sys::UFFD_FEATURE_EVENT_FORK).is_ok())
}

/// One-line summary of failed attempts.
fn summarize(attempts: &[OpenAttempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.path, a.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// [`Uffd::open`].
pub(super) fn open(opts: &OpenOptions) -> Result<Uffd, UffdError> {
    let mut attempts: Vec<OpenAttempt> = Vec::new();

    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page != PAGE_SIZE as libc::c_long {
        return Err(UffdError::Unavailable {
            reason: format!("page size is {page}, this build supports only {PAGE_SIZE}"),
            attempts,
        });
    }
    if opts.paths.is_empty() {
        return Err(UffdError::Unavailable {
            reason: "no open path allowed by the options".into(),
            attempts,
        });
    }

    let mut opened = None;
    for &path in &opts.paths {
        match try_path(path, opts.nonblocking) {
            Ok((fd, reason)) => {
                attempts.push(OpenAttempt {
                    path,
                    errno: None,
                    reason,
                    ok: true,
                });
                opened = Some((path, fd));
                break;
            }
            Err((errno, reason)) => attempts.push(OpenAttempt {
                path,
                errno: Some(errno),
                reason,
                ok: false,
            }),
        }
    }
    let Some((path, fd)) = opened else {
        return Err(UffdError::Unavailable {
            reason: format!("no userfaultfd open path worked ({})", summarize(&attempts)),
            attempts,
        });
    };

    // Negotiate: requested ∩ supported, minus EVENT_FORK if not permitted.
    let requested = opts.features | opts.required;
    let mut want = match probe_supported() {
        Ok((supported, _)) => requested & supported,
        // Probe impossible (e.g. only the full-privilege path works): ask for
        // everything and let the handshake decide.
        Err(_) => requested,
    };
    if want.contains(Features::EVENT_FORK) && !event_fork_allowed() {
        want.remove(Features::EVENT_FORK);
    }
    let missing = opts.required - want;
    if !missing.is_empty() {
        let reason = if missing == Features::EVENT_FORK {
            "EVENT_FORK requires CAP_SYS_PTRACE (UFFDIO_API would fail with EPERM)".to_string()
        } else {
            format!(
                "kernel lacks required features: {}",
                missing.names().join(", ")
            )
        };
        return Err(UffdError::Unavailable { reason, attempts });
    }

    let reply = match api(&fd, want.bits()) {
        Ok(reply) => reply,
        Err(e) => {
            return Err(UffdError::Unavailable {
                reason: format!(
                    "UFFDIO_API(features={}) failed: {}",
                    want.names().join("|"),
                    ename(e)
                ),
                attempts,
            })
        }
    };
    let mut granted = want;
    if granted.contains(Features::WP_ASYNC) {
        // The kernel turns WP_UNPOPULATED on together with WP_ASYNC.
        granted |= Features::WP_UNPOPULATED;
    }
    Ok(Uffd {
        fd,
        path,
        attempts,
        features: granted,
        ioctls: Ioctls::from_bits_retain(reply.ioctls),
        nonblocking: opts.nonblocking,
    })
}

/// A user-mode-only descriptor with `features`, opened without allocating
/// (the syscall, else the device, whose path is a constant): usable in a
/// child just forked from a threaded process, where only
/// async-signal-safe calls are allowed. `Err(errno)` if neither path
/// opens or the kernel refuses a feature.
pub(super) fn open_after_fork(features: Features) -> Result<Uffd, i32> {
    let flags = libc::O_CLOEXEC | sys::UFFD_USER_MODE_ONLY;
    let (fd, path) = match userfaultfd_syscall(flags) {
        Ok(fd) => (fd, OpenPath::UserModeOnly),
        Err(_) => (
            dev_userfaultfd(flags).map_err(|(e, _)| e)?,
            OpenPath::DevUserfaultfd,
        ),
    };
    let reply = api(&fd, features.bits())?;
    Ok(Uffd {
        fd,
        path,
        attempts: Vec::new(),
        features,
        ioctls: Ioctls::from_bits_retain(reply.ioctls),
        nonblocking: false,
    })
}
