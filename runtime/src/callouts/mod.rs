//! Callouts: the runtime side of privileged and sensitive instructions (classify.rs decides
//! which). One module per family; `dispatch` is the single entry from translated code.

mod control;
pub mod cpuid;
mod flags;
mod io;
mod msr;
pub mod operand;
mod random;
mod segment;
mod system;
pub(crate) mod transfer;

use crate::vm::Machine;
use btvisor_translator::classify::CalloutKind;
use btvisor_translator::cpu::CpuState;
use btvisor_translator::env::CalloutResult;
use btvisor_translator::exception::Exception;
use iced_x86::Instruction;

/// Result type of a callout body: `Err` raises the exception at the instruction.
pub type Outcome = Result<CalloutResult, Exception>;

pub fn dispatch(
    m: &mut Machine,
    cpu: &mut CpuState,
    insn: &Instruction,
    kind: CalloutKind,
) -> CalloutResult {
    use CalloutKind as K;
    m.stats.note_callout(kind);
    let r = match kind {
        K::Pushf | K::Popf | K::Cli | K::Sti | K::AlignmentCheck => flags::run(m, cpu, insn, kind),
        K::StoreSystemReg | K::LoadSystemReg | K::DescriptorQuery => {
            system::run(m, cpu, insn, kind)
        }
        K::SegmentLoad => segment::run(m, cpu, insn),
        K::FarTransfer | K::SoftwareInterrupt | K::Iret | K::FastSystemCall => {
            transfer::run(m, cpu, insn, kind)
        }
        K::Hlt
        | K::MovControl
        | K::Invlpg
        | K::Swapgs
        | K::ExtendedControl
        | K::CacheControl
        | K::SegmentBase
        | K::MonitorWait
        | K::Undefined
        | K::TimeStamp => control::run(m, cpu, insn, kind),
        K::PortIo => io::run(m, cpu, insn),
        K::Msr => msr::run(m, cpu, insn),
        K::Random => random::run(cpu, insn),
        K::Cpuid => {
            cpuid::run(cpu);
            Ok(CalloutResult::Next)
        }
    };
    let r = r.unwrap_or_else(CalloutResult::Raise);
    if tracing::enabled!(target: "btvisor::callouts", tracing::Level::TRACE) {
        let mut s = String::new();
        iced_x86::Formatter::format(&mut iced_x86::GasFormatter::new(), insn, &mut s);
        tracing::trace!(target: "btvisor::callouts", "callout {:?} rip={:#x} `{}` -> {:?}", kind, insn.ip(), s, r);
    }
    r
}

/// #GP(0) unless CPL is 0: the privilege check of most system instructions.
pub fn require_cpl0(cpu: &CpuState) -> Result<(), Exception> {
    if cpu.cpl() != 0 {
        Err(Exception::gp(0))
    } else {
        Ok(())
    }
}
