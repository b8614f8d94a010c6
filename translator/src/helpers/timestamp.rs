//! RDTSC and RDTSCP, lifted as a helper call instead of a block-ending callout: Linux reads the
//! TSC constantly (sched_clock, delay loops, the clocksource), and the only sensitive part is
//! the CR4.TSD check (SDM Vol. 2B, RDTSC: #GP(0) if CR4.TSD = 1 and CPL > 0). The guest TSC is
//! the host's plus `Msrs::tsc_offset` (design.md 3.3), which WRMSR IA32_TSC moves.

use crate::cpu::CpuState;
use crate::env::Env;
use crate::exception::Exception;
use crate::ir::{Helper, HelperArgs};
use iced_x86::Mnemonic;

/// CR4.TSD: RDTSC/RDTSCP are privileged.
const CR4_TSD: u64 = 1 << 2;

/// The guest's TSC now.
pub fn guest_tsc(cpu: &CpuState) -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64.
    let host = unsafe { core::arch::x86_64::_rdtsc() };
    host.wrapping_add(cpu.msr.tsc_offset as u64)
}

/// Make the guest's TSC read `value` now.
pub fn set_guest_tsc(cpu: &mut CpuState, value: u64) {
    // SAFETY: as above.
    let host = unsafe { core::arch::x86_64::_rdtsc() };
    cpu.msr.tsc_offset = value.wrapping_sub(host) as i64;
}

fn timestamp(cpu: &mut CpuState, _env: &mut dyn Env, args: &HelperArgs) -> Result<u64, Exception> {
    if cpu.cr4 & CR4_TSD != 0 && cpu.cpl() != 0 {
        return Err(Exception::gp(0));
    }
    let tsc = guest_tsc(cpu);
    cpu.gpr[0] = tsc & 0xffff_ffff;
    cpu.gpr[2] = tsc >> 32;
    if args.insn.mnemonic() == Mnemonic::Rdtscp {
        cpu.gpr[1] = cpu.msr.tsc_aux & 0xffff_ffff;
    }
    Ok(0)
}

pub const TIMESTAMP: Helper = Helper {
    name: "timestamp",
    f: timestamp,
};
