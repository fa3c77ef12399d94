//! `PAGEMAP_SCAN` on `/proc/self/pagemap` (Linux 6.7): which pages of a
//! range that a userfaultfd with `UFFD_FEATURE_WP_ASYNC` registered for
//! write-protection (`RegisterMode::WP`) were written since they were last
//! protected, re-protecting exactly those pages in the same walk. With
//! `WP_ASYNC` the kernel resolves the write fault itself (no message, no
//! handler): the first write to a protected page costs a minor fault and
//! marks it written; later writes cost nothing. Together they are dirty-page
//! tracking with no barrier code in the program — the remembered-set builder
//! issue 13 asks for, next to the card table (`generation`).
//!
//! Only the plain `PAGE_IS_WRITTEN` request is used (the kernel's fast
//! path): a kernel fix of July 2026 concerned requests with extra category
//! masks, which reported zapped ranges as clean.

use std::fs::File;
use std::os::fd::AsRawFd;

use super::sys;
use super::UffdError;

/// `/proc/self/pagemap`, opened for `PAGEMAP_SCAN`.
#[derive(Debug)]
pub struct Pagemap {
    file: File,
}

/// Regions per ioctl call (the walk resumes at `walk_end` if more).
const REGIONS: usize = 256;

impl Pagemap {
    /// Opens this process's pagemap.
    ///
    /// # Errors
    /// `Os` with the `open(2)` errno (`ENOENT` without procfs).
    pub fn open() -> Result<Pagemap, UffdError> {
        File::open("/proc/self/pagemap")
            .map(|file| Pagemap { file })
            .map_err(|e| UffdError::Os {
                op: "open /proc/self/pagemap",
                errno: e.raw_os_error().unwrap_or(libc::EIO),
            })
    }

    /// Appends to `out` the page ranges `(start, end)` of `[start, end)`
    /// written since they were last protected, and write-protects them
    /// again (one atomic walk per call of the ioctl). Every page of the
    /// range must be registered `WP` with a `WP_ASYNC` userfaultfd
    /// (`PM_SCAN_CHECK_WPASYNC`: otherwise `EPERM`).
    ///
    /// # Errors
    /// `InvalidRange` for an unaligned range; `Os` with the ioctl's errno
    /// (`ENOTTY` before Linux 6.7, `EPERM` for a page not async-protected).
    pub fn take_written(
        &self,
        start: usize,
        end: usize,
        out: &mut Vec<(usize, usize)>,
    ) -> Result<(), UffdError> {
        self.scan(start, end, true, out)
    }

    /// [`take_written`](Self::take_written) without re-protecting: the
    /// written pages stay written (the collector's scan at the start of a
    /// cycle, which protects the old region again only once the cycle
    /// ends).
    ///
    /// # Errors
    /// As for [`take_written`](Self::take_written).
    pub fn written(
        &self,
        start: usize,
        end: usize,
        out: &mut Vec<(usize, usize)>,
    ) -> Result<(), UffdError> {
        self.scan(start, end, false, out)
    }

    fn scan(
        &self,
        start: usize,
        end: usize,
        protect: bool,
        out: &mut Vec<(usize, usize)>,
    ) -> Result<(), UffdError> {
        if start % sys::PAGE_SIZE != 0 || end % sys::PAGE_SIZE != 0 || end < start {
            return Err(UffdError::InvalidRange {
                addr: start,
                len: end.wrapping_sub(start),
                reason: "PAGEMAP_SCAN needs a page-aligned range",
            });
        }
        let mut regions = [sys::page_region::default(); REGIONS];
        let mut at = start;
        while at < end {
            let mut arg = sys::pm_scan_arg {
                size: std::mem::size_of::<sys::pm_scan_arg>() as u64,
                flags: if protect {
                    sys::PM_SCAN_WP_MATCHING | sys::PM_SCAN_CHECK_WPASYNC
                } else {
                    sys::PM_SCAN_CHECK_WPASYNC
                },
                start: at as u64,
                end: end as u64,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: REGIONS as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: sys::PAGE_IS_WRITTEN,
                category_anyof_mask: 0,
                return_mask: sys::PAGE_IS_WRITTEN,
            };
            let n = loop {
                // SAFETY: `arg` is a `#[repr(C)]` pm_scan_arg whose size is
                // encoded in the request (asserted in `sys`); its `vec`
                // points at `REGIONS` page_region entries this frame owns,
                // which is all the kernel writes besides `arg` itself. The
                // walk changes at most the uffd-wp bits of this process's
                // page-table entries (write tracking), never page contents.
                let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), sys::PAGEMAP_SCAN, &mut arg) };
                if rc >= 0 {
                    break rc as usize;
                }
                let e = std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                if e != libc::EINTR {
                    return Err(UffdError::Os {
                        op: "PAGEMAP_SCAN",
                        errno: e,
                    });
                }
            };
            for r in &regions[..n.min(REGIONS)] {
                out.push((r.start as usize, r.end as usize));
            }
            let walk_end = arg.walk_end as usize;
            if walk_end <= at {
                break; // no progress: the kernel says the walk is complete
            }
            at = walk_end;
        }
        Ok(())
    }
}
