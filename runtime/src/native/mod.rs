//! The native engine: guest user code (CPL 3, 64-bit, paging on) runs at the host CPU's own
//! speed in a sandboxed child process per guest address space (design.md 3.2).
//!
//! - `layout`: the child's address space and the control area shared with the monitor.
//! - `stub`: the child's only code (signal handler, mapping-request executor, start-up).
//! - `seccomp`: the child's filter and the validation of the stub's address-space calls.
//! - `child`: forking and starting a child, the resume/wait hand-off.
//! - `shadow`: shadow paging state of one address space.
//! - `exits`: what an exit report means for the guest, and how it is delivered.
//!
//! The run loop (vm.rs) asks [`NativeUser::eligible`] before every batch; when the vCPU is at
//! CPL 3 it calls [`NativeUser::run`], which resumes the child of the current CR3 with the
//! guest's registers and FPU state and serves the child's exits until one needs the guest
//! kernel (a system call, an exception, an interrupt): it then leaves the vCPU in the state
//! the CPU would be in after delivering that event, and the translator runs the kernel.

pub mod child;
mod counter;
mod exits;
pub mod layout;
pub mod seccomp;
pub mod shadow;
pub mod stub;

use crate::memory::GuestRam;
use crate::vm::{Machine, VmExit};
use btvisor_translator::cpu::{cr, rflags, CpuState};
use btvisor_translator::exception::Exception;
use child::{Child, WaitEnd, WaitStep};
use shadow::ShadowSpace;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How many guest address spaces keep a child (design.md 3.2: an LRU pool).
const POOL_SIZE: usize = 8;

/// A change to guest translations that the shadow mappings must follow, recorded by the
/// callouts (MOV CR3, INVLPG, paging-mode changes) and applied before the next native entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TlbEvent {
    /// MOV CR3: the address space now running flushes its non-global translations.
    Cr3Load(u64),
    /// INVLPG in the address space `cr3`.
    Invlpg { cr3: u64, lin: u64 },
    /// Every translation of every address space (CR0.PG/CR4 paging bits, INVPCID all).
    FlushAll,
}

/// Counters for `--stats`.
#[derive(Default, Debug, Clone)]
pub struct NativeStats {
    pub entries: u64,
    pub exits: BTreeMap<&'static str, u64>,
    pub shadow_fills: u64,
    pub fault_around_pages: u64,
    pub guest_page_faults: u64,
    pub pages_unmapped: u64,
    pub full_flushes: u64,
    pub children_started: u64,
    pub children_recycled: u64,
    pub translated_fallbacks: u64,
    pub pt_writes: u64,
    pub unmapped_by_writes: u64,
    pub cr3_switches: u64,
    pub adaptive_spells: u64,
    pub time_native: Duration,
    pub ops_sent: u64,
    /// User-mode instructions retired by children that are gone (live ones are read when the
    /// stats are rendered).
    pub retired_insns: u64,
    /// Why instructions are not counted (no host PMU), if they are not.
    pub insns_uncounted: Option<String>,
}

impl NativeStats {
    fn exit(&mut self, why: &'static str) {
        *self.exits.entry(why).or_default() += 1;
    }
}

/// What the run loop does after [`NativeUser::run`].
#[derive(Debug)]
pub enum NativeOutcome {
    /// The guest kernel has an event to handle, or the run loop must look at interrupts and
    /// devices: carry on with the loop.
    Continue,
    /// Run the instruction at RIP through the translator (one block), which gives it the
    /// guest CPU's exact semantics (#GP with the right error code, I/O privilege, INT n
    /// through the guest's gates), then come back.
    Translate,
    /// Deliver this exception, as for translated code.
    Raise(Exception),
    Stop(VmExit),
}

/// What the run loop's housekeeping says while the child runs.
pub struct Housekeeping {
    /// Stop the guest (deadline, console quit): kick the child and return.
    pub stop: bool,
}

pub struct NativeUser {
    ram_fd: i32,
    spaces: Vec<ShadowSpace>,
    tick: u64,
    child_cpu: Option<usize>,
    pinned: bool,
    pub stats: NativeStats,
    /// Set when native execution cannot work on this host (the reason is logged once).
    disabled: Option<String>,
    tracker: shadow::Tracker,
    /// Run trap-heavy address spaces translated for a while (design.md 3: the adaptive engine).
    adaptive: bool,
}

/// The adaptive policy: an address space whose exits come on average sooner than this after
/// a resume (the world switch itself is about 2.3-3 us here) runs user code that costs less
/// natively than its switches do; it runs translated for `TRANSLATED_SPELL`, then natively
/// again. A resume-to-exit average is kept per space with weight 1/8 for the newest exit.
const SHORT_RUN: Duration = Duration::from_micros(4);
const TRANSLATED_SPELL: Duration = Duration::from_millis(20);

impl NativeUser {
    pub fn new(ram: &GuestRam, adaptive: bool) -> NativeUser {
        NativeUser {
            ram_fd: ram.fd(),
            spaces: Vec::new(),
            tick: 0,
            child_cpu: None,
            pinned: false,
            stats: NativeStats::default(),
            disabled: None,
            tracker: shadow::Tracker::default(),
            adaptive,
        }
    }

    /// Why native execution is off, if it is.
    pub fn disabled(&self) -> Option<&str> {
        self.disabled.as_deref()
    }

    /// Whether the vCPU's current state can run natively: CPL 3 in 64-bit mode with 4-level
    /// paging, no single-stepping, no CR0.TS (#NM must reach the kernel), no CR4.TSD (RDTSC
    /// must fault), and page tables that leave the stub window free.
    pub fn eligible(&self, cpu: &CpuState, ram: &GuestRam) -> bool {
        self.disabled.is_none()
            && cpu.cpl() == 3
            && cpu.cr0 & cr::CR0_PG != 0
            && cpu.long_mode_active()
            && cpu.code_bits() == 64
            && cpu.cr4 & (cr::CR4_LA57 | (1 << 2)) == 0
            && cpu.cr0 & cr::CR0_TS == 0
            && cpu.rflags & (rflags::TF | rflags::VM) == 0
            && !cpu.interrupt_shadow
            && !shadow::collides(cpu, ram)
            && !(self.adaptive && self.translating(cpu.cr3 & ADDR_MASK))
    }

    /// The translator raised #UD in user code: guest user code sees the host's CPUID (no
    /// CPUID faulting here), so it may use instructions the translator does not run (AVX,
    /// AVX-512). If the vCPU can run natively, end any translated spell of its address space
    /// and say so: the host CPU then runs the instruction (or raises the #UD itself).
    pub fn take_over_undefined(&mut self, cpu: &CpuState, ram: &GuestRam) -> bool {
        let cr3 = cpu.cr3 & ADDR_MASK;
        if let Some(s) = self.spaces.iter_mut().find(|s| s.cr3 == cr3) {
            s.translate_until = None;
        }
        self.eligible(cpu, ram)
    }

    /// Whether the adaptive policy has the address space `cr3` run translated just now.
    fn translating(&self, cr3: u64) -> bool {
        self.spaces
            .iter()
            .find(|s| s.cr3 == cr3)
            .and_then(|s| s.translate_until)
            .is_some_and(|t| Instant::now() < t)
    }

    /// Apply the translation changes the callouts recorded since the last entry.
    pub fn apply_tlb_events(&mut self, events: &mut Vec<TlbEvent>) {
        for ev in events.drain(..) {
            match ev {
                TlbEvent::FlushAll => {
                    for s in &mut self.spaces {
                        if !s.is_empty() {
                            s.flush_all();
                            self.stats.full_flushes += 1;
                        }
                    }
                }
                // Write tracking keeps every space's mappings current: a CR3 load flushes
                // nothing the guest could tell apart (shadow.rs).
                TlbEvent::Cr3Load(_) => self.stats.cr3_switches += 1,
                TlbEvent::Invlpg { cr3, lin } => {
                    if let Some(s) = self.spaces.iter_mut().find(|s| s.cr3 == cr3 & ADDR_MASK) {
                        if s.unmap(lin) {
                            self.stats.pages_unmapped += 1;
                            tracing::trace!(target: "btvisor::mmu", "shadow unmap {lin:#x} (invlpg)");
                        }
                    }
                }
            }
        }
    }

    /// Drop the mappings built through paging entries the guest wrote since the last entry.
    fn apply_pt_writes(&mut self, m: &Machine) {
        let watch = &m.mem.pt_watch;
        if watch.overflow.get() || self.tracker.over_limit(watch) {
            for s in &mut self.spaces {
                if !s.is_empty() {
                    s.flush_all();
                    self.stats.full_flushes += 1;
                }
            }
            self.tracker.clear(watch);
            return;
        }
        let writes = std::mem::take(&mut *watch.writes.borrow_mut());
        for addr in writes {
            self.stats.pt_writes += 1;
            let Some(list) = self.tracker.take(addr) else {
                continue;
            };
            for (cr3, va) in list {
                if let Some(s) = self.spaces.iter_mut().find(|s| s.cr3 == cr3) {
                    if s.unmap(va) {
                        self.stats.unmapped_by_writes += 1;
                        tracing::trace!(target: "btvisor::mmu", "shadow unmap {va:#x} in {cr3:#x} (guest wrote entry {addr:#x})");
                    }
                }
            }
        }
    }

    fn pin_monitor(&mut self) {
        if self.pinned {
            return;
        }
        self.pinned = true;
        let cpus = child::allowed_cpus();
        // Monitor and child on different cores (notes/native-exec.md: 2.3-3 us per world
        // switch against 5-7 us sharing one); with one CPU they share it.
        if cpus.len() >= 2 {
            child::pin_current_thread(cpus[0]);
            self.child_cpu = Some(cpus[1]);
        }
    }

    /// The space of `cr3`: found in the pool, or a recycled or new child.
    fn space_index(&mut self, cr3: u64) -> Result<usize, String> {
        self.tick += 1;
        // The child that ran last stops spinning: the next one is pinned to the same CPU.
        if let Some(prev) = self.spaces.iter().max_by_key(|s| s.last_used) {
            if prev.cr3 != cr3 {
                prev.child.park();
            }
        }
        if let Some(i) = self.spaces.iter().position(|s| s.cr3 == cr3) {
            self.spaces[i].last_used = self.tick;
            return Ok(i);
        }
        if self.spaces.len() >= POOL_SIZE {
            let (i, _) = self
                .spaces
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used)
                .expect("pool is not empty");
            let s = &mut self.spaces[i];
            tracing::trace!(target: "btvisor::traps", "native: child {} recycled from cr3 {:#x} to {cr3:#x}", s.child.pid, s.cr3);
            s.cr3 = cr3;
            s.flush_all();
            s.fp_stash.clear();
            s.last_used = self.tick;
            self.stats.children_recycled += 1;
            return Ok(i);
        }
        let mut child = Child::spawn(self.ram_fd, self.child_cpu).map_err(|e| e.to_string())?;
        if self.stats.insns_uncounted.is_none() {
            match counter::InsnCounter::open(child.pid) {
                Ok(c) => child.insns = Some(c),
                Err(e) => self.stats.insns_uncounted = Some(e),
            }
        }
        self.stats.children_started += 1;
        tracing::debug!(target: "btvisor::native", "native: child {} started for cr3 {cr3:#x}", child.pid);
        let mut s = ShadowSpace::new(cr3, child);
        s.last_used = self.tick;
        self.spaces.push(s);
        Ok(self.spaces.len() - 1)
    }

    /// Run guest user code natively until an event needs the guest kernel or the run loop.
    pub fn run(
        &mut self,
        cpu: &mut CpuState,
        m: &mut Machine,
        housekeeping: &mut dyn FnMut(&mut Machine) -> Housekeeping,
    ) -> NativeOutcome {
        self.pin_monitor();
        self.apply_tlb_events(&mut m.tlb_events);
        self.apply_pt_writes(m);
        let cr3 = cpu.cr3 & ADDR_MASK;
        let idx = match self.space_index(cr3) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(target: "btvisor::native", "native execution disabled: {e}");
                self.disabled = Some(e);
                return NativeOutcome::Translate;
            }
        };
        let space = &mut self.spaces[idx];
        exits::write_entry_state(cpu, space);
        self.stats.entries += 1;
        tracing::trace!(target: "btvisor::traps", "enter native rip={:#x} rsp={:#x} cr3={cr3:#x}", cpu.rip, cpu.gpr[4]);
        let mut last_fill: Option<(u64, u32)> = None;
        loop {
            let ops = space.take_ops();
            self.stats.ops_sent += ops.len() as u64;
            let started = Instant::now();
            space.child.resume(&ops);
            space.sent = ops;
            let if_set = cpu.rflags & rflags::IF != 0;
            let mut next_house = Instant::now();
            let mut stop = false;
            let end = space.child.wait(|| {
                let now = Instant::now();
                if now < next_house {
                    return WaitStep::Wait(Duration::from_millis(1));
                }
                next_house = now + Duration::from_micros(20);
                stop |= housekeeping(m).stop;
                m.devices.update(now);
                let irq = if_set && m.devices.interrupt_pending();
                let sleep = m
                    .devices
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(now))
                    .unwrap_or(Duration::from_millis(10))
                    .max(Duration::from_micros(50));
                if irq || stop {
                    WaitStep::Kick(sleep)
                } else {
                    WaitStep::Wait(sleep)
                }
            });
            let ran = started.elapsed();
            self.stats.time_native += ran;
            let avg = space.run_average.get_or_insert(ran);
            *avg = (*avg * 7 + ran) / 8;
            if self.adaptive && *avg < SHORT_RUN {
                space.translate_until = Some(Instant::now() + TRANSLATED_SPELL);
                space.run_average = None;
                self.stats.adaptive_spells += 1;
                tracing::trace!(target: "btvisor::traps", "native: cr3 {cr3:#x} exits every {ran:?}: translated for {TRANSLATED_SPELL:?}");
            }
            match end {
                WaitEnd::Exited => {}
                WaitEnd::Died(why) => {
                    // Only guest code can have broken its own sandbox this way (a forged
                    // signal frame through the stub): that process gets #GP at the last state
                    // the monitor knows, which the guest kernel turns into a fatal signal, and
                    // its address space a fresh child.
                    tracing::warn!(target: "btvisor::native", "native child {} of cr3 {cr3:#x} died ({why}); #GP", space.child.pid);
                    let gone = self.spaces.remove(idx);
                    self.stats.retired_insns += gone.child.user_instructions();
                    self.stats.exit("child died");
                    return NativeOutcome::Raise(Exception::gp(0));
                }
                WaitEnd::Unresponsive => {
                    // The guest process blocked the kick (a forged rt_sigreturn frame through
                    // the stub). Its sandbox is dropped and it gets #GP at the last state the
                    // monitor knows, which the guest kernel turns into a fatal signal.
                    tracing::warn!(target: "btvisor::native", "guest process at cr3 {cr3:#x} ignored preemption; #GP");
                    let gone = self.spaces.remove(idx);
                    self.stats.retired_insns += gone.child.user_instructions();
                    self.stats.exit("unresponsive");
                    return NativeOutcome::Raise(Exception::gp(0));
                }
            }
            let report = exits::read_report(space);
            let sent = std::mem::take(&mut space.sent);
            space.note_results(&sent);
            let handled = exits::handle(
                cpu,
                m,
                space,
                &report,
                &mut self.stats,
                &mut self.tracker,
                &mut last_fill,
            );
            if self.tracker.grew {
                // New watched pages: no writable soft-TLB entry may survive for them.
                self.tracker.grew = false;
                crate::mmu::Memory::flush_tlb(cpu);
            }
            match handled {
                exits::Step::Resume => {
                    if stop {
                        exits::load_state(cpu, space, &report);
                        return NativeOutcome::Continue;
                    }
                    continue;
                }
                exits::Step::Leave(o) => return o,
            }
        }
    }

    /// Human-readable `--stats` lines.
    pub fn render_stats(&self) -> String {
        use std::fmt::Write;
        let s = &self.stats;
        let mut out = String::new();
        let _ = writeln!(out, "native user execution:");
        if let Some(d) = &self.disabled {
            let _ = writeln!(out, "  disabled: {d}");
        }
        let _ = writeln!(out, "  entries                 {}", s.entries);
        let _ = writeln!(
            out,
            "  time in children        {:.3} s (resume to exit)",
            s.time_native.as_secs_f64()
        );
        match &s.insns_uncounted {
            None => {
                let live: u64 = self
                    .spaces
                    .iter()
                    .map(|sp| sp.child.user_instructions())
                    .sum();
                let _ = writeln!(
                    out,
                    "  user instructions       {} (host PMU, the stub's included)",
                    s.retired_insns + live
                );
            }
            Some(why) => {
                let _ = writeln!(
                    out,
                    "  user instructions       not counted: no host PMU ({why})"
                );
            }
        }
        let _ = writeln!(out, "  exits by cause:");
        for (k, n) in &s.exits {
            let _ = writeln!(out, "    {k:<24}{n}");
        }
        let _ = writeln!(out, "  shadow fills            {}", s.shadow_fills);
        let _ = writeln!(out, "  fault-around pages      {}", s.fault_around_pages);
        let _ = writeln!(out, "  guest #PF from native   {}", s.guest_page_faults);
        let _ = writeln!(out, "  pages unmapped (invlpg) {}", s.pages_unmapped);
        let _ = writeln!(
            out,
            "  page-table writes       {} ({} mappings dropped)",
            s.pt_writes, s.unmapped_by_writes
        );
        let _ = writeln!(out, "  address-space switches  {}", s.cr3_switches);
        let _ = writeln!(out, "  full shadow flushes     {}", s.full_flushes);
        let _ = writeln!(out, "  mapping requests sent   {}", s.ops_sent);
        let (mut allowed, mut denied) = (0, 0);
        for sp in &self.spaces {
            if let Some(v) = &sp.child.validator {
                allowed += v.stats.allowed.load(std::sync::atomic::Ordering::Relaxed);
                denied += v.stats.denied.load(std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _ = writeln!(
            out,
            "  validated (live pool)   {allowed} allowed, {denied} denied"
        );
        let _ = writeln!(
            out,
            "  children                {} started, {} recycled",
            s.children_started, s.children_recycled
        );
        let _ = writeln!(out, "  translated fallbacks    {}", s.translated_fallbacks);
        let _ = writeln!(
            out,
            "  translated spells       {} (adaptive policy{})",
            s.adaptive_spells,
            if self.adaptive { "" } else { ": off" }
        );
        out
    }
}

const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
