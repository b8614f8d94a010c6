//! Shadow paging for one guest address space (design.md 3.2): which guest pages the child has
//! mapped, from which guest-physical pages and with what protection, and the mapping requests
//! that carry changes to the child with the next resume.
//!
//! Mappings are filled lazily on the child's faults from the guest page tables: a page is
//! mapped readable (executable unless NX), and writable only once the guest's PTE is dirty, so
//! the first write of a clean page comes back to set the Dirty bit as the CPU would. They are
//! dropped on INVLPG, when the guest writes a paging entry they were built from (write tracking
//! with a reverse map, `NativeUser::track`), and when the space is recycled. Write tracking
//! keeps every mapping as current as the guest's page tables, so a space survives the guest
//! kernel's context switches (CR3 loads) with its mappings: a TLB that is always coherent is
//! one the architecture allows (it may refill any entry at any time).

use super::child::{Child, CHILD_RAM_FD};
use super::layout::{self, Op, MAX_OPS};
use super::seccomp::{NR_MMAP, NR_MUNMAP};
use crate::memory::GuestRam;
use btvisor_translator::cpu::{cr, CpuState};
use rustc_hash::FxHashMap;

pub const PROT_R: u8 = 1;
pub const PROT_W: u8 = 2;
pub const PROT_X: u8 = 4;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub phys: u64,
    pub prot: u8,
}

/// What the guest page tables grant a CPL-3 access to one page, read without side effects.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UserLeaf {
    /// Guest-physical address of the 4 KiB page.
    pub phys: u64,
    pub writable: bool,
    pub executable: bool,
    pub accessed: bool,
    pub dirty: bool,
    /// Guest-physical addresses of the paging entries the walk used (PML4E first): writes to
    /// any of them change this translation.
    pub entries: [u64; 4],
    pub depth: usize,
}

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDR: u64 = ((1u64 << crate::mmu::walk::MAXPHYADDR) - 1) & !0xfff;

/// Walk 4-level page tables for a user access to `lin` without setting any bit. `None` when
/// the page is not present or not a user page at some level, or an entry has reserved bits
/// (the real walker then raises the guest's #PF).
pub fn probe_user(cpu: &CpuState, ram: &GuestRam, lin: u64) -> Option<UserLeaf> {
    let nxe = cpu.efer & cr::EFER_NXE != 0;
    let rsvd = !ADDR & !NX & ((1u64 << 52) - 1) & !0xfff;
    let mut table = cpu.cr3 & ADDR;
    let mut shift = 39;
    let (mut rw, mut nx) = (true, false);
    let mut entries = [0u64; 4];
    let mut depth = 0;
    loop {
        let at = table + ((lin >> shift) & 0x1ff) * 8;
        entries[depth] = at;
        depth += 1;
        let e = ram.read_u64(at)?;
        if e & P == 0 || e & US == 0 || e & rsvd != 0 || (!nxe && e & NX != 0) {
            return None;
        }
        rw &= e & RW != 0;
        nx |= nxe && e & NX != 0;
        let large = e & PS != 0 && (shift == 21 || shift == 30);
        if shift == 39 && e & PS != 0 {
            return None;
        }
        if shift == 12 || large {
            let size_mask = (1u64 << shift) - 1;
            if large && e & (size_mask & !0x1fff) != 0 {
                return None;
            }
            let phys = (e & ADDR & !size_mask) | (lin & size_mask & !0xfff);
            return Some(UserLeaf {
                phys,
                writable: rw,
                executable: !nx,
                accessed: e & A != 0,
                dirty: e & D != 0,
                entries,
                depth,
            });
        }
        table = e & ADDR;
        shift -= 9;
    }
}

/// The protection a page gets in the child: write only when the guest PTE is already dirty.
pub fn prot_for(leaf: &UserLeaf) -> u8 {
    let mut p = PROT_R;
    if leaf.writable && leaf.dirty {
        p |= PROT_W;
    }
    if leaf.executable {
        p |= PROT_X;
    }
    p
}

fn host_prot(p: u8) -> u64 {
    let mut h = 0;
    if p & PROT_R != 0 {
        h |= libc::PROT_READ;
    }
    if p & PROT_W != 0 {
        h |= libc::PROT_WRITE;
    }
    if p & PROT_X != 0 {
        h |= libc::PROT_EXEC;
    }
    h as u64
}

/// One guest address space's child and its shadow state.
pub struct ShadowSpace {
    pub cr3: u64,
    pub child: Child,
    pages: FxHashMap<u64, Mapping>,
    pending: Vec<Op>,
    /// The child's FPU images by FS base (one per guest thread, in practice): the AVX and
    /// AVX-512 state the guest kernel does not know about (it saves x87/SSE with FXSAVE) must
    /// survive the kernel's context switches between processes.
    pub fp_stash: FxHashMap<u64, Vec<u8>>,
    pub last_used: u64,
    /// Mapping requests sent with the last resume (their results come back with the report).
    pub sent: Vec<Op>,
    /// Running average of resume-to-exit time (the adaptive policy).
    pub run_average: Option<std::time::Duration>,
    /// The adaptive policy runs this space translated until then.
    pub translate_until: Option<std::time::Instant>,
}

impl ShadowSpace {
    pub fn new(cr3: u64, child: Child) -> ShadowSpace {
        ShadowSpace {
            cr3,
            child,
            pages: FxHashMap::default(),
            pending: Vec::new(),
            fp_stash: FxHashMap::default(),
            last_used: 0,
            sent: Vec::new(),
            run_average: None,
            translate_until: None,
        }
    }

    pub fn mapped(&self, va: u64) -> Option<Mapping> {
        self.pages.get(&(va & !0xfff)).copied()
    }

    /// Queue a mapping of `pages` guest pages from `va` to guest-physical `phys` (contiguous
    /// in both): one request however many pages (each mmap costs about the same:
    /// notes/native-exec.md item 5).
    pub fn map(&mut self, va: u64, phys: u64, pages: u64, prot: u8) {
        let va = va & !0xfff;
        if self.pending.len() + 1 > MAX_OPS - 2 {
            // Too much at once: start over from an empty space (faults refill it).
            self.flush_all();
        }
        for i in 0..pages {
            self.pages.insert(
                va + i * 4096,
                Mapping {
                    phys: phys + i * 4096,
                    prot,
                },
            );
        }
        self.pending.push(Op {
            nr: NR_MMAP,
            args: [
                va,
                pages * 4096,
                host_prot(prot),
                (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
                CHILD_RAM_FD as u64,
                phys,
            ],
            result: 0,
        });
    }

    /// Drop the mapping of one page (INVLPG).
    pub fn unmap(&mut self, va: u64) -> bool {
        let va = va & !0xfff;
        if self.pages.remove(&va).is_none() {
            return false;
        }
        if self.pending.len() + 1 > MAX_OPS - 2 {
            self.flush_all();
            return true;
        }
        self.pending.push(Op {
            nr: NR_MUNMAP,
            args: [va, 4096, 0, 0, 0, 0],
            result: 0,
        });
        true
    }

    /// Drop every guest mapping: two munmaps around the stub window.
    pub fn flush_all(&mut self) {
        self.pages.clear();
        self.pending.clear();
        let above = layout::STUB_BASE + layout::STUB_SPAN;
        self.pending.push(Op {
            nr: NR_MUNMAP,
            args: [0, layout::STUB_BASE, 0, 0, 0, 0],
            result: 0,
        });
        self.pending.push(Op {
            nr: NR_MUNMAP,
            args: [above, layout::HOST_MAP_TOP - above, 0, 0, 0, 0],
            result: 0,
        });
    }

    /// Whether a full flush is already queued (nothing mapped, nothing to drop).
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The queued requests, for the next resume.
    pub fn take_ops(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.pending)
    }

    /// Forget pages whose mapping request failed (their next access faults again).
    pub fn note_results(&mut self, ops: &[Op]) -> usize {
        let mut failed = 0;
        for op in ops {
            if (op.result as i64) < 0 {
                failed += 1;
                tracing::warn!(
                    target: "btvisor::native",
                    "mapping request {} {:x?} failed: {}",
                    op.nr,
                    op.args,
                    op.result as i64
                );
                if op.nr == NR_MMAP {
                    for i in 0..op.args[1] / 4096 {
                        self.pages.remove(&(op.args[0] + i * 4096));
                    }
                }
            }
        }
        failed
    }
}

/// Whether the guest's page tables use the PML4 slot of the stub window: such an address space
/// runs translated (the child could not hold both).
pub fn collides(cpu: &CpuState, ram: &GuestRam) -> bool {
    let e = ram
        .read_u64((cpu.cr3 & ADDR) + layout::STUB_PML4_INDEX * 8)
        .unwrap_or(0);
    e & P != 0
}

/// The reverse map of write tracking: for each guest paging entry (by guest-physical address)
/// the shadow mappings built through it, in every address space. A guest write to an entry
/// drops those mappings; the pages holding entries are watched (`mmu::PtWatch`).
#[derive(Default)]
pub struct Tracker {
    rmap: FxHashMap<u64, Vec<(u64, u64)>>,
    /// A page joined the watched set: the soft TLB may still hold writable entries for it.
    pub grew: bool,
}

/// Beyond this many entries or watched pages, tracking starts over (every space is flushed).
const TRACK_LIMIT: usize = 1 << 18;
const WATCH_LIMIT: usize = 1 << 14;

impl Tracker {
    /// Record that `va` in address space `cr3` was mapped through `leaf`'s entries.
    pub fn track(&mut self, watch: &crate::mmu::PtWatch, cr3: u64, va: u64, leaf: &UserLeaf) {
        let mut pages = watch.pages.borrow_mut();
        for &e in &leaf.entries[..leaf.depth] {
            self.rmap.entry(e).or_default().push((cr3, va));
            if pages.insert(e & !0xfff) {
                self.grew = true;
            }
        }
    }

    /// The mappings built through the entry at guest-physical `addr` (forgotten here).
    pub fn take(&mut self, addr: u64) -> Option<Vec<(u64, u64)>> {
        self.rmap.remove(&(addr & !7))
    }

    /// Whether the maps grew too large and should start over.
    pub fn over_limit(&self, watch: &crate::mmu::PtWatch) -> bool {
        self.rmap.len() > TRACK_LIMIT || watch.pages.borrow().len() > WATCH_LIMIT
    }

    pub fn clear(&mut self, watch: &crate::mmu::PtWatch) {
        self.rmap.clear();
        watch.pages.borrow_mut().clear();
        watch.writes.borrow_mut().clear();
        watch.overflow.set(false);
    }
}
