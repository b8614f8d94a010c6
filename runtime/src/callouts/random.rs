//! RDRAND/RDSEED (SDM Vol. 2B): the guest gets the host's hardware random numbers. The
//! instructions are offered only when the host has them (the CPUID model passes the host's
//! bits through), and raise #UD otherwise, as on a CPU without them.

use super::{cpuid, operand, Outcome};
use btvisor_translator::cpu::{rflags, CpuState};
use btvisor_translator::env::CalloutResult;
use btvisor_translator::exception::Exception;
use iced_x86::{Instruction, Mnemonic};

/// CPUID.1:ECX.RDRAND (bit 30) and CPUID.(EAX=7,ECX=0):EBX.RDSEED (bit 18), as the guest sees
/// them.
fn offered(cpu: &CpuState, seed: bool) -> bool {
    if seed {
        cpuid::leaf(cpu, 7, 0)[1] & (1 << 18) != 0
    } else {
        cpuid::leaf(cpu, 1, 0)[2] & (1 << 30) != 0
    }
}

#[target_feature(enable = "rdrand")]
fn host_rdrand() -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: the target feature is enabled for this function and checked by the caller
    // through CPUID (the guest is offered RDRAND only when the host has it).
    (core::arch::x86_64::_rdrand64_step(&mut v) == 1).then_some(v)
}

#[target_feature(enable = "rdseed")]
fn host_rdseed() -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: as for `host_rdrand`, with RDSEED.
    (core::arch::x86_64::_rdseed64_step(&mut v) == 1).then_some(v)
}

pub fn run(cpu: &mut CpuState, insn: &Instruction) -> Outcome {
    let seed = insn.mnemonic() == Mnemonic::Rdseed;
    if !offered(cpu, seed) {
        return Err(Exception::ud());
    }
    // SAFETY: `offered` is true only if the host CPU reports the instruction.
    let value = unsafe {
        if seed {
            host_rdseed()
        } else {
            host_rdrand()
        }
    };
    // CF=1 with a value, CF=0 and a zero destination when no entropy was ready; OF, SF, ZF,
    // AF and PF are cleared either way.
    let flags = cpu.rflags() & !rflags::ARITH;
    operand::reg_write(cpu, insn.op0_register(), value.unwrap_or(0));
    cpu.set_rflags(flags | if value.is_some() { rflags::CF } else { 0 });
    Ok(CalloutResult::Next)
}
