//! Guest memory access through segmentation's result (linear addresses) and paging: the
//! soft-TLB slow paths used by translated code, and the accesses callouts and exception
//! delivery make (descriptor tables, TSS, stacks).

pub mod walk;

use crate::memory::GuestRam;
use btvisor_devices::PhysMmio;
use btvisor_translator::cache::SharedCodePages;
use btvisor_translator::cpu::{cr, CpuState};
use btvisor_translator::exception::Exception;
use btvisor_translator::Fetched;
use std::sync::{Arc, Mutex};
pub use walk::{Access, AccessKind, Translation};

/// The memory side of a vCPU: RAM, the set of pages holding translations, and the MMIO
/// devices decoding physical addresses outside RAM (the local APIC and I/O APIC pages).
pub struct Memory {
    pub ram: GuestRam,
    pub code_pages: SharedCodePages,
    pub mmio: Option<Arc<Mutex<dyn PhysMmio>>>,
    /// Guest page-table pages the native engine's shadow mappings were built from: writes to
    /// them are recorded so the mappings follow (write tracking, design.md 3.2).
    pub pt_watch: PtWatch,
}

/// Write tracking of guest page-table pages. Watched pages never get a writable soft-TLB
/// entry, so every guest write to them takes the slow path, which records its address.
#[derive(Default)]
pub struct PtWatch {
    pub pages: std::cell::RefCell<rustc_hash::FxHashSet<u64>>,
    pub writes: std::cell::RefCell<Vec<u64>>,
    /// More writes than `writes` holds happened: every shadow mapping must go.
    pub overflow: std::cell::Cell<bool>,
}

impl PtWatch {
    fn watched(&self, page: u64) -> bool {
        let p = self.pages.borrow();
        !p.is_empty() && p.contains(&page)
    }
}

/// In 64-bit paging, linear addresses must be canonical (bits 63..47 equal).
pub fn is_canonical(lin: u64) -> bool {
    ((lin as i64) << 16 >> 16) as u64 == lin
}

impl Memory {
    fn check_canonical(&self, cpu: &CpuState, lin: u64) -> Result<(), Exception> {
        if cpu.efer & cr::EFER_LMA != 0 && !is_canonical(lin) {
            return Err(Exception::gp(0));
        }
        Ok(())
    }

    /// Translate and fill the soft TLB for the page of `lin`.
    fn translate_fill(
        &self,
        cpu: &mut CpuState,
        lin: u64,
        kind: AccessKind,
        user: bool,
    ) -> Result<u64, Exception> {
        let t = walk::translate(cpu, &self.ram, lin, Access { kind, user })?;
        let page = t.phys & !0xfff;
        if let Some(host) = self.ram.host_ptr(page) {
            let code = self.code_pages.borrow().contains(page);
            let watched = self.pt_watch.watched(page);
            cpu.tlb
                .fill(lin, user, host, page, t.write_ok && !code && !watched);
        }
        Ok(t.phys)
    }

    fn mmio(&self) -> Option<std::sync::MutexGuard<'_, dyn PhysMmio + 'static>> {
        self.mmio
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn phys_read(&self, phys: u64, size: u8) -> u64 {
        let mut b = [0u8; 8];
        if self.ram.read(phys, &mut b[..size as usize])
            || self
                .mmio()
                .is_some_and(|mut m| m.read(phys, &mut b[..size as usize]))
        {
            u64::from_le_bytes(b)
        } else {
            // Nothing decodes the address: the bus floats high.
            tracing::debug!(target: "btvisor::mmu", "read of unbacked physical address {phys:#x}");
            u64::MAX >> (64 - size as u32 * 8)
        }
    }

    fn phys_write(&self, cpu: &mut CpuState, phys: u64, size: u8, v: u64) {
        let bytes = v.to_le_bytes();
        if !self.ram.contains(phys, size as u64)
            && self
                .mmio()
                .is_some_and(|mut m| m.write(phys, &bytes[..size as usize]))
        {
            return;
        }
        if !self.ram.write(phys, &bytes[..size as usize]) {
            tracing::debug!(target: "btvisor::mmu", "write to unbacked physical address {phys:#x} ignored");
            return;
        }
        if self.pt_watch.watched(phys & !0xfff) {
            let mut w = self.pt_watch.writes.borrow_mut();
            if w.len() < 4096 {
                w.push(phys);
            } else {
                self.pt_watch.overflow.set(true);
            }
        }
        let mut cp = self.code_pages.borrow_mut();
        for page in [phys & !0xfff, (phys + size as u64 - 1) & !0xfff] {
            if cp.contains(page) {
                cp.note_write(page);
                cpu.code_modified = true;
            }
        }
    }

    pub fn read(
        &self,
        cpu: &mut CpuState,
        lin: u64,
        size: u8,
        user: bool,
    ) -> Result<u64, Exception> {
        self.check_canonical(cpu, lin)?;
        let last = lin.wrapping_add(size as u64 - 1);
        if lin & !0xfff == last & !0xfff {
            let phys = self.translate_fill(cpu, lin, AccessKind::Read, user)?;
            return Ok(self.phys_read(phys, size));
        }
        // Crossing a page: translate both pages before reading anything.
        let p1 = self.translate_fill(cpu, lin, AccessKind::Read, user)?;
        let p2 = self.translate_fill(cpu, last & !0xfff, AccessKind::Read, user)?;
        let first = (0x1000 - (lin & 0xfff)) as u8;
        let mut v = 0u64;
        for i in 0..size {
            let p = if i < first {
                p1 + i as u64
            } else {
                p2 + (i - first) as u64
            };
            v |= self.phys_read(p, 1) << (8 * i);
        }
        Ok(v)
    }

    pub fn write(
        &self,
        cpu: &mut CpuState,
        lin: u64,
        size: u8,
        v: u64,
        user: bool,
    ) -> Result<(), Exception> {
        self.check_canonical(cpu, lin)?;
        let last = lin.wrapping_add(size as u64 - 1);
        if lin & !0xfff == last & !0xfff {
            let phys = self.translate_fill(cpu, lin, AccessKind::Write, user)?;
            self.phys_write(cpu, phys, size, v);
            return Ok(());
        }
        let p1 = self.translate_fill(cpu, lin, AccessKind::Write, user)?;
        let p2 = self.translate_fill(cpu, last & !0xfff, AccessKind::Write, user)?;
        let first = (0x1000 - (lin & 0xfff)) as u8;
        for i in 0..size {
            let p = if i < first {
                p1 + i as u64
            } else {
                p2 + (i - first) as u64
            };
            self.phys_write(cpu, p, 1, (v >> (8 * i)) & 0xff);
        }
        Ok(())
    }

    pub fn fetch(
        &self,
        cpu: &mut CpuState,
        lin: u64,
        buf: &mut [u8],
    ) -> Result<Fetched, Exception> {
        self.check_canonical(cpu, lin)?;
        let user = cpu.cpl() == 3;
        let t = walk::translate(
            cpu,
            &self.ram,
            lin,
            Access {
                kind: AccessKind::Fetch,
                user,
            },
        )?;
        let in_page = ((0x1000 - (lin & 0xfff)) as usize).min(buf.len());
        if !self.ram.read(t.phys, &mut buf[..in_page]) {
            // Executing from unbacked physical memory: what a real bus returns (all ones)
            // would decode as garbage; stop with a clear fault instead.
            return Err(Exception::gp(0));
        }
        let mut fetched = Fetched {
            phys: t.phys,
            len: in_page,
            next_page: None,
            next_fault: None,
        };
        if in_page < buf.len() {
            let next = (lin | 0xfff).wrapping_add(1);
            let next_ok = self.check_canonical(cpu, next).and_then(|_| {
                walk::translate(
                    cpu,
                    &self.ram,
                    next,
                    Access {
                        kind: AccessKind::Fetch,
                        user,
                    },
                )
            });
            match next_ok {
                Ok(t2) => {
                    let rest = buf.len() - in_page;
                    if self.ram.read(t2.phys, &mut buf[in_page..]) {
                        fetched.len += rest;
                        fetched.next_page = Some(t2.phys & !0xfff);
                    }
                }
                Err(e) => fetched.next_fault = Some(e),
            }
        }
        Ok(fetched)
    }

    /// Flush the soft TLB (CR3 load, paging-mode change, INVLPG of everything).
    pub fn flush_tlb(cpu: &mut CpuState) {
        cpu.tlb.flush();
        cpu.tlb_generation += 1;
    }
}
