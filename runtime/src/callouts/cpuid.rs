//! CPUID: the virtual CPU the guest sees (design.md 3.3): the host's features minus hardware
//! virtualisation and what btvisor does not emulate, with the hypervisor bit set and btvisor's
//! signature in leaf 0x40000000.

use btvisor_translator::cpu::{cr, CpuState};

use btvisor_translator::native_step::{avx_offered, xsave};

/// CR4 bits a guest may set: those whose features CPUID reports and the runtime honours
/// (OSXSAVE: XSAVE/XRSTOR are emulated and VEX instructions native-stepped, see
/// `btvisor_translator::native_step::xsave`).
pub const CR4_SUPPORTED: u64 = (1 << 2) // TSD
    | (1 << 3) // DE
    | cr::CR4_PSE
    | cr::CR4_PAE
    | (1 << 6) // MCE
    | cr::CR4_PGE
    | (1 << 8) // PCE
    | cr::CR4_OSFXSR
    | cr::CR4_OSXMMEXCPT
    | cr::CR4_UMIP
    | cr::CR4_FSGSBASE
    | cr::CR4_OSXSAVE
    | cr::CR4_SMEP;

/// "btvisorbtvis" in EBX, ECX, EDX of leaf 0x40000000.
pub(crate) const SIGNATURE: [u32; 3] = [
    u32::from_le_bytes(*b"btvi"),
    u32::from_le_bytes(*b"sorb"),
    u32::from_le_bytes(*b"tvis"),
];

fn host(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// The guest's view of one leaf.
pub fn leaf(cpu: &CpuState, leaf: u32, sub: u32) -> [u32; 4] {
    let max_basic = host(0, 0)[0].min(0xd);
    let max_ext = host(0x8000_0000, 0)[0].min(0x8000_0008);
    match leaf {
        0 => {
            let h = host(0, 0);
            [max_basic, h[1], h[2], h[3]]
        }
        1 => {
            let mut r = host(1, 0);
            // EBX: APIC ID 0, one logical processor, CLFLUSH size kept.
            r[1] &= 0x0000_ffff;
            r[1] |= 1 << 16;
            // ECX: drop MONITOR(3), VMX(5), SMX(6), EST(7), TM2(8), PDCM(15), PCID(17),
            // x2APIC(21, set again below), TSC-deadline(24, not modelled) and OSXSAVE(27, the
            // guest's CR4 below); set the hypervisor bit (31). XSAVE(26) stays (emulated), and
            // AVX(28), FMA(12), F16C(29) where the native-step engine runs VEX instructions.
            r[2] &= !((1 << 3)
                | (1 << 5)
                | (1 << 6)
                | (1 << 7)
                | (1 << 8)
                | (1 << 15)
                | (1 << 17)
                | (1 << 21)
                | (1 << 24)
                | (1 << 27));
            if !avx_offered() {
                r[2] &= !((1 << 12) | (1 << 28) | (1 << 29));
            }
            if cpu.cr4 & cr::CR4_OSXSAVE != 0 {
                r[2] |= 1 << 27;
            }
            r[2] |= 1 << 31;
            // x2APIC (21): the local APIC model has the MSR interface too.
            r[2] |= 1 << 21;
            // EDX: local APIC (9); no ACPI thermal (22), no TM (29), no PBE (31), no HTT (28).
            r[3] &= !((1 << 22) | (1 << 28) | (1 << 29) | (1 << 31));
            r[3] |= 1 << 9;
            r
        }
        7 if sub == 0 => {
            let mut r = host(7, 0);
            r[0] = 0;
            // EBX: keep FSGSBASE(0), BMI1(3), AVX2(5, with AVX), SMEP(7), BMI2(8), ERMS(9);
            // drop the rest (AVX-512 and the other XSAVE-managed features among them).
            let avx2 = if avx_offered() { 1 << 5 } else { 0 };
            r[1] &= (1 << 0) | (1 << 3) | avx2 | (1 << 7) | (1 << 8) | (1 << 9);
            // ECX: keep UMIP(2) only; EDX: nothing.
            r[2] &= 1 << 2;
            r[3] = 0;
            r
        }
        // XSAVE state enumeration (SDM Vol. 1, 13.2): the supported components; EBX the area
        // size for the current XCR0, ECX for all of them; no XSAVEOPT/XSAVEC/XGETBV1/XSAVES
        // (sub-leaf 1); sub-leaf 2 the AVX component (256 bytes at 576).
        0xd => match sub {
            0 => {
                let all = xsave::xcr0_supported();
                [
                    all as u32,
                    xsave::area_size(cpu.xcr0) as u32,
                    xsave::area_size(all) as u32,
                    0,
                ]
            }
            2 if xsave::xcr0_supported() & 4 != 0 => [256, xsave::AVX_OFFSET as u32, 0, 0],
            _ => [0; 4],
        },
        // Thermal and power: only ARAT (EAX bit 2), the APIC timer runs in every C-state.
        6 if leaf <= max_basic => [1 << 2, 0, 0, 0],
        2..=0xc if leaf <= max_basic => {
            if matches!(leaf, 2 | 4) {
                host(leaf, sub)
            } else {
                [0; 4]
            }
        }
        0x4000_0000 => [0x4000_0000, SIGNATURE[0], SIGNATURE[1], SIGNATURE[2]],
        0x8000_0000 => {
            let h = host(0x8000_0000, 0);
            [max_ext, h[1], h[2], h[3]]
        }
        0x8000_0001 => {
            let mut r = host(0x8000_0001, 0);
            // ECX: keep LAHF(0), ABM/LZCNT(5), PREFETCHW(8); drop SVM(2) and the rest.
            r[2] &= (1 << 0) | (1 << 5) | (1 << 8);
            // EDX: SYSCALL(11), NX(20), 1 GiB pages(26), RDTSCP(27), LM(29) and the legacy bits.
            r[3] &= (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29) | 0x0183_f3ff;
            r
        }
        0x8000_0002..=0x8000_0004 | 0x8000_0006 if leaf <= max_ext => host(leaf, sub),
        0x8000_0008 if leaf <= max_ext => {
            let mut r = host(0x8000_0008, 0);
            // 40 physical and 48 linear address bits (matches the page walker).
            r[0] = (48 << 8) | crate::mmu::walk::MAXPHYADDR;
            r[1] = 0;
            r[2] = 0;
            r
        }
        _ => [0; 4],
    }
}

pub fn run(cpu: &mut CpuState) {
    let r = leaf(cpu, cpu.gpr[0] as u32, cpu.gpr[1] as u32);
    for (i, reg) in [0usize, 3, 1, 2].into_iter().enumerate() {
        cpu.gpr[reg] = r[i] as u64;
    }
}
