//! Guest RAM: one memfd mapped once in the monitor. A memfd (rather than anonymous memory) so
//! that the native-execution children can later map the same pages (design.md 3.3).

use std::io;
use std::ptr::NonNull;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest memory size {0:#x} is not a positive multiple of 4 KiB below 3 GiB")]
    BadSize(u64),
    #[error("cannot create guest memory: {0}")]
    Os(#[from] io::Error),
}

/// Guest-physical RAM at [0, size).
pub struct GuestRam {
    base: NonNull<u8>,
    size: u64,
    fd: libc::c_int,
}

/// Highest RAM size below the 32-bit MMIO hole (LAPIC/IOAPIC/PCI windows live above 3 GiB).
pub const MAX_LOW_RAM: u64 = 3 << 30;

impl GuestRam {
    pub fn new(size: u64) -> Result<GuestRam, MemoryError> {
        if size == 0 || size % 4096 != 0 || size > MAX_LOW_RAM {
            return Err(MemoryError::BadSize(size));
        }
        // SAFETY: plain system calls on a fresh descriptor; every result is checked.
        unsafe {
            let fd = libc::memfd_create(c"btvisor-ram".as_ptr(), libc::MFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error().into());
            }
            if libc::ftruncate(fd, size as libc::off_t) != 0 {
                let e = io::Error::last_os_error();
                libc::close(fd);
                return Err(e.into());
            }
            let p = libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd,
                0,
            );
            if p == libc::MAP_FAILED {
                let e = io::Error::last_os_error();
                libc::close(fd);
                return Err(e.into());
            }
            Ok(GuestRam {
                base: NonNull::new_unchecked(p as *mut u8),
                size,
                fd,
            })
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn contains(&self, phys: u64, len: u64) -> bool {
        phys.checked_add(len).is_some_and(|end| end <= self.size)
    }

    /// Host pointer of a guest-physical address inside RAM.
    pub fn host_ptr(&self, phys: u64) -> Option<*mut u8> {
        // SAFETY: in bounds of the mapping (checked).
        self.contains(phys, 1)
            .then(|| unsafe { self.base.as_ptr().add(phys as usize) })
    }

    pub fn read(&self, phys: u64, buf: &mut [u8]) -> bool {
        if !self.contains(phys, buf.len() as u64) {
            return false;
        }
        // SAFETY: range checked above; guest memory may change under us only from this thread.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(phys as usize),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        true
    }

    pub fn write(&self, phys: u64, data: &[u8]) -> bool {
        if !self.contains(phys, data.len() as u64) {
            return false;
        }
        // SAFETY: range checked above.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.base.as_ptr().add(phys as usize),
                data.len(),
            )
        };
        true
    }

    pub fn read_u64(&self, phys: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(phys, &mut b).then(|| u64::from_le_bytes(b))
    }

    pub fn read_u32(&self, phys: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(phys, &mut b).then(|| u32::from_le_bytes(b))
    }

    pub fn write_u64(&self, phys: u64, v: u64) -> bool {
        self.write(phys, &v.to_le_bytes())
    }

    pub fn write_u32(&self, phys: u64, v: u32) -> bool {
        self.write(phys, &v.to_le_bytes())
    }

    /// A rust-vmm `GuestMemoryMmap` view of this RAM, for crates that load into guest memory
    /// through vm-memory (linux-loader). The view does not own the mapping: it must not outlive
    /// `self` (it borrows it in spirit; callers use it and drop it at once).
    pub fn guest_memory(&self) -> Result<vm_memory::GuestMemoryMmap, MemoryError> {
        let bad = |e: String| MemoryError::Os(io::Error::other(e));
        // SAFETY: `base..base+size` is our own live MAP_SHARED read/write mapping; the view is
        // not owned, so dropping it does not unmap anything.
        let region = unsafe {
            vm_memory::MmapRegion::build_raw(
                self.base.as_ptr(),
                self.size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
            )
        }
        .map_err(|e| bad(e.to_string()))?;
        let region = vm_memory::GuestRegionMmap::new(region, vm_memory::GuestAddress(0))
            .ok_or_else(|| bad("guest RAM region overflows".into()))?;
        vm_memory::GuestMemoryMmap::from_regions(vec![region]).map_err(|e| bad(e.to_string()))
    }

    /// The memfd, for mapping guest pages elsewhere.
    pub fn fd(&self) -> libc::c_int {
        self.fd
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; nothing refers to it after the VM is gone.
        unsafe {
            libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.size as usize);
            libc::close(self.fd);
        }
    }
}
