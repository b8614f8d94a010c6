//! The soft TLB: guest linear pages to host pointers, looked up inline by translated code.
//!
//! An entry answers for one linear page and one privilege class (supervisor or user, bit 0 of
//! the tag). A read hit needs `read_tag`, a write hit `write_tag`; the MMU fills `write_tag` only
//! when the guest PTE is already dirty and the page holds no translated code, so such writes
//! take the slow path (Dirty-bit updates, self-modifying-code detection).

pub const TLB_ENTRIES: usize = 256;
const INVALID: u64 = u64::MAX;

#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct TlbEntry {
    pub read_tag: u64,
    pub write_tag: u64,
    /// host address = linear address + addend (wrapping).
    pub addend: u64,
    /// The guest-physical page behind the entry (for targeted invalidation).
    pub phys: u64,
}

impl TlbEntry {
    const EMPTY: TlbEntry = TlbEntry {
        read_tag: INVALID,
        write_tag: INVALID,
        addend: 0,
        phys: INVALID,
    };
}

#[repr(C)]
pub struct SoftTlb {
    pub entries: [TlbEntry; TLB_ENTRIES],
}

impl Default for SoftTlb {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftTlb {
    pub fn new() -> Self {
        SoftTlb {
            entries: [TlbEntry::EMPTY; TLB_ENTRIES],
        }
    }

    #[inline]
    pub fn index(lin: u64) -> usize {
        ((lin >> 12) as usize) & (TLB_ENTRIES - 1)
    }

    /// The tag a lookup compares with: page number plus the privilege class.
    #[inline]
    pub fn tag(lin: u64, user: bool) -> u64 {
        (lin & !0xfff) | user as u64
    }

    pub fn flush(&mut self) {
        self.entries = [TlbEntry::EMPTY; TLB_ENTRIES];
    }

    /// INVLPG: drop both privilege classes of one page.
    pub fn flush_page(&mut self, lin: u64) {
        let e = &mut self.entries[Self::index(lin)];
        if e.read_tag & !1 == lin & !0xfff || e.write_tag & !1 == lin & !0xfff {
            *e = TlbEntry::EMPTY;
        }
    }

    /// A page became a code page: later writes to it must take the slow path.
    pub fn drop_writes_to_phys(&mut self, phys_page: u64) {
        for e in self.entries.iter_mut() {
            if e.phys == phys_page {
                e.write_tag = INVALID;
            }
        }
    }

    pub fn fill(
        &mut self,
        lin: u64,
        user: bool,
        host_page: *mut u8,
        phys_page: u64,
        writable: bool,
    ) {
        let tag = Self::tag(lin, user);
        let e = &mut self.entries[Self::index(lin)];
        e.read_tag = tag;
        e.write_tag = if writable { tag } else { INVALID };
        e.addend = (host_page as u64).wrapping_sub(lin & !0xfff);
        e.phys = phys_page;
    }

    /// Host address for a read of `size` bytes that does not cross the page, if cached.
    #[inline(always)]
    pub fn lookup_read(&self, lin: u64, user: bool) -> Option<u64> {
        let e = &self.entries[Self::index(lin)];
        (e.read_tag == Self::tag(lin, user)).then(|| lin.wrapping_add(e.addend))
    }

    #[inline(always)]
    pub fn lookup_write(&self, lin: u64, user: bool) -> Option<u64> {
        let e = &self.entries[Self::index(lin)];
        (e.write_tag == Self::tag(lin, user)).then(|| lin.wrapping_add(e.addend))
    }
}
