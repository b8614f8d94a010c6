//! RDMSR/WRMSR of the model-specific registers this virtual CPU implements (SDM Vol. 4).
//! Unknown MSRs raise #GP(0), as on hardware.

use super::{require_cpl0, Outcome};
use crate::mmu::Memory;
use crate::vm::Machine;
use btvisor_translator::cpu::{cr, CpuState, Seg};
use btvisor_translator::env::CalloutResult;
use btvisor_translator::exception::Exception;
use iced_x86::{Instruction, Mnemonic};

pub const IA32_TSC: u32 = 0x10;
pub const IA32_APIC_BASE: u32 = 0x1b;
pub const IA32_SYSENTER_CS: u32 = 0x174;
pub const IA32_SYSENTER_ESP: u32 = 0x175;
pub const IA32_SYSENTER_EIP: u32 = 0x176;
pub const IA32_PAT: u32 = 0x277;
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
pub const EFER: u32 = 0xc000_0080;
pub const STAR: u32 = 0xc000_0081;
pub const LSTAR: u32 = 0xc000_0082;
pub const CSTAR: u32 = 0xc000_0083;
pub const FMASK: u32 = 0xc000_0084;
pub const FS_BASE: u32 = 0xc000_0100;
pub const GS_BASE: u32 = 0xc000_0101;
pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const TSC_AUX: u32 = 0xc000_0103;
/// AMD SYSCFG (APM Vol. 2, 3.2.1): memory-system configuration; reads as 0 (no SME, no
/// MTRR fixed-range extensions), writes #GP as nothing here is configurable.
pub const AMD_SYSCFG: u32 = 0xc001_0010;
/// AMD NB_CFG: northbridge configuration. Linux reads it on family 0x10+ to find out whether
/// extended APIC IDs are on; a plain register here.
pub const AMD_NB_CFG: u32 = 0xc001_001f;
/// AMD DE_CFG: decode configuration; bit 1 makes LFENCE dispatch-serializing, which Linux sets
/// (and which the translator honours trivially: it runs instructions in order).
pub const AMD_DE_CFG: u32 = 0xc001_1029;

pub fn run(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Outcome {
    require_cpl0(cpu)?;
    let idx = cpu.gpr[1] as u32;
    if insn.mnemonic() == Mnemonic::Rdmsr {
        let v = read(m, cpu, idx)?;
        cpu.gpr[0] = v & 0xffff_ffff;
        cpu.gpr[2] = v >> 32;
    } else {
        let v = (cpu.gpr[0] & 0xffff_ffff) | (cpu.gpr[2] << 32);
        write(m, cpu, idx, v)?;
    }
    Ok(CalloutResult::Next)
}

/// The x2APIC register MSRs (SDM Vol. 3, 10.12.1.2).
const X2APIC_FIRST: u32 = btvisor_devices::X2APIC_MSR_FIRST;
const X2APIC_LAST: u32 = btvisor_devices::X2APIC_MSR_LAST;

fn lock_apics(m: &Machine) -> std::sync::MutexGuard<'_, btvisor_devices::Apics> {
    m.devices
        .apics()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every local APIC fault is a #GP(0) at the RDMSR/WRMSR.
fn apic_fault(e: btvisor_devices::ApicFault) -> Exception {
    tracing::debug!(target: "btvisor::callouts", "local APIC MSR access faults: {e}");
    Exception::gp(0)
}

fn unknown(idx: u32) -> Exception {
    tracing::debug!(target: "btvisor::callouts", "access to unimplemented MSR {idx:#x}: #GP");
    Exception::gp(0)
}

/// The AMD model-specific registers exist only when the guest is told it runs on AMD (the CPUID
/// model passes the host's vendor through).
fn amd(cpu: &CpuState) -> bool {
    let v = super::cpuid::leaf(cpu, 0, 0);
    [v[1], v[3], v[2]] == [0x6874_7541, 0x6974_6e65, 0x444d_4163] // "AuthenticAMD"
}

fn canonical(v: u64) -> Result<u64, Exception> {
    if crate::mmu::is_canonical(v) {
        Ok(v)
    } else {
        Err(Exception::gp(0))
    }
}

pub fn read(m: &mut Machine, cpu: &CpuState, idx: u32) -> Result<u64, Exception> {
    Ok(match idx {
        IA32_TSC => m.guest_tsc(cpu),
        IA32_APIC_BASE => lock_apics(m).lapic.base_msr(),
        X2APIC_FIRST..=X2APIC_LAST => lock_apics(m).msr_read(idx).map_err(apic_fault)?,
        IA32_SYSENTER_CS => cpu.msr.sysenter_cs,
        IA32_SYSENTER_ESP => cpu.msr.sysenter_esp,
        IA32_SYSENTER_EIP => cpu.msr.sysenter_eip,
        IA32_PAT => cpu.msr.pat,
        IA32_MISC_ENABLE => cpu.msr.misc_enable,
        EFER => cpu.efer,
        STAR => cpu.msr.star,
        LSTAR => cpu.msr.lstar,
        CSTAR => cpu.msr.cstar,
        FMASK => cpu.msr.fmask,
        FS_BASE => cpu.seg[Seg::Fs as usize].base,
        GS_BASE => cpu.seg[Seg::Gs as usize].base,
        KERNEL_GS_BASE => cpu.msr.kernel_gs_base,
        TSC_AUX => cpu.msr.tsc_aux,
        AMD_SYSCFG if amd(cpu) => 0,
        AMD_NB_CFG if amd(cpu) => m.amd_nb_cfg,
        AMD_DE_CFG if amd(cpu) => m.amd_de_cfg,
        // MTRR capability and default type: no MTRRs; platform and microcode IDs read as 0.
        0xfe | 0x2ff | 0x17 | 0x8b => 0,
        _ => return Err(unknown(idx)),
    })
}

pub fn write(m: &mut Machine, cpu: &mut CpuState, idx: u32, v: u64) -> Result<(), Exception> {
    match idx {
        IA32_TSC => m.set_guest_tsc(cpu, v),
        IA32_APIC_BASE => lock_apics(m).set_base_msr(v).map_err(apic_fault)?,
        X2APIC_FIRST..=X2APIC_LAST => lock_apics(m).msr_write(idx, v).map_err(apic_fault)?,
        IA32_SYSENTER_CS => cpu.msr.sysenter_cs = v & 0xffff,
        IA32_SYSENTER_ESP => cpu.msr.sysenter_esp = canonical(v)?,
        IA32_SYSENTER_EIP => cpu.msr.sysenter_eip = canonical(v)?,
        IA32_PAT => cpu.msr.pat = v,
        IA32_MISC_ENABLE => cpu.msr.misc_enable = v,
        EFER => {
            let allowed = cr::EFER_SCE | cr::EFER_LME | cr::EFER_LMA | cr::EFER_NXE;
            if v & !allowed != 0 {
                return Err(Exception::gp(0));
            }
            // LME cannot change while paging is on; LMA is read-only (SDM Vol. 3, 9.8.5).
            if cpu.cr0 & cr::CR0_PG != 0 && (v ^ cpu.efer) & cr::EFER_LME != 0 {
                return Err(Exception::gp(0));
            }
            let new = (v & !cr::EFER_LMA) | (cpu.efer & cr::EFER_LMA);
            if (new ^ cpu.efer) & cr::EFER_NXE != 0 {
                Memory::flush_tlb(cpu);
                m.note_tlb(crate::native::TlbEvent::FlushAll);
            }
            cpu.efer = new;
        }
        STAR => cpu.msr.star = v,
        LSTAR => cpu.msr.lstar = canonical(v)?,
        CSTAR => cpu.msr.cstar = canonical(v)?,
        FMASK => cpu.msr.fmask = v & 0xffff_ffff,
        FS_BASE => cpu.seg[Seg::Fs as usize].base = canonical(v)?,
        GS_BASE => cpu.seg[Seg::Gs as usize].base = canonical(v)?,
        KERNEL_GS_BASE => cpu.msr.kernel_gs_base = canonical(v)?,
        TSC_AUX => cpu.msr.tsc_aux = v & 0xffff_ffff,
        AMD_NB_CFG if amd(cpu) => m.amd_nb_cfg = v,
        AMD_DE_CFG if amd(cpu) => m.amd_de_cfg = v,
        0x2ff => {}
        _ => return Err(unknown(idx)),
    }
    Ok(())
}
