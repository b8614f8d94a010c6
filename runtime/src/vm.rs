//! The machine (memory, devices, time) and the vCPU run loop: translated code runs until it
//! needs the runtime; the loop delivers exceptions and interrupts, sleeps on HLT and stops the
//! VM with a register dump when the guest can no longer run.

use crate::callouts;
use crate::interrupts::{self, EventKind};
use crate::loader::{linux, multiboot};
use crate::memory::{GuestRam, MemoryError};
use crate::mmu::Memory;
use crate::native::{Housekeeping, NativeOutcome, NativeUser, TlbEvent};
use crate::stats::RuntimeStats;
use btvisor_devices::{PcDevices, PhysMmio};
use btvisor_translator::classify::CalloutKind;
use btvisor_translator::cpu::{cr, rflags, CpuState, Seg};
use btvisor_translator::env::{CalloutResult, Env, Fetched, StopReason};
use btvisor_translator::exception::Exception;
use btvisor_translator::{RunExit, Translator};
use iced_x86::Instruction;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything a vCPU's callouts and memory slow paths reach.
pub struct Machine {
    pub mem: Memory,
    pub devices: PcDevices,
    pub stats: RuntimeStats,
    /// AMD NB_CFG and DE_CFG (callouts/msr.rs): plain storage.
    pub amd_nb_cfg: u64,
    pub amd_de_cfg: u64,
    /// Translation changes for the native engine's shadow mappings (recorded only while it
    /// is on: `native_tlb`).
    pub tlb_events: Vec<TlbEvent>,
    pub native_tlb: bool,
}

impl Machine {
    /// Guest TSC = host TSC + `Msrs::tsc_offset` (design.md 3.3), shared with the lifted RDTSC.
    pub fn guest_tsc(&self, cpu: &CpuState) -> u64 {
        btvisor_translator::helpers::timestamp::guest_tsc(cpu)
    }
    pub fn set_guest_tsc(&mut self, cpu: &mut CpuState, v: u64) {
        btvisor_translator::helpers::timestamp::set_guest_tsc(cpu, v)
    }

    /// Record a translation change for the native engine's shadow mappings.
    pub fn note_tlb(&mut self, ev: TlbEvent) {
        if !self.native_tlb {
            return;
        }
        if self.tlb_events.len() >= 256 {
            self.tlb_events.clear();
            self.tlb_events.push(TlbEvent::FlushAll);
        }
        if self.tlb_events.last() != Some(&TlbEvent::FlushAll) || ev != TlbEvent::FlushAll {
            self.tlb_events.push(ev);
        }
    }
}

impl Env for Machine {
    fn read_slow(
        &mut self,
        cpu: &mut CpuState,
        lin: u64,
        size: u8,
        user: bool,
    ) -> Result<u64, Exception> {
        self.mem.read(cpu, lin, size, user)
    }
    fn write_slow(
        &mut self,
        cpu: &mut CpuState,
        lin: u64,
        size: u8,
        value: u64,
        user: bool,
    ) -> Result<(), Exception> {
        self.mem.write(cpu, lin, size, value, user)
    }
    fn fetch(
        &mut self,
        cpu: &mut CpuState,
        lin: u64,
        buf: &mut [u8],
    ) -> Result<Fetched, Exception> {
        self.mem.fetch(cpu, lin, buf)
    }
    fn callout(
        &mut self,
        cpu: &mut CpuState,
        insn: &Instruction,
        kind: CalloutKind,
    ) -> CalloutResult {
        callouts::dispatch(self, cpu, insn, kind)
    }
}

/// What the host console has for the guest, polled by the run loop.
pub enum HostInput {
    Nothing,
    /// Bytes for the guest's serial port.
    Bytes(Vec<u8>),
    /// The user asked to quit (Ctrl-A x).
    Quit,
}

/// The console's input closure (`Vm::input`).
pub type InputPoll = Box<dyn FnMut() -> HostInput>;

/// Poll console input once: bytes go to the serial port; true when the user asked to quit.
pub(crate) fn poll_input(input: &mut Option<InputPoll>, devices: &mut PcDevices) -> bool {
    match input.as_mut().map(|poll| poll()) {
        Some(HostInput::Bytes(b)) => devices.enqueue_serial_input(&b),
        Some(HostInput::Quit) => return true,
        Some(HostInput::Nothing) | None => {}
    }
    false
}

/// Why the VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest wrote to the debug-exit port: exit with this status.
    ExitCode(i32),
    /// A triple fault (the CPU would shut down or reset).
    TripleFault(String),
    /// The guest did something btvisor cannot run yet.
    Unsupported(String),
    /// HLT with interrupts disabled: nothing can ever wake the vCPU.
    HaltedForever(String),
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// The guest reset the machine; btvisor stops rather than reboots (like QEMU -no-reboot).
    Reset,
    /// The guest kernel panicked (pvpanic), with a register dump.
    GuestPanic(String),
    /// `Vm::deadline` passed.
    Timeout,
    /// The user quit from the console.
    Quit,
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Load(#[from] multiboot::LoadError),
    #[error(transparent)]
    LoadLinux(#[from] linux::LinuxLoadError),
    #[error(transparent)]
    Acpi(#[from] crate::acpi::AcpiError),
    #[error(transparent)]
    Kvm(#[from] crate::kvm::KvmError),
}

pub struct VmConfig {
    pub mem_bytes: u64,
    pub cmdline: String,
    /// The engine that runs the vCPU (engine.rs).
    pub accel: crate::engine::Accel,
    /// Under binary translation: run guest user code natively (`native`) or translate it
    /// too (`translate`, the differential reference).
    pub user: UserEngine,
}

/// Which engine runs guest user code under binary translation (design.md 3: one policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserEngine {
    /// Natively, but an address space whose native runs between exits are shorter than a
    /// world switch runs translated for a while (`native::NativeUser::adaptive`).
    #[default]
    Adaptive,
    /// Natively whenever possible, in a sandboxed child per address space (runtime/src/native).
    Native,
    /// Through the translator, like kernel code.
    Translate,
}

impl std::str::FromStr for UserEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "adaptive" => Ok(UserEngine::Adaptive),
            "native" => Ok(UserEngine::Native),
            "translate" => Ok(UserEngine::Translate),
            _ => Err(format!(
                "unknown engine '{s}' (adaptive, native or translate)"
            )),
        }
    }
}

pub struct Vm {
    pub cpu: Box<CpuState>,
    pub translator: Translator,
    pub machine: Machine,
    pub started: Instant,
    /// Stop with `VmExit::Timeout` at this instant (tests and fuzzing; `None` runs forever).
    pub deadline: Option<Instant>,
    /// Polled between block batches and while halted: console input for the serial port.
    pub input: Option<InputPoll>,
    /// The engine that runs the vCPU (`VmConfig::accel`); taken out of its place while it runs.
    engine: Option<Box<dyn crate::engine::Engine>>,
    /// Native execution of guest user code (`UserEngine::Native` under binary translation).
    pub native: Option<NativeUser>,
}

/// Blocks run between device updates and interrupt checks.
const BLOCK_BUDGET: u64 = 2000;

impl Vm {
    pub fn new(
        config: &VmConfig,
        serial_out: Box<dyn std::io::Write + Send>,
    ) -> Result<Vm, VmError> {
        let ram = GuestRam::new(config.mem_bytes)?;
        let translator = Translator::new();
        let code_pages = translator.cache.code_pages.clone();
        let devices = PcDevices::new(serial_out);
        let mmio: Arc<Mutex<dyn PhysMmio>> = devices.apics().clone();
        let machine = Machine {
            mem: Memory {
                ram,
                code_pages,
                mmio: Some(mmio),
                pt_watch: Default::default(),
            },
            devices,
            stats: RuntimeStats::default(),
            amd_nb_cfg: 0,
            amd_de_cfg: 1 << 1,
            tlb_events: Vec::new(),
            native_tlb: false,
        };
        let mut cpu = Box::new(CpuState::new());
        let native = (config.accel == crate::engine::Accel::Bt
            && config.user != UserEngine::Translate)
            .then(|| NativeUser::new(&machine.mem.ram, config.user == UserEngine::Adaptive));
        // The guest's TSC counts from 0 at power-on, unless guest user code runs natively:
        // its RDTSC reads the host's counter, so the guest's must be the host's too.
        if native.is_none() {
            btvisor_translator::helpers::timestamp::set_guest_tsc(&mut cpu, 0);
        }
        let mut machine = machine;
        machine.native_tlb = native.is_some();
        let engine = crate::engine::create(config.accel, &machine.mem.ram)?;
        Ok(Vm {
            cpu,
            translator,
            machine,
            started: Instant::now(),
            deadline: None,
            input: None,
            engine: Some(engine),
            native,
        })
    }

    /// Load a multiboot ELF32 kernel.
    pub fn load_multiboot(
        &mut self,
        name: &str,
        image: &[u8],
        cmdline: &str,
    ) -> Result<(), VmError> {
        multiboot::load(name, image, cmdline, &self.machine.mem.ram, &mut self.cpu)?;
        Ok(())
    }

    /// Load a Linux bzImage or ELF vmlinux with an optional initrd (64-bit boot protocol),
    /// with the machine's ACPI tables (the zero page points at the RSDP).
    pub fn load_linux(&mut self, boot: &linux::LinuxBoot) -> Result<(), VmError> {
        let ram = &self.machine.mem.ram;
        let rsdp = crate::acpi::write_tables(ram, &crate::acpi::AcpiConfig::default())?;
        let boot = linux::LinuxBoot {
            acpi_rsdp: Some(rsdp),
            ..*boot
        };
        linux::load(ram, &mut self.cpu, &boot)?;
        Ok(())
    }

    /// Run the guest on the engine `VmConfig::accel` chose until the VM stops.
    pub fn run(&mut self) -> VmExit {
        let Some(mut engine) = self.engine.take() else {
            return VmExit::Unsupported("the VM's engine is already running\n".into());
        };
        let exit = engine.run(self);
        self.engine = Some(engine);
        exit
    }

    /// The engine running this VM.
    pub fn accel(&self) -> crate::engine::Accel {
        self.engine
            .as_ref()
            .map_or(crate::engine::Accel::Bt, |e| e.accel())
    }

    /// Engine-specific statistics for `--stats` (KVM exits; the translator's are in `translator`).
    pub fn engine_stats(&self) -> Option<String> {
        self.engine.as_ref().and_then(|e| e.stats())
    }

    /// The translator engine's run loop (`engine::Translated`).
    pub(crate) fn run_translated(&mut self) -> VmExit {
        let mut halted = false;
        loop {
            let now = Instant::now();
            if self.deadline.is_some_and(|d| now >= d) {
                return VmExit::Timeout;
            }
            self.cpu.exit_request = 0;
            if poll_input(&mut self.input, &mut self.machine.devices) {
                return VmExit::Quit;
            }
            self.machine.devices.update(now);
            if !self.cpu.interrupt_shadow
                && self.cpu.rflags & rflags::IF != 0
                && self.machine.devices.interrupt_pending()
            {
                if let Some(vec) = self.machine.devices.acknowledge_interrupt() {
                    halted = false;
                    self.machine.stats.external_interrupts += 1;
                    tracing::trace!(target: "btvisor::traps", "irq vector {vec:#x} at rip={:#x}", self.cpu.rip);
                    if let Err(t) = interrupts::deliver(
                        &mut self.cpu,
                        &self.machine.mem,
                        vec,
                        None,
                        EventKind::External,
                        None,
                    ) {
                        return VmExit::TripleFault(self.dump(&format!(
                            "triple fault delivering IRQ vector {vec:#x}: {:?}",
                            t.last
                        )));
                    }
                }
            }
            if halted {
                if self.cpu.rflags & rflags::IF == 0 {
                    return VmExit::HaltedForever(self.dump("HLT with interrupts disabled"));
                }
                let wake = self
                    .machine
                    .devices
                    .next_deadline()
                    .unwrap_or(now + Duration::from_millis(10));
                let wait = wake
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(10));
                std::thread::sleep(wait);
                continue;
            }
            if self.cpu.cr0 & cr::CR0_PE == 0 {
                return VmExit::Unsupported(
                    self.dump("the guest entered real mode, which btvisor does not run yet"),
                );
            }
            let mut budget = BLOCK_BUDGET;
            if let Some(native) = self.native.as_mut() {
                if native.eligible(&self.cpu, &self.machine.mem.ram) {
                    let (input, deadline) = (&mut self.input, self.deadline);
                    let mut quit = false;
                    let mut housekeeping = |m: &mut Machine| {
                        quit |= poll_input(input, &mut m.devices);
                        Housekeeping {
                            stop: quit || deadline.is_some_and(|d| Instant::now() >= d),
                        }
                    };
                    let outcome = native.run(&mut self.cpu, &mut self.machine, &mut housekeeping);
                    if quit {
                        return VmExit::Quit;
                    }
                    match outcome {
                        NativeOutcome::Continue => continue,
                        NativeOutcome::Translate => budget = 1,
                        NativeOutcome::Raise(e) => {
                            if let Some(exit) = self.raise(e) {
                                return exit;
                            }
                            continue;
                        }
                        NativeOutcome::Stop(exit) => return exit,
                    }
                }
            }
            let exit = self
                .translator
                .run(&mut self.cpu, &mut self.machine, budget);
            match exit {
                RunExit::Yield => {}
                RunExit::Halt => {
                    // HLT retired: it was the instruction after any STI.
                    self.cpu.interrupt_shadow = false;
                    halted = true;
                    self.machine.stats.halts += 1;
                }
                RunExit::Raise(e) => {
                    if e.vector == btvisor_translator::exception::vector::UD
                        && self.cpu.cpl() == 3
                        && self.native.as_mut().is_some_and(|n| {
                            n.take_over_undefined(&self.cpu, &self.machine.mem.ram)
                        })
                    {
                        continue;
                    }
                    if let Some(exit) = self.raise(e) {
                        return exit;
                    }
                }
                RunExit::Stop(StopReason::ExitCode(c)) => return VmExit::ExitCode(c),
                RunExit::Stop(StopReason::PowerOff) => return VmExit::PowerOff,
                RunExit::Stop(StopReason::Reset) => return VmExit::Reset,
                RunExit::Stop(StopReason::GuestPanic) => {
                    return VmExit::GuestPanic(self.dump("the guest kernel panicked"))
                }
                RunExit::Stop(StopReason::Unsupported(what)) => {
                    let msg = format!("{what}: {}", self.describe_insn_at_rip());
                    return VmExit::Unsupported(self.dump(&msg));
                }
            }
        }
    }

    /// Deliver an exception raised by translated or native code; a triple fault stops the VM.
    fn raise(&mut self, e: Exception) -> Option<VmExit> {
        self.cpu.interrupt_shadow = false;
        self.machine.stats.note_interrupt(e.vector, false);
        tracing::trace!(
            target: "btvisor::traps",
            "exception {} err={:?} rip={:#x} cpl={} addr={:?}",
            e.name(),
            e.error_code,
            self.cpu.rip,
            self.cpu.cpl(),
            e.fault_addr
        );
        if let Err(t) = interrupts::deliver(
            &mut self.cpu,
            &self.machine.mem,
            e.vector,
            e.error_code,
            EventKind::Exception,
            e.fault_addr,
        ) {
            return Some(VmExit::TripleFault(self.dump(&format!(
                "triple fault: {} while delivering {}",
                t.last.name(),
                e.name()
            ))));
        }
        None
    }

    fn describe_insn_at_rip(&mut self) -> String {
        let mut buf = [0u8; 15];
        let lin = self.cpu.seg[Seg::Cs as usize]
            .base
            .wrapping_add(self.cpu.rip);
        match self.machine.mem.fetch(&mut self.cpu, lin, &mut buf) {
            Ok(f) => {
                let mut d = iced_x86::Decoder::with_ip(
                    self.cpu.code_bits() as u32,
                    &buf[..f.len],
                    self.cpu.rip,
                    0,
                );
                let insn = d.decode();
                let mut s = String::new();
                iced_x86::Formatter::format(&mut iced_x86::GasFormatter::new(), &insn, &mut s);
                let bytes: Vec<String> = buf[..insn.len()]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("`{s}` ({}) at rip {:#x}", bytes.join(" "), self.cpu.rip)
            }
            Err(_) => format!("unreadable code at rip {:#x}", self.cpu.rip),
        }
    }

    /// A register dump and the last translated blocks, for errors that stop the VM.
    pub fn dump(&self, why: &str) -> String {
        let c = &self.cpu;
        let mut s = format!("{why}\n");
        let names = [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ];
        for (i, n) in names.iter().enumerate() {
            let _ = write!(
                s,
                "{n:>4}={:016x}{}",
                c.gpr[i],
                if i % 4 == 3 { "\n" } else { " " }
            );
        }
        let _ = writeln!(
            s,
            " rip={:016x} rflags={:08x} cpl={} mode={}-bit",
            c.rip,
            c.rflags(),
            c.cpl(),
            c.code_bits()
        );
        for seg in Seg::ALL {
            let g = c.seg[seg as usize];
            let _ = writeln!(
                s,
                "  {}={:04x} base={:016x} limit={:08x} attrs={:04x}",
                seg.name(),
                g.selector,
                g.base,
                g.limit,
                g.attrs
            );
        }
        let _ = writeln!(
            s,
            " cr0={:08x} cr2={:016x} cr3={:016x} cr4={:08x} efer={:x}\n gdtr={:x}/{:x} idtr={:x}/{:x} tr={:04x} ldtr={:04x}",
            c.cr0, c.cr2, c.cr3, c.cr4, c.efer, c.gdtr.base, c.gdtr.limit, c.idtr.base, c.idtr.limit, c.tr.selector, c.ldtr.selector
        );
        let _ = write!(s, " last blocks:");
        for rip in self.translator.recent_blocks() {
            let _ = write!(s, " {rip:#x}");
        }
        s.push('\n');
        s
    }
}
