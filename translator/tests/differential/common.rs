//! Pieces shared by the differential suites and the native-step tests: the random number
//! generator, and what the native trampolines are built from (the executable mapping, the
//! assembler, the register tables).

use iced_x86::{Encoder, Instruction, MemoryOperand, Register};

// ---------------------------------------------------------------- random numbers

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// A generator whose state is `state` as it is (no mixing of the seed).
    pub fn with_state(state: u64) -> Rng {
        Rng(state)
    }
    pub fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    /// A value of `sz` bytes biased to the edges: 0, 1, -1, sign boundaries, small numbers.
    pub fn val(&mut self, sz: u32) -> u64 {
        let bits = sz * 8;
        let m = mask(sz);
        let sign = 1u64 << (bits - 1);
        let v = match self.below(10) {
            0 => [0, 1, m, 2, m - 1][self.below(5) as usize],
            1 => [sign, sign - 1, sign + 1, sign - 2][self.below(4) as usize],
            2 => self.below(34).wrapping_sub(17),
            3 => 1u64 << self.below(bits as u64),
            4 => self.next() & 0xff,
            _ => self.next(),
        };
        v & m
    }
}

pub fn mask(sz: u32) -> u64 {
    if sz >= 8 {
        u64::MAX
    } else {
        (1u64 << (sz * 8)) - 1
    }
}

// ---------------------------------------------------------------- trampolines

/// The 16 GPRs in the order of `CpuState::gpr`.
pub const GPRS: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// The callee-saved GPRs of the SysV ABI (but RSP), in push order.
pub const CALLEE_SAVED: [Register; 6] = [
    Register::RBX,
    Register::RBP,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// `[addr]` with a 32-bit absolute displacement (the mappings lie below 2 GiB).
pub fn abs(addr: u64) -> MemoryOperand {
    assert!(addr < 0x8000_0000);
    MemoryOperand::with_displ(addr, 4)
}

pub fn w(x: Result<Instruction, iced_x86::IcedError>) -> Instruction {
    x.unwrap()
}

/// Encode `insns` one after the other from `ip` in `bits`-bit mode.
pub fn assemble(bits: u32, ip: u64, insns: &[Instruction]) -> Vec<u8> {
    let mut enc = Encoder::new(bits);
    let mut rip = ip;
    for i in insns {
        let n = enc.encode(i, rip).expect("trampoline instruction");
        rip += n as u64;
    }
    enc.take_buffer()
}

/// A private anonymous read-write-execute mapping that trampoline, test code and data live in.
pub struct Area {
    base: *mut u8,
    len: usize,
}

impl Area {
    /// Map `len` bytes at `addr` with `flags` (besides MAP_PRIVATE | MAP_ANONYMOUS); the raw
    /// result of mmap when it failed.
    pub fn map(addr: u64, len: usize, flags: libc::c_int) -> Result<Area, *mut libc::c_void> {
        // SAFETY: a fresh private anonymous mapping (at a hint or at a fixed address that
        // MAP_FIXED_NOREPLACE refuses to take over); checked for failure below.
        let base = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED || (addr != 0 && base as u64 != addr) {
            return Err(base);
        }
        Ok(Area {
            base: base as *mut u8,
            len,
        })
    }

    pub fn base(&self) -> u64 {
        self.base as u64
    }

    pub fn put(&self, off: u64, bytes: &[u8]) {
        assert!(off as usize + bytes.len() <= self.len);
        // SAFETY: inside our own mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(off as usize), bytes.len())
        }
    }

    pub fn get(&self, off: u64, bytes: &mut [u8]) {
        assert!(off as usize + bytes.len() <= self.len);
        // SAFETY: inside our own mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.add(off as usize),
                bytes.as_mut_ptr(),
                bytes.len(),
            )
        }
    }

    pub fn read_u64(&self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.get(off, &mut b);
        u64::from_le_bytes(b)
    }

    pub fn read_u32(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.get(off, &mut b);
        u32::from_le_bytes(b)
    }

    /// `len` bytes from `off`.
    pub fn bytes(&self, off: u64, len: usize) -> &[u8] {
        assert!(off as usize + len <= self.len);
        // SAFETY: inside our mapping.
        unsafe { std::slice::from_raw_parts(self.base.add(off as usize), len) }
    }

    /// `len` bytes from `off`, writable.
    #[allow(clippy::mut_from_ref)]
    pub fn bytes_mut(&self, off: u64, len: usize) -> &mut [u8] {
        assert!(off as usize + len <= self.len);
        // SAFETY: inside our mapping; only the thread owning (or holding the lock on) the
        // area touches it.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(off as usize), len) }
    }

    /// Call the code at offset 0 (the trampoline's entry).
    ///
    /// # Safety
    /// The code there must be a complete `extern "sysv64" fn()` and whatever it runs must not
    /// fault.
    pub unsafe fn call(&self) {
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        let f: extern "sysv64" fn() = std::mem::transmute(self.base);
        f();
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}
