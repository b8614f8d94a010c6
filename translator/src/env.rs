//! The seam between translated code and the runtime: what the interpreter (and later compiled
//! code) calls when the soft TLB misses or an instruction needs the runtime (a callout).

use crate::classify::CalloutKind;
use crate::cpu::CpuState;
use crate::exception::Exception;
use iced_x86::Instruction;

/// What a callout tells the translated code to do next.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CalloutResult {
    /// Done; continue at the next instruction.
    Next,
    /// The callout set `cpu.rip` (and maybe the mode) itself.
    Jump,
    /// Raise this exception at the instruction.
    Raise(Exception),
    /// HLT: wait for an interrupt, then continue at the next instruction.
    Halt,
    /// The VM stops (debug-exit port, shutdown).
    Stop(StopReason),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A write to the debug-exit port: the VMM's exit status.
    ExitCode(i32),
    /// Something the translator cannot run yet (with the instruction at cpu.rip).
    Unsupported(&'static str),
    /// The guest powered the machine off (ACPI S5).
    PowerOff,
    /// The guest reset the machine (i8042 pulse, port 0xCF9).
    Reset,
    /// The guest kernel reported a panic (pvpanic).
    GuestPanic,
}

/// Implemented by the runtime for each vCPU.
pub trait Env {
    /// Read `size` (1, 2, 4, 8) bytes at a linear address after a soft-TLB miss: walk the page
    /// tables, fill the TLB, handle MMIO and page-crossing accesses. `user` is true for CPL 3
    /// data accesses. The slow paths may change the soft TLB and other system state, but
    /// never the general-purpose registers or the lazy flags (compiled code keeps those cached
    /// across a slow-path call), and reads never set `code_modified` (only writes to code
    /// pages do; compiled code checks it only after stores and helpers).
    fn read_slow(
        &mut self,
        cpu: &mut CpuState,
        lin: u64,
        size: u8,
        user: bool,
    ) -> Result<u64, Exception>;
    /// Write after a soft-TLB miss; detects writes to pages holding translations.
    fn write_slow(
        &mut self,
        cpu: &mut CpuState,
        lin: u64,
        size: u8,
        value: u64,
        user: bool,
    ) -> Result<(), Exception>;
    /// Fetch instruction bytes at a linear address for the scanner (execute permission checked
    /// for the first byte's page). Returns the guest-physical address of `lin` and fills `buf`
    /// with as many bytes as are readable up to its length (the bytes of a following page only
    /// when that page is executable too), and the physical page of the second page if used.
    fn fetch(&mut self, cpu: &mut CpuState, lin: u64, buf: &mut [u8])
        -> Result<Fetched, Exception>;
    /// Run a privileged or sensitive instruction.
    fn callout(
        &mut self,
        cpu: &mut CpuState,
        insn: &Instruction,
        kind: CalloutKind,
    ) -> CalloutResult;
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub phys: u64,
    /// Number of bytes of `buf` filled.
    pub len: usize,
    /// Guest-physical page of the following page when bytes from it were included.
    pub next_page: Option<u64>,
    /// Why the bytes stop at the page end, if fetching the next page faulted: raised when the
    /// first instruction of a block straddles into it.
    pub next_fault: Option<Exception>,
}
