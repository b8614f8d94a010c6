//! Crossing between the guest's architectural state (`CpuState`) and the child's signal frame,
//! and what each exit report means for the guest (design.md 3.2; notes/native-exec.md items
//! 6 and 7 for how the host reports each trapping instruction).
//!
//! Everything in a report is guest-controlled data (guest code can jump into the stub's
//! handler with a forged frame): a report can only claim what the guest could have done by
//! itself, so the monitor takes registers from it but never privilege, mode or addresses it did
//! not check against the guest's own page tables.

use super::layout::{greg, Ctrl, FP_MAX};
use super::shadow::{self, ShadowSpace};
use super::{NativeOutcome, NativeStats};
use crate::mmu::walk::{self, Access, AccessKind};
use crate::vm::{Machine, VmExit};
use btvisor_translator::cpu::{rflags, CpuState, FxArea, Seg};
use btvisor_translator::exception::{vector, Exception};
use btvisor_translator::native_step::avx_offered;

/// The host's user code and stack selectors (64-bit Linux).
const HOST_CS64: u64 = 0x33;
const HOST_SS: u64 = 0x2b;
/// RFLAGS bits guest user code changes natively and the host's rt_sigreturn restores
/// (the kernel's FIX_EFLAGS, minus RF and TF which the monitor owns, plus ID).
const USER_FLAGS: u64 = rflags::CF
    | rflags::PF
    | rflags::AF
    | rflags::ZF
    | rflags::SF
    | rflags::OF
    | rflags::DF
    | rflags::AC
    | rflags::ID;
const XSTATE_BV: usize = 512;
/// The AVX component (upper YMM halves) in the standard XSAVE layout, as the host's signal
/// frame has it (`avx_offered` checks the host's CPUID says so).
const AVX: usize = btvisor_translator::native_step::xsave::AVX_OFFSET;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// The host's vsyscall page: calls into it come back as SIGSYS with the call address here.
const VSYSCALL_PAGE: u64 = 0xffff_ffff_ff60_0000;

/// An exit report copied out of the control area.
pub struct Report {
    pub signo: i32,
    pub si_code: i32,
    pub si_addr: u64,
    pub si_syscall: u32,
    pub si_arch: u32,
    pub gregs: [u64; 23],
    pub fs_base: u64,
    pub gs_base: u64,
}

pub fn read_report(space: &ShadowSpace) -> Report {
    // SAFETY: the child published (state EXITED) and waits; the control area is ours to read.
    let c: &Ctrl = unsafe { &*space.child.ctrl_ptr() };
    Report {
        signo: c.signo as i32,
        si_code: c.si_code,
        si_addr: c.si_addr,
        si_syscall: c.si_syscall,
        si_arch: c.si_arch,
        gregs: c.gregs,
        fs_base: c.fs_base,
        gs_base: c.gs_base,
    }
}

/// gregs index of each `CpuState::gpr` register (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi,
/// r8..r15).
const GREG_OF_GPR: [usize; 16] = [
    greg::RAX,
    greg::RCX,
    greg::RDX,
    greg::RBX,
    greg::RSP,
    greg::RBP,
    greg::RSI,
    greg::RDI,
    greg::R8,
    greg::R8 + 1,
    greg::R8 + 2,
    greg::R8 + 3,
    greg::R8 + 4,
    greg::R8 + 5,
    greg::R8 + 6,
    greg::R8 + 7,
];

/// Write the guest's FPU image into the control area: the stashed image of this thread (the
/// AVX-512 state that guest user code may use because it sees the host's CPUID, which the guest
/// kernel does not manage) or the child's template, with x87/SSE from `cpu.fx` and the AVX
/// upper halves from `cpu.ymmh`, which the guest kernel does manage (FXSAVE/XSAVE). No copy
/// beyond the one into the area: this is on every world switch.
fn write_fp_image(cpu: &CpuState, space: &ShadowSpace, c: &mut Ctrl) {
    let fs = cpu.seg[Seg::Fs as usize].base;
    let (src, stashed) = match space.fp_stash.get(&fs) {
        Some(i) => (i.as_slice(), true),
        None => (space.child.fp_template.as_slice(), false),
    };
    let n = src.len().min(c.fp_size as usize).min(FP_MAX);
    if n < XSTATE_BV + 8 {
        return; // no XSAVE image (the child checked at start-up that it has one)
    }
    let img = &mut c.fpstate[..n];
    img.copy_from_slice(&src[..n]);
    // Bytes 464..511 of the legacy area carry the kernel's fx_sw_bytes: keep the frame's.
    img[..464].copy_from_slice(&cpu.fx.0[..464]);
    let p = &cpu.x87_ptr;
    img[FxArea::FOP..FxArea::FOP + 2].copy_from_slice(&p.fop.to_le_bytes());
    img[FxArea::FIP..FxArea::FIP + 8].copy_from_slice(&p.fip.to_le_bytes());
    img[FxArea::FDP..FxArea::FDP + 8].copy_from_slice(&p.fdp.to_le_bytes());
    // x87, SSE and AVX always come from the guest state; the template's other components
    // start at their initial state (XSTATE_BV bit clear).
    let mut ours = 3;
    if let Some(a) = img.get_mut(AVX..AVX + 256) {
        if avx_offered() {
            a.copy_from_slice(&cpu.ymmh.0);
            ours |= 4;
        }
    }
    let bv = u64::from_le_bytes(img[XSTATE_BV..XSTATE_BV + 8].try_into().expect("8 bytes"));
    let bv = if stashed { bv | ours } else { ours };
    img[XSTATE_BV..XSTATE_BV + 8].copy_from_slice(&bv.to_le_bytes());
}

/// Write the guest's user state into the control area for the next resume.
pub fn write_entry_state(cpu: &CpuState, space: &mut ShadowSpace) {
    // SAFETY: the child waits for RESUME; the control area is ours to write.
    let c: &mut Ctrl = unsafe { &mut *space.child.ctrl_ptr() };
    for (i, &g) in GREG_OF_GPR.iter().enumerate() {
        c.gregs[g] = cpu.gpr[i];
    }
    c.gregs[greg::RIP] = cpu.rip;
    c.gregs[greg::EFLAGS] = (cpu.rflags() & USER_FLAGS) | rflags::IF | rflags::FIXED1;
    c.gregs[greg::CSGSFS] = HOST_CS64 | HOST_SS << 48;
    c.fs_base = cpu.seg[Seg::Fs as usize].base;
    c.gs_base = cpu.seg[Seg::Gs as usize].base;
    write_fp_image(cpu, space, c);
}

/// Take the guest's user state from a report (the FPU image straight from the control area,
/// where the child left it).
pub fn load_state(cpu: &mut CpuState, space: &mut ShadowSpace, r: &Report) {
    for (i, &g) in GREG_OF_GPR.iter().enumerate() {
        cpu.gpr[i] = r.gregs[g];
    }
    cpu.rip = r.gregs[greg::RIP];
    let old = cpu.rflags();
    cpu.set_rflags((old & !USER_FLAGS) | (r.gregs[greg::EFLAGS] & USER_FLAGS));
    cpu.seg[Seg::Fs as usize].base = r.fs_base;
    cpu.seg[Seg::Gs as usize].base = r.gs_base;
    // SAFETY: the child waits (state EXITED); the control area is ours to read.
    let c: &Ctrl = unsafe { &*space.child.ctrl_ptr() };
    let fp = &c.fpstate[..(c.fp_size as usize).min(FP_MAX)];
    if fp.len() >= XSTATE_BV + 8 {
        let u16_at = |o: usize| u16::from_le_bytes([fp[o], fp[o + 1]]);
        let u64_at = |o: usize| u64::from_le_bytes(fp[o..o + 8].try_into().expect("8 bytes"));
        // The host's XSAVE leaves a component in its initial state unwritten (XSTATE_BV bit
        // clear, the init optimisation): take the initial state then, not stale frame bytes.
        let bv = u64_at(XSTATE_BV);
        cpu.fx.0[..464].copy_from_slice(&fp[..464]);
        if bv & 1 != 0 {
            cpu.x87_ptr.fop = u16_at(FxArea::FOP) & 0x7ff;
            cpu.x87_ptr.fip = u64_at(FxArea::FIP);
            cpu.x87_ptr.fdp = u64_at(FxArea::FDP);
        } else {
            cpu.fx.init_x87();
            cpu.x87_ptr = Default::default();
        }
        if bv & 2 == 0 {
            cpu.fx.0[FxArea::XMM0..FxArea::XMM0 + 256].fill(0);
        }
        if avx_offered() {
            match fp.get(AVX..AVX + 256) {
                Some(a) if bv & 4 != 0 => cpu.ymmh.0.copy_from_slice(a),
                _ => cpu.ymmh.0.fill(0),
            }
        }
        cpu.fx.set32(
            FxArea::MXCSR_MASK,
            btvisor_translator::native_step::guest_mxcsr_mask(),
        );
        if space.fp_stash.len() > 256 {
            space.fp_stash.clear();
        }
        let stash = space.fp_stash.entry(r.fs_base).or_default();
        stash.clear();
        stash.extend_from_slice(fp);
    }
}

/// What to do after an exit.
pub enum Step {
    /// Resume the child (the registers in the control area are still the guest's).
    Resume,
    Leave(NativeOutcome),
}

/// Decide what an exit means and act on it.
pub fn handle(
    cpu: &mut CpuState,
    m: &mut Machine,
    space: &mut ShadowSpace,
    r: &Report,
    stats: &mut NativeStats,
    tracker: &mut shadow::Tracker,
    last_fill: &mut Option<(u64, u32)>,
) -> Step {
    let trapno = r.gregs[greg::TRAPNO];
    let rip = r.gregs[greg::RIP];
    let cs = r.gregs[greg::CSGSFS] & 0xffff;
    // A page fault on a guest user address: fill the shadow mapping or give the guest its #PF.
    if r.signo == libc::SIGSEGV && trapno == 14 && cs == HOST_CS64 {
        if let Some(step) = page_fault(cpu, m, space, r, stats, tracker, last_fill) {
            return step;
        }
    }
    load_state(cpu, space, r);
    if cs != HOST_CS64 {
        // Guest code far-jumped to another code selector, which the host CPU resolved through
        // the host's GDT. That is the guest's meaning too when the guest's descriptor is the
        // same flat DPL-3 segment (Linux guests: 0x23 is 32-bit user code in both).
        if !follow_cs(cpu, m, cs as u16) {
            // The guest's descriptor means something else: the far transfer cannot be undone,
            // so the guest process (not the VM) takes #GP(selector) at its target.
            stats.exit("cs-change");
            return Step::Leave(NativeOutcome::Raise(Exception::gp(cs as u32 & 0xfffc)));
        }
        if host_landing_pad(rip) {
            // SYSCALL in compatibility mode (reachable only by a far jump inside native code:
            // 32-bit processes run translated). The host's compat entry replaced the return
            // address with its vDSO's int80 landing pad (notes/native-exec.md, pitfall 1),
            // then either seccomp stopped the call (SIGSYS there) or reading the i386 sixth
            // argument from the guest stack failed and the host returned there (#PF at the
            // address cut to 32 bits). It never reached the host, but it cannot be delivered
            // as a SYSCALL. The guest process takes #UD, what Intel CPUs raise for SYSCALL in
            // compatibility mode, at RIP 0: no host address reaches the guest.
            cpu.gpr[1] = 0;
            cpu.rip = 0;
            stats.exit("compat syscall");
            return Step::Leave(NativeOutcome::Raise(Exception::ud()));
        }
        stats.exit("cs-change");
    }
    let leave = |why: &'static str, stats: &mut NativeStats, o: NativeOutcome| {
        stats.exit(why);
        tracing::trace!(
            target: "btvisor::traps",
            "leave native: {why} rip={rip:#x} (signal {} code {} trap {trapno} nr {})",
            r.signo,
            r.si_code,
            r.si_syscall
        );
        Step::Leave(o)
    };
    match r.signo {
        libc::SIGSYS => {
            if r.si_arch == AUDIT_ARCH_X86_64 && r.si_addr >= VSYSCALL_PAGE {
                // A call into the host's vsyscall page, which the host emulated up to the
                // seccomp check (the return address is already popped): undo the pop and let
                // the translator fetch from the guest's own page at that address.
                cpu.rip = r.si_addr;
                cpu.gpr[4] = cpu.gpr[4].wrapping_sub(8);
                stats.translated_fallbacks += 1;
                return leave("vsyscall", stats, NativeOutcome::Translate);
            }
            if r.si_arch == AUDIT_ARCH_X86_64 {
                // The guest's SYSCALL (RIP after it, RCX/R11 already as SYSCALL leaves them).
                return match crate::callouts::transfer::syscall_entry(cpu, rip) {
                    Ok(()) => leave("syscall", stats, NativeOutcome::Continue),
                    Err(e) => {
                        cpu.rip = rip.wrapping_sub(2);
                        leave("syscall", stats, NativeOutcome::Raise(e))
                    }
                };
            }
            if r.si_arch == AUDIT_ARCH_I386 && rewind(cpu, m, rip, &[0xcd, 0x80]) {
                // INT $0x80 (64-bit or compatibility mode): rewind it and let the translator
                // run it through the guest's IDT (gate DPL check included).
                stats.translated_fallbacks += 1;
                return leave("int 0x80", stats, NativeOutcome::Translate);
            }
            // A system call whose instruction is not where the report says (guest code that
            // jumped into the middle of stub bytes, for instance): it never ran; the guest
            // process takes #UD at the reported address.
            cpu.rip = rip;
            leave("bad-syscall", stats, NativeOutcome::Raise(Exception::ud()))
        }
        libc::SIGTRAP if trapno == 3 => {
            // INT3 (or INT 3): RIP is after it. Rewind and let the translator deliver it
            // (the gate DPL check gives #GP for a DPL-0 gate, as on hardware).
            if rewind(cpu, m, rip, &[0xcc]) || rewind(cpu, m, rip, &[0xcd, 0x03]) {
                stats.translated_fallbacks += 1;
                return leave("#BP", stats, NativeOutcome::Translate);
            }
            leave(
                "#BP",
                stats,
                NativeOutcome::Raise(Exception::new(vector::BP)),
            )
        }
        libc::SIGTRAP if trapno == 1 => {
            cpu.dr[6] |= 0x4000;
            leave(
                "#DB",
                stats,
                NativeOutcome::Raise(Exception::new(vector::DB)),
            )
        }
        libc::SIGILL => leave("#UD", stats, NativeOutcome::Raise(Exception::ud())),
        libc::SIGFPE => {
            let e = match trapno {
                0 => Exception::de(),
                16 => Exception::new(vector::MF),
                19 => Exception::new(vector::XM),
                _ => {
                    stats.translated_fallbacks += 1;
                    return leave("sigfpe", stats, NativeOutcome::Translate);
                }
            };
            leave("#DE/#MF/#XM", stats, NativeOutcome::Raise(e))
        }
        libc::SIGBUS if trapno == 17 => leave(
            "#AC",
            stats,
            NativeOutcome::Raise(Exception::with_code(vector::AC, 0)),
        ),
        s if s == super::child::KICK_SIGNAL => leave("preempt", stats, NativeOutcome::Continue),
        libc::SIGSEGV | libc::SIGBUS | libc::SIGTRAP => {
            // #GP (privileged instructions, INT n through the host's DPL-0 gates, I/O,
            // non-canonical addresses), #SS, faults on kernel-half or stub addresses: the
            // translator runs the instruction with the guest's own semantics.
            stats.translated_fallbacks += 1;
            leave(
                match trapno {
                    13 => "#GP",
                    14 => "#PF (translated)",
                    _ => "other fault",
                },
                stats,
                NativeOutcome::Translate,
            )
        }
        s => leave(
            "unexpected signal",
            stats,
            NativeOutcome::Stop(VmExit::Unsupported(format!(
                "the native-execution child reported signal {s} at rip {rip:#x}\n"
            ))),
        ),
    }
}

/// Whether `rip` is where the host's compat fast-syscall path sends a child (the int80 landing
/// pad of the vDSO the child inherited from the monitor at fork: within its first pages),
/// either as reported (SIGSYS) or cut to 32 bits (the fault after returning there in
/// compatibility mode).
fn host_landing_pad(rip: u64) -> bool {
    static VDSO: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: getauxval reads the process's auxiliary vector; no preconditions.
    let v = *VDSO.get_or_init(|| unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) });
    const SPAN: u64 = 0x2000;
    v != 0
        && (rip.wrapping_sub(v) < SPAN
            || (rip >> 32 == 0 && rip.wrapping_sub(v & 0xffff_ffff) < SPAN))
}

/// Take the guest's own descriptor for code selector `sel` that guest code loaded natively,
/// if it means what the host's descriptor meant (flat, DPL 3, same operand size).
fn follow_cs(cpu: &mut CpuState, m: &mut Machine, sel: u16) -> bool {
    let Ok(d) = crate::segments::read_descriptor(cpu, &m.mem, sel) else {
        return false;
    };
    let seg = d.segment(sel);
    let same = match sel {
        0x23 => !d.long() && seg.big() && seg.limit == 0xffff_ffff,
        0x33 => d.long(),
        _ => false,
    };
    if !(same && d.present() && d.is_code() && d.dpl() == 3 && seg.base == 0) {
        return false;
    }
    crate::segments::install_cs(cpu, &d, sel, 3);
    true
}

/// If the bytes before `rip` are `insn`, move RIP back over it.
fn rewind(cpu: &mut CpuState, m: &mut Machine, rip: u64, insn: &[u8]) -> bool {
    let at = rip.wrapping_sub(insn.len() as u64);
    let mut buf = [0u8; 2];
    let buf = &mut buf[..insn.len()];
    for (i, b) in buf.iter_mut().enumerate() {
        match m.mem.read(cpu, at + i as u64, 1, true) {
            Ok(v) => *b = v as u8,
            Err(_) => return false,
        }
    }
    if buf == insn {
        cpu.rip = at;
        true
    } else {
        false
    }
}

/// A #PF in the child at a guest user address: map the page if the guest's page tables allow
/// the access (setting Accessed/Dirty as the CPU would), else deliver the guest's #PF. `None`
/// hands the fault to the translator (addresses outside the user range, MMIO, repeats).
fn page_fault(
    cpu: &mut CpuState,
    m: &mut Machine,
    space: &mut ShadowSpace,
    r: &Report,
    stats: &mut NativeStats,
    tracker: &mut shadow::Tracker,
    last_fill: &mut Option<(u64, u32)>,
) -> Option<Step> {
    let addr = r.si_addr;
    if addr >= super::layout::USER_TOP || super::layout::in_stub_window(addr, 1) {
        return None;
    }
    let err = r.gregs[greg::ERR];
    let kind = if err & 0x10 != 0 {
        AccessKind::Fetch
    } else if err & 2 != 0 {
        AccessKind::Write
    } else {
        AccessKind::Read
    };
    let page = addr & !0xfff;
    // A fault on a page just mapped with the same access means the mapping did not help.
    match last_fill {
        Some((p, n)) if *p == page => {
            *n += 1;
            if *n > 3 {
                *last_fill = None;
                return None;
            }
        }
        _ => *last_fill = Some((page, 1)),
    }
    let access = Access { kind, user: true };
    // The guest's walk: its #PF (error code with P/W/U/I, CR2) or the A/D updates.
    if let Err(e) = walk::translate(cpu, &m.mem.ram, addr, access) {
        load_state(cpu, space, r);
        stats.guest_page_faults += 1;
        stats.exit("#PF (guest)");
        tracing::trace!(target: "btvisor::traps", "leave native: guest #PF addr={addr:#x} err={:?} rip={:#x}", e.error_code, cpu.rip);
        return Some(Step::Leave(NativeOutcome::Raise(e)));
    }
    let leaf = shadow::probe_user(cpu, &m.mem.ram, addr)?;
    if !m.mem.ram.contains(leaf.phys, 4096) {
        return None; // MMIO or beyond RAM: the translator does device accesses.
    }
    let mut prot = shadow::prot_for(&leaf);
    if prot & shadow::PROT_W != 0 {
        if m.mem.pt_watch.pages.borrow().contains(&leaf.phys) {
            // A guest page table writable from user mode: writes must be seen, so they run
            // translated (slow path) and the page stays read-only in the child.
            if kind == AccessKind::Write {
                return None;
            }
            prot &= !shadow::PROT_W;
        }
        // Native writes would not invalidate translations made from this page.
        let mut cp = m.mem.code_pages.borrow_mut();
        if cp.contains(leaf.phys) {
            cp.note_write(leaf.phys);
        }
    }
    let (first, count) = fault_around(cpu, m, space, page, &leaf, prot);
    space.map(first, leaf.phys - (page - first), count, prot);
    for i in 0..count {
        let va = first + i * 4096;
        if va == page {
            tracker.track(&m.mem.pt_watch, space.cr3, va, &leaf);
        } else if let Some(l) = shadow::probe_user(cpu, &m.mem.ram, va) {
            tracker.track(&m.mem.pt_watch, space.cr3, va, &l);
        }
    }
    stats.shadow_fills += 1;
    stats.fault_around_pages += count - 1;
    tracing::trace!(target: "btvisor::mmu", "shadow fill {page:#x} -> {:#x} prot={prot} ({kind:?}), {count} pages from {first:#x}", leaf.phys);
    Some(Step::Resume)
}

/// Fault-around: the run of pages around `page` in its aligned 16-page cluster that can join
/// its mapping request: already accessed by the guest (their Accessed bit is set, so mapping
/// them changes nothing the guest can see), with the same protection, and physically
/// contiguous with it, so one mmap maps them all (notes/native-exec.md: fewer exits, and
/// each call costs about the same whatever its length). Returns the first page and the count.
fn fault_around(
    cpu: &CpuState,
    m: &Machine,
    space: &ShadowSpace,
    page: u64,
    leaf: &shadow::UserLeaf,
    prot: u8,
) -> (u64, u64) {
    const CLUSTER: u64 = 16;
    let lo = page & !(CLUSTER * 4096 - 1);
    let hi = lo + CLUSTER * 4096;
    let joins = |va: u64| -> bool {
        if space.mapped(va).is_some() || super::layout::in_stub_window(va, 4096) {
            return false;
        }
        let Some(l) = shadow::probe_user(cpu, &m.mem.ram, va) else {
            return false;
        };
        l.accessed
            && shadow::prot_for(&l) == prot
            && l.phys.wrapping_sub(leaf.phys) == va.wrapping_sub(page)
            && m.mem.ram.contains(l.phys, 4096)
            && (prot & shadow::PROT_W == 0
                || !(m.mem.code_pages.borrow().contains(l.phys)
                    || m.mem.pt_watch.pages.borrow().contains(&l.phys)))
    };
    let mut first = page;
    while first > lo && joins(first - 4096) {
        first -= 4096;
    }
    let mut end = page + 4096;
    while end < hi && joins(end) {
        end += 4096;
    }
    (first, (end - first) / 4096)
}
