//! The KVM engine (design.md 3.4): a KVM vCPU over the machine's guest RAM, devices and
//! loaders, so binary translation and hardware virtualisation run identical guests.
//!
//! KVM runs only the CPU. No in-kernel irqchip is created: the PIC, PIT, local APIC and I/O
//! APIC are btvisor's userspace models, exactly as under the translator. So every exit
//! (KVM API, `struct kvm_run`) comes here:
//!
//! - port I/O goes to the port bus (`PcDevices::io_in/io_out`), string I/O element by element;
//! - MMIO (anything outside the RAM memory slot) goes to the local APIC / I/O APIC pages;
//!   unclaimed addresses read as all-ones and ignore writes, as on the translator's bus;
//! - HLT sleeps until the next device deadline, as the translator's loop does;
//! - interrupts from the devices are injected with KVM_INTERRUPT when KVM says the vCPU can
//!   take one (`ready_for_interrupt_injection`, IF=1, no STI/MOV SS shadow), otherwise an
//!   interrupt window is requested;
//! - KVM_EXIT_SHUTDOWN is a triple fault; entry failures, internal errors and every other exit
//!   stop the VM with KVM's own exit reason and KVM's register dump.
//!
//! A periodic signal ([`kick`]) gets the vCPU out of KVM_RUN so device timers and the run
//! deadline are serviced while the guest computes.
//!
//! Not wired (the test kernels and the cloud kernel's boot path do not need them): x2APIC
//! MSRs (CPUID hides x2APIC), relocating the local APIC through IA32_APIC_BASE (KVM keeps that
//! MSR; the userspace APIC stays at 0xFEE00000), and the machine's AMD NB_CFG/DE_CFG MSRs
//! (KVM answers MSRs itself).

mod cpuid;
mod kick;
pub mod state;

use crate::engine::{Accel, Engine};
use crate::memory::GuestRam;
use crate::vm::{Vm, VmExit};
use btvisor_devices::{IoOutcome, PhysMmio};
use kvm_bindings::{kvm_run, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::fmt::Write as _;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// /dev/kvm is missing or not accessible: the message users see for `--accel kvm`.
    #[error("--accel kvm: {path}: {err}")]
    Open {
        path: String,
        err: kvm_ioctls::Error,
    },
    #[error("--accel kvm: /dev/kvm speaks KVM API version {0}, btvisor needs 12")]
    ApiVersion(i32),
    #[error("--accel kvm: {what} failed: {err}")]
    Setup {
        what: &'static str,
        err: kvm_ioctls::Error,
    },
    #[error("--accel kvm: CPUID table: {0}")]
    Cpuid(String),
    #[error("--accel kvm: cannot map guest RAM for KVM: {0}")]
    Map(io::Error),
}

fn setup(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |err| KvmError::Setup { what, err }
}

/// Overrides the KVM device path (default /dev/kvm): tests use it to check the message for a
/// host without KVM on a host with it.
pub const KVM_DEVICE_ENV: &str = "BTVISOR_KVM_DEVICE";

/// Where VMX keeps the real-mode TSS it needs on hosts without unrestricted guests: three
/// pages in the MMIO hole, clear of the I/O APIC and local APIC (as QEMU and Firecracker).
const TSS_ADDRESS: usize = 0xfffb_d000;

/// How often a running vCPU is pulled out of KVM_RUN to service timers and the deadline.
const KICK_PERIOD: Duration = Duration::from_millis(1);

/// KVM_INTERRUPT = _IOW(KVMIO, 0x86, struct kvm_interrupt): kvm-ioctls has no wrapper (it is
/// only meaningful without an in-kernel irqchip, which is btvisor's case).
const KVM_INTERRUPT: libc::c_ulong = (1 << 30) // _IOC_WRITE
    | ((std::mem::size_of::<kvm_bindings::kvm_interrupt>() as libc::c_ulong) << 16)
    | ((kvm_bindings::KVMIO as libc::c_ulong) << 8)
    | 0x86;

/// A second mapping of guest RAM's memfd, owned by the engine, so the memory slot stays
/// backed for as long as the VM file descriptor lives whatever order `Vm`'s fields drop in.
struct RamMapping {
    ptr: *mut libc::c_void,
    size: usize,
}

impl RamMapping {
    fn new(ram: &GuestRam) -> Result<RamMapping, KvmError> {
        let size = ram.size() as usize;
        // SAFETY: maps the whole memfd (its size is `size`) shared, read/write; the result is
        // checked and unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                ram.fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(KvmError::Map(io::Error::last_os_error()));
        }
        Ok(RamMapping { ptr, size })
    }
}

impl Drop for RamMapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the VM that used it is closed before (field order).
        unsafe {
            libc::munmap(self.ptr, self.size);
        }
    }
}

/// KVM's exit reasons by number (include/uapi/linux/kvm.h).
fn exit_name(reason: u32) -> &'static str {
    const NAMES: [&str; 40] = [
        "KVM_EXIT_UNKNOWN",
        "KVM_EXIT_EXCEPTION",
        "KVM_EXIT_IO",
        "KVM_EXIT_HYPERCALL",
        "KVM_EXIT_DEBUG",
        "KVM_EXIT_HLT",
        "KVM_EXIT_MMIO",
        "KVM_EXIT_IRQ_WINDOW_OPEN",
        "KVM_EXIT_SHUTDOWN",
        "KVM_EXIT_FAIL_ENTRY",
        "KVM_EXIT_INTR",
        "KVM_EXIT_SET_TPR",
        "KVM_EXIT_TPR_ACCESS",
        "KVM_EXIT_S390_SIEIC",
        "KVM_EXIT_S390_RESET",
        "KVM_EXIT_DCR",
        "KVM_EXIT_NMI",
        "KVM_EXIT_INTERNAL_ERROR",
        "KVM_EXIT_OSI",
        "KVM_EXIT_PAPR_HCALL",
        "KVM_EXIT_S390_UCONTROL",
        "KVM_EXIT_WATCHDOG",
        "KVM_EXIT_S390_TSCH",
        "KVM_EXIT_EPR",
        "KVM_EXIT_SYSTEM_EVENT",
        "KVM_EXIT_S390_STSI",
        "KVM_EXIT_IOAPIC_EOI",
        "KVM_EXIT_HYPERV",
        "KVM_EXIT_ARM_NISV",
        "KVM_EXIT_X86_RDMSR",
        "KVM_EXIT_X86_WRMSR",
        "KVM_EXIT_DIRTY_RING_FULL",
        "KVM_EXIT_AP_RESET_HOLD",
        "KVM_EXIT_X86_BUS_LOCK",
        "KVM_EXIT_XEN",
        "KVM_EXIT_RISCV_SBI",
        "KVM_EXIT_RISCV_CSR",
        "KVM_EXIT_NOTIFY",
        "KVM_EXIT_LOONGARCH_IOCSR",
        "KVM_EXIT_MEMORY_FAULT",
    ];
    NAMES.get(reason as usize).copied().unwrap_or("KVM_EXIT_?")
}

/// KVM_EXIT_INTERNAL_ERROR with its suberror and data words.
fn internal_error(run: &kvm_run) -> String {
    // SAFETY: called for KVM_EXIT_INTERNAL_ERROR only, whose payload is `internal`.
    let i = unsafe { run.__bindgen_anon_1.internal };
    let name = match i.suberror {
        kvm_bindings::KVM_INTERNAL_ERROR_EMULATION => "KVM_INTERNAL_ERROR_EMULATION",
        kvm_bindings::KVM_INTERNAL_ERROR_SIMUL_EX => "KVM_INTERNAL_ERROR_SIMUL_EX",
        kvm_bindings::KVM_INTERNAL_ERROR_DELIVERY_EV => "KVM_INTERNAL_ERROR_DELIVERY_EV",
        kvm_bindings::KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON => {
            "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON"
        }
        _ => "unknown suberror",
    };
    let mut data = &i.data[..(i.ndata as usize).min(i.data.len())];
    let mut insn = String::new();
    // An emulation failure may carry the instruction bytes KVM fetched: data[0] is the flags,
    // data[1..3] hold `insn_size` and 15 bytes (struct kvm_run, emulation_failure).
    if i.suberror == kvm_bindings::KVM_INTERNAL_ERROR_EMULATION
        && data.len() >= 3
        && data[0] & u64::from(kvm_bindings::KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)
            != 0
    {
        let bytes: Vec<u8> = data[1..3].iter().flat_map(|w| w.to_le_bytes()).collect();
        let n = usize::from(bytes[0]).min(15);
        let hex: Vec<String> = bytes[1..1 + n].iter().map(|b| format!("{b:02x}")).collect();
        insn = format!(", instruction bytes [{}]", hex.join(" "));
        data = &data[3..];
    }
    let words: Vec<String> = data.iter().map(|d| format!("{d:#x}")).collect();
    format!(
        "KVM_EXIT_INTERNAL_ERROR: suberror {} ({name}){insn}, data [{}]",
        i.suberror,
        words.join(", ")
    )
}

/// What the run loop does after one KVM_RUN.
enum Next {
    Continue,
    Halt,
    Io,
    Stop(VmExit),
    /// Stop with a register dump: (is it a triple fault, KVM's reason).
    Fail(bool, String),
    /// An exit btvisor does not handle: described from `kvm_run` after the borrow ends.
    Unhandled,
}

/// Counters for `--stats`.
#[derive(Debug, Default)]
struct KvmStats {
    /// By KVM exit reason.
    exits: std::collections::BTreeMap<u32, u64>,
    kicks: u64,
    interrupts: u64,
}

pub struct KvmEngine {
    // Field order is drop order: the vCPU and VM close before the RAM mapping goes.
    vcpu: VcpuFd,
    _vm: VmFd,
    _kvm: Kvm,
    ram: RamMapping,
    /// The loaders' state has been given to KVM (at the first run).
    loaded: bool,
    /// The CR8 value last exchanged with KVM (the TPR lives in the userspace local APIC).
    cr8: u64,
    stats: KvmStats,
}

impl KvmEngine {
    /// A KVM VM with guest RAM in slot 0 at guest-physical 0 and one vCPU with btvisor's CPUID.
    pub fn new(ram: &GuestRam) -> Result<KvmEngine, KvmError> {
        let path = std::env::var(KVM_DEVICE_ENV).unwrap_or_else(|_| "/dev/kvm".into());
        let kvm = Kvm::new_with_path(std::ffi::CString::new(path.clone()).map_err(|_| {
            KvmError::Open {
                path: path.clone(),
                err: kvm_ioctls::Error::new(libc::EINVAL),
            }
        })?)
        .map_err(|err| KvmError::Open { path, err })?;
        let api = kvm.get_api_version();
        if api != 12 {
            return Err(KvmError::ApiVersion(api));
        }
        let vm = kvm.create_vm().map_err(setup("KVM_CREATE_VM"))?;
        vm.set_tss_address(TSS_ADDRESS)
            .map_err(setup("KVM_SET_TSS_ADDR"))?;
        let map = RamMapping::new(ram)?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: map.size as u64,
            userspace_addr: map.ptr as u64,
        };
        // SAFETY: the region is our own mapping of guest RAM, which lives until after the VM
        // is closed (`RamMapping` drops last).
        unsafe { vm.set_user_memory_region(region) }
            .map_err(setup("KVM_SET_USER_MEMORY_REGION"))?;
        let vcpu = vm.create_vcpu(0).map_err(setup("KVM_CREATE_VCPU"))?;
        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(setup("KVM_GET_SUPPORTED_CPUID"))?;
        let table = CpuId::from_entries(&cpuid::filter(supported.as_slice()))
            .map_err(|e| KvmError::Cpuid(format!("{e:?}")))?;
        vcpu.set_cpuid2(&table).map_err(setup("KVM_SET_CPUID2"))?;
        Ok(KvmEngine {
            vcpu,
            _vm: vm,
            _kvm: kvm,
            ram: map,
            loaded: false,
            cr8: 0,
            stats: KvmStats::default(),
        })
    }

    /// Give KVM the state the loader prepared.
    fn load(&mut self, cpu: &btvisor_translator::cpu::CpuState) -> Result<(), KvmError> {
        let base = self.vcpu.get_sregs().map_err(setup("KVM_GET_SREGS"))?;
        self.vcpu
            .set_sregs(&state::sregs_to_kvm(cpu, &base))
            .map_err(setup("KVM_SET_SREGS"))?;
        self.vcpu
            .set_regs(&state::regs_to_kvm(cpu))
            .map_err(setup("KVM_SET_REGS"))?;
        self.cr8 = cpu.cr8;
        Ok(())
    }

    /// Copy KVM's view of the vCPU back into `cpu` (for dumps and whoever inspects the VM).
    fn store(&self, cpu: &mut btvisor_translator::cpu::CpuState) {
        if let (Ok(r), Ok(s)) = (self.vcpu.get_regs(), self.vcpu.get_sregs()) {
            state::regs_from_kvm(&r, cpu);
            state::sregs_from_kvm(&s, cpu);
        }
    }

    /// KVM's registers, and the instruction at RIP read through KVM's own page walk.
    fn dump(&self, why: &str) -> String {
        let (r, s) = match (self.vcpu.get_regs(), self.vcpu.get_sregs()) {
            (Ok(r), Ok(s)) => (r, s),
            (Err(e), _) | (_, Err(e)) => {
                return format!("{why}\n (KVM registers unavailable: {e})\n")
            }
        };
        let mut out = state::dump(why, &r, &s);
        let lin = s.cs.base.wrapping_add(r.rip);
        match self.vcpu.translate_gva(lin) {
            Ok(t) if t.valid != 0 => {
                let gpa = t.physical_address;
                let len = 15.min(self.ram.size.saturating_sub(gpa as usize));
                if len == 0 {
                    let _ = writeln!(out, " code: rip maps to {gpa:#x}, outside RAM");
                } else {
                    // SAFETY: gpa + len lies inside our RAM mapping (checked above).
                    let bytes = unsafe {
                        std::slice::from_raw_parts(
                            (self.ram.ptr as *const u8).add(gpa as usize),
                            len,
                        )
                    };
                    let bits = state::segment_from_kvm(&s.cs);
                    let bits = if s.cr0 & 1 == 0 {
                        16
                    } else if s.efer & (1 << 10) != 0 && bits.long() {
                        64
                    } else if bits.big() {
                        32
                    } else {
                        16
                    };
                    let mut d = iced_x86::Decoder::with_ip(bits, bytes, r.rip, 0);
                    let insn = d.decode();
                    let mut text = String::new();
                    iced_x86::Formatter::format(
                        &mut iced_x86::GasFormatter::new(),
                        &insn,
                        &mut text,
                    );
                    let hex: Vec<String> = bytes[..insn.len()]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    let _ = writeln!(out, " code: `{text}` ({}) at gpa {gpa:#x}", hex.join(" "));
                }
            }
            Ok(_) => {
                let _ = writeln!(out, " code: rip {lin:#x} is not mapped");
            }
            Err(e) => {
                let _ = writeln!(out, " code: KVM_TRANSLATE failed: {e}");
            }
        }
        out
    }

    /// Inject an external interrupt (KVM_INTERRUPT, userspace irqchip only).
    fn inject(&self, vector: u8) -> io::Result<()> {
        let irq = kvm_bindings::kvm_interrupt {
            irq: u32::from(vector),
        };
        // SAFETY: KVM_INTERRUPT reads one `struct kvm_interrupt` from the pointer, which is a
        // live local; the result is checked.
        let r = unsafe { libc::ioctl(self.vcpu.as_raw_fd(), KVM_INTERRUPT as _, &irq) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Serve a KVM_EXIT_IO from the port bus; `Some` if a device stopped the VM.
    fn port_io(&mut self, vm: &mut Vm) -> Option<VmExit> {
        let run = self.vcpu.get_kvm_run();
        // SAFETY: called for KVM_EXIT_IO only, whose payload is `io`.
        let io = unsafe { run.__bindgen_anon_1.io };
        let size = usize::from(io.size);
        let len = size * io.count as usize;
        // SAFETY: KVM puts the data at `data_offset` inside the kvm_run mapping, `count`
        // elements of `size` bytes (KVM API, KVM_EXIT_IO); the slice ends before KVM_RUN.
        let data = unsafe {
            std::slice::from_raw_parts_mut(
                (run as *mut kvm_run as *mut u8).add(io.data_offset as usize),
                len,
            )
        };
        let devices = &mut vm.machine.devices;
        for chunk in data.chunks_mut(size.max(1)) {
            if u32::from(io.direction) == kvm_bindings::KVM_EXIT_IO_IN {
                let v = devices.io_in(io.port, io.size);
                chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
                tracing::trace!(target: "btvisor::callouts", "KVM_EXIT_IO in port={:#x} size={} -> {v:#x}", io.port, io.size);
            } else {
                let mut b = [0u8; 4];
                b[..chunk.len()].copy_from_slice(chunk);
                tracing::trace!(target: "btvisor::callouts", "KVM_EXIT_IO out port={:#x} size={} value={:#x}", io.port, io.size, u32::from_le_bytes(b));
                match devices.io_out(io.port, io.size, u32::from_le_bytes(b)) {
                    IoOutcome::Continue => {}
                    IoOutcome::Exit(code) => return Some(VmExit::ExitCode(code)),
                    IoOutcome::PowerOff => return Some(VmExit::PowerOff),
                    IoOutcome::Reset => return Some(VmExit::Reset),
                    IoOutcome::GuestPanic => {
                        return Some(VmExit::GuestPanic(self.dump("the guest kernel panicked")))
                    }
                }
            }
        }
        None
    }

    fn run_loop(&mut self, vm: &mut Vm) -> VmExit {
        let mut halted = false;
        loop {
            let now = Instant::now();
            if vm.deadline.is_some_and(|d| now >= d) {
                return VmExit::Timeout;
            }
            if crate::vm::poll_input(&mut vm.input, &mut vm.machine.devices) {
                return VmExit::Quit;
            }
            let devices = &mut vm.machine.devices;
            devices.update(now);
            if devices.interrupt_pending() {
                let run = self.vcpu.get_kvm_run();
                if run.ready_for_interrupt_injection != 0 && run.if_flag != 0 {
                    if let Some(vec) = devices.acknowledge_interrupt() {
                        if let Err(e) = self.inject(vec) {
                            return VmExit::Unsupported(
                                self.dump(&format!("KVM_INTERRUPT of vector {vec:#x} failed: {e}")),
                            );
                        }
                        halted = false;
                        self.stats.interrupts += 1;
                        vm.machine.stats.external_interrupts += 1;
                        tracing::trace!(target: "btvisor::traps", "irq vector {vec:#x} injected by KVM_INTERRUPT");
                    }
                }
            }
            let pending = devices.interrupt_pending();
            let tpr = devices
                .apics()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .lapic
                .cr8();
            {
                let run = self.vcpu.get_kvm_run();
                // Exit as soon as the guest can take what is still pending.
                run.request_interrupt_window = u8::from(pending);
                // Without an in-kernel local APIC, KVM takes CR8 from here at every entry.
                run.cr8 = tpr;
                self.cr8 = tpr;
            }
            if halted {
                if self.vcpu.get_kvm_run().if_flag == 0 {
                    return VmExit::HaltedForever(self.dump("HLT with interrupts disabled"));
                }
                let wake = devices
                    .next_deadline()
                    .unwrap_or(now + Duration::from_millis(10));
                let wait = wake
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(10));
                std::thread::sleep(wait);
                continue;
            }
            let mut exited = true;
            let next = match self.vcpu.run() {
                Ok(VcpuExit::IoIn(..) | VcpuExit::IoOut(..)) => Next::Io,
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    let mut apics = vm
                        .machine
                        .devices
                        .apics()
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let claimed = apics.read(addr, data);
                    tracing::trace!(target: "btvisor::callouts", "KVM_EXIT_MMIO read {addr:#x} len={} claimed={claimed} -> {data:02x?}", data.len());
                    if !claimed {
                        tracing::debug!(target: "btvisor::mmu", "read of unbacked physical address {addr:#x}");
                        data.fill(0xff);
                    }
                    Next::Continue
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    let mut apics = vm
                        .machine
                        .devices
                        .apics()
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let claimed = apics.write(addr, data);
                    tracing::trace!(target: "btvisor::callouts", "KVM_EXIT_MMIO write {addr:#x} {data:02x?} claimed={claimed}");
                    if !claimed {
                        tracing::debug!(target: "btvisor::mmu", "write to unbacked physical address {addr:#x}");
                    }
                    Next::Continue
                }
                Ok(VcpuExit::Hlt) => Next::Halt,
                Ok(VcpuExit::IrqWindowOpen | VcpuExit::Intr) => Next::Continue,
                Ok(VcpuExit::Shutdown) => {
                    Next::Fail(true, "triple fault (KVM_EXIT_SHUTDOWN)".into())
                }
                Ok(VcpuExit::FailEntry(reason, _)) => Next::Fail(
                    false,
                    format!("KVM_EXIT_FAIL_ENTRY: hardware entry failure reason {reason:#x}"),
                ),
                Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                    kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => Next::Stop(VmExit::PowerOff),
                    kvm_bindings::KVM_SYSTEM_EVENT_RESET => Next::Stop(VmExit::Reset),
                    _ => Next::Unhandled,
                },
                Ok(_) => Next::Unhandled,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.stats.kicks += 1;
                    exited = false;
                    Next::Continue
                }
                Err(e) => {
                    exited = false;
                    Next::Fail(false, format!("KVM_RUN failed: {e}"))
                }
            };
            let reason = self.vcpu.get_kvm_run().exit_reason;
            if exited {
                *self.stats.exits.entry(reason).or_default() += 1;
            }
            // The guest may have written CR8 (MOV to CR8 is KVM's without a local APIC there).
            let cr8 = self.vcpu.get_kvm_run().cr8;
            if cr8 != self.cr8 {
                self.cr8 = cr8;
                vm.machine
                    .devices
                    .apics()
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .set_cr8(cr8);
            }
            match next {
                Next::Continue => {}
                Next::Halt => {
                    halted = true;
                    vm.machine.stats.halts += 1;
                }
                Next::Io => {
                    if let Some(exit) = self.port_io(vm) {
                        return exit;
                    }
                }
                Next::Stop(exit) => return exit,
                Next::Fail(true, why) => return VmExit::TripleFault(self.dump(&why)),
                Next::Fail(false, why) => return VmExit::Unsupported(self.dump(&why)),
                Next::Unhandled => {
                    let run = self.vcpu.get_kvm_run();
                    let why = if reason == kvm_bindings::KVM_EXIT_INTERNAL_ERROR {
                        internal_error(run)
                    } else {
                        format!(
                            "{} (exit reason {reason}), which btvisor does not handle",
                            exit_name(reason)
                        )
                    };
                    return VmExit::Unsupported(self.dump(&why));
                }
            }
        }
    }
}

impl Engine for KvmEngine {
    fn accel(&self) -> Accel {
        Accel::Kvm
    }

    fn run(&mut self, vm: &mut Vm) -> VmExit {
        if !self.loaded {
            if let Err(e) = self.load(&vm.cpu) {
                return VmExit::Unsupported(format!("KVM refused the loader's vCPU state: {e}\n"));
            }
            self.loaded = true;
        }
        let _kick = match kick::Kicker::start(KICK_PERIOD) {
            Ok(k) => k,
            Err(e) => {
                return VmExit::Unsupported(format!(
                    "--accel kvm: cannot start the vCPU kick timer: {e}\n"
                ))
            }
        };
        let exit = self.run_loop(vm);
        self.store(&mut vm.cpu);
        exit
    }

    fn stats(&self) -> Option<String> {
        let mut s = String::from("KVM exits by reason:\n");
        for (reason, n) in &self.stats.exits {
            let _ = writeln!(s, "  {:<26}{n}", exit_name(*reason));
        }
        let _ = writeln!(s, "KVM_RUN interrupted (kicks) {}", self.stats.kicks);
        let _ = writeln!(s, "interrupts injected         {}", self.stats.interrupts);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_interrupt_ioctl_number() {
        // include/uapi/linux/kvm.h: #define KVM_INTERRUPT _IOW(KVMIO, 0x86, struct kvm_interrupt)
        assert_eq!(KVM_INTERRUPT, 0x4004_ae86);
    }

    #[test]
    fn exit_names_follow_the_uapi_numbers() {
        assert_eq!(
            exit_name(kvm_bindings::KVM_EXIT_SHUTDOWN),
            "KVM_EXIT_SHUTDOWN"
        );
        assert_eq!(
            exit_name(kvm_bindings::KVM_EXIT_INTERNAL_ERROR),
            "KVM_EXIT_INTERNAL_ERROR"
        );
        assert_eq!(
            exit_name(kvm_bindings::KVM_EXIT_MEMORY_FAULT),
            "KVM_EXIT_MEMORY_FAULT"
        );
        assert_eq!(exit_name(1000), "KVM_EXIT_?");
    }
}
