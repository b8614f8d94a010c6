//! Guest exceptions raised by translated code, the MMU or callouts (SDM Vol. 3, 6.15).

/// Exception vectors (SDM Vol. 3, Table 6-1).
pub mod vector {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const MC: u8 = 18;
    pub const XM: u8 = 19;
    /// Not a CPU vector: a helper met something the translator cannot run and stopped the VM
    /// (the reason is in `CpuState::stop_what`). Never delivered to the guest: both tiers turn
    /// it into `StopReason::Unsupported` (`interp::helper_exit`).
    pub const STOP: u8 = 0xff;
}

/// A guest exception about to be delivered through the IDT.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    pub vector: u8,
    pub error_code: Option<u32>,
    /// For #PF: the linear address that goes to CR2 at delivery.
    pub fault_addr: Option<u64>,
}

impl Exception {
    pub const fn new(vector: u8) -> Self {
        Exception {
            vector,
            error_code: None,
            fault_addr: None,
        }
    }
    pub const fn with_code(vector: u8, code: u32) -> Self {
        Exception {
            vector,
            error_code: Some(code),
            fault_addr: None,
        }
    }
    pub const fn de() -> Self {
        Self::new(vector::DE)
    }
    pub const fn ud() -> Self {
        Self::new(vector::UD)
    }
    pub const fn gp(code: u32) -> Self {
        Self::with_code(vector::GP, code)
    }
    pub const fn ss(code: u32) -> Self {
        Self::with_code(vector::SS, code)
    }
    pub const fn np(code: u32) -> Self {
        Self::with_code(vector::NP, code)
    }
    pub const fn ts(code: u32) -> Self {
        Self::with_code(vector::TS, code)
    }
    pub const fn nm() -> Self {
        Self::new(vector::NM)
    }
    /// The pseudo-exception of a helper that stops the VM (`vector::STOP`).
    pub const fn stop() -> Self {
        Self::new(vector::STOP)
    }
    /// #PF with its error code (SDM Vol. 3, 4.7) and the faulting linear address.
    pub const fn pf(addr: u64, code: u32) -> Self {
        Exception {
            vector: vector::PF,
            error_code: Some(code),
            fault_addr: Some(addr),
        }
    }
    /// Faults report the instruction's own RIP; traps (#BP, #OF, INT n) the next one.
    pub fn name(&self) -> &'static str {
        const NAMES: [&str; 21] = [
            "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP",
            "#SS", "#GP", "#PF", "15", "#MF", "#AC", "#MC", "#XM", "#VE",
        ];
        NAMES.get(self.vector as usize).copied().unwrap_or("INT")
    }
}

/// #PF error-code bits (SDM Vol. 3, 4.7).
pub mod pf {
    pub const P: u32 = 1 << 0;
    pub const W: u32 = 1 << 1;
    pub const U: u32 = 1 << 2;
    pub const RSVD: u32 = 1 << 3;
    pub const I: u32 = 1 << 4;
}
