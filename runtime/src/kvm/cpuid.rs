//! CPUID under KVM: what KVM can virtualise (KVM_GET_SUPPORTED_CPUID) minus what the machine
//! does not back. The local APIC and I/O APIC are btvisor's userspace models reached through
//! MMIO exits, so the features that need KVM's in-kernel local APIC go: x2APIC (its MSRs would
//! be handled by a local APIC that does not exist), the TSC-deadline timer, and KVM's
//! paravirtual leaves (PV EOI, PV IPIs and the like assume that APIC too). The guest sees
//! btvisor's hypervisor signature, as under the translator (callouts/cpuid.rs), and one
//! processor with APIC ID 0.

use kvm_bindings::kvm_cpuid_entry2;

/// The guest's CPUID table from KVM's supported one.
pub fn filter(supported: &[kvm_cpuid_entry2]) -> Vec<kvm_cpuid_entry2> {
    let mut out = Vec::with_capacity(supported.len());
    for e in supported {
        let mut e = *e;
        match e.function {
            1 => {
                // EBX: APIC ID 0, one logical processor; CLFLUSH size and brand index kept.
                e.ebx = (e.ebx & 0x0000_ffff) | (1 << 16);
                // ECX: drop VMX(5), SMX(6), x2APIC(21), TSC-deadline(24); hypervisor(31) set.
                e.ecx &= !((1 << 5) | (1 << 6) | (1 << 21) | (1 << 24));
                e.ecx |= 1 << 31;
                // EDX: the local APIC (9) is there; no HTT (28).
                e.edx |= 1 << 9;
                e.edx &= !(1 << 28);
            }
            0x4000_0000 => {
                let [b, c, d] = crate::callouts::cpuid::SIGNATURE;
                (e.eax, e.ebx, e.ecx, e.edx) = (0x4000_0000, b, c, d);
            }
            // KVM's paravirtual feature leaves: not offered (see above).
            0x4000_0001..=0x4000_00ff => continue,
            0x8000_0001 => {
                // ECX: no SVM (2).
                e.ecx &= !(1 << 2);
            }
            _ => {}
        }
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    #[test]
    fn hides_what_the_userspace_apic_does_not_back() {
        let supported = [
            entry(1, 0x00a00f11, 0x0310_0800, 0xffff_ffff, 0xffff_ffff),
            entry(0x4000_0000, 0x4000_0001, 1, 2, 3),
            entry(0x4000_0001, 0xffff, 0, 0, 0),
            entry(0x8000_0001, 0, 0, 0xffff_ffff, 0),
        ];
        let got = filter(&supported);
        assert_eq!(got.len(), 3, "KVM's PV feature leaf is dropped");
        let l1 = got[0];
        assert_eq!(l1.ebx, 0x0001_0800);
        assert_eq!(l1.ecx & ((1 << 5) | (1 << 21) | (1 << 24)), 0);
        assert_ne!(l1.ecx & (1 << 31), 0);
        assert_eq!(l1.edx & (1 << 28), 0);
        let sig = got[1];
        assert_eq!(sig.eax, 0x4000_0000);
        let name: Vec<u8> = [sig.ebx, sig.ecx, sig.edx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        assert_eq!(&name, b"btvisorbtvis");
        assert_eq!(got[2].ecx & (1 << 2), 0);
    }
}
