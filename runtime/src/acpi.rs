//! ACPI tables for the PC machine: RSDP -> XSDT -> {FADT -> (FACS, DSDT), MADT}, written into
//! the BIOS area below 1 MiB where Linux also finds them by scanning (ACPI 6.4 §5.2.5.1: the
//! RSDP lies on a 16-byte boundary in 0xE0000-0xFFFFF on IA-PC systems).
//!
//! What Linux takes from them: the interrupt model (MADT: one local APIC, one I/O APIC, the ISA
//! overrides), the fixed-hardware PM registers (FADT: the ACPI PM timer as a clocksource, the
//! PM1 control register and `\_S5_` for power-off, the reset register for reboot) and the legacy
//! devices (DSDT: COM1, the CMOS RTC and the i8042 keyboard controller as PnP devices).
//!
//! The platform is *not* hardware-reduced (ACPI 6.4 §4.1): it has the fixed PM1 event/control
//! blocks and the PM timer at I/O ports 0x600-0x60B, SMI_CMD = 0 so ACPI mode is always on,
//! and a FACS (mandatory without HW_REDUCED_ACPI; ACPICA warns when it is missing).
//!
//! `acpi_tables` (the rust-vmm crate) builds the RSDP, XSDT, FADT, FACS, the MADT's processor
//! local APIC and I/O APIC entries and all AML; what it lacks (the MADT's interrupt source
//! override and local APIC NMI entries, and a way to set the MADT flags) is encoded here with
//! the spec section cited.

use acpi_tables::aml;
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags, PmProfile, FADT};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};

use crate::memory::GuestRam;

/// Where the RSDP goes; also what `boot_params.acpi_rsdp_addr` should say.
pub const RSDP_ADDR: u64 = 0xE_0000;
/// End (exclusive) of the BIOS area that holds all the tables.
pub const BIOS_AREA_END: u64 = 0x10_0000;

/// OEM ID of every table (ACPI 6.4 §5.2.6, Table 5.4: six characters).
pub const OEM_ID: [u8; 6] = *b"BTVSOR";
const OEM_TABLE_ID: [u8; 8] = *b"BTVISOR ";
const OEM_REVISION: u32 = 1;

/// The SCI: ISA IRQ 9, wired to I/O APIC pin 9, level-triggered active-high (see the MADT).
pub const SCI_IRQ: u16 = 9;
/// PM1a event block: PM1_STS (2 bytes) then PM1_EN (2 bytes), ACPI 6.4 §4.8.3.1.
pub const PM1A_EVT_PORT: u16 = 0x600;
pub const PM1_EVT_LEN: u8 = 4;
/// PM1a control block: PM1_CNT with SCI_EN (bit 0), SLP_TYP (bits 10-12), SLP_EN (bit 13),
/// ACPI 6.4 §4.8.3.2.1.
pub const PM1A_CNT_PORT: u16 = 0x604;
pub const PM1_CNT_LEN: u8 = 2;
/// The 3.579545 MHz ACPI PM timer, 32 bits wide (TMR_VAL_EXT), ACPI 6.4 §4.8.3.3.
pub const PM_TMR_PORT: u16 = 0x608;
pub const PM_TMR_LEN: u8 = 4;
/// SLP_TYP value of `\_S5_` (soft off): writing it with SLP_EN to PM1_CNT powers off.
pub const SLP_TYP_S5: u8 = 5;
/// The reset register: the PC's reset control register at 0xCF9, hard reset + reset CPU.
pub const RESET_PORT: u16 = 0xCF9;
pub const RESET_VALUE: u8 = 0x06;
/// CMOS index of the century byte (FADT CENTURY, ACPI 6.4 §5.2.9 Table 5.9).
pub const CMOS_CENTURY_INDEX: u8 = 0x32;

pub const LAPIC_ADDR: u32 = 0xFEE0_0000;
pub const IOAPIC_ADDR: u32 = 0xFEC0_0000;
/// I/O APIC id, distinct from the local APIC ids 0..num_cpus.
pub const IOAPIC_ID: u8 = 1;
/// The machine is uniprocessor: the tables describe at most this many CPUs.
pub const MAX_CPUS: u8 = 1;
/// The pvpanic device's ACPI id and I/O port (QEMU's docs/specs/pvpanic.rst).
pub const PVPANIC_HID: &str = "QEMU0001";
pub const PVPANIC_PORT: u16 = 0x505;

/// MADT revision 5 (ACPI 6.4 §5.2.12, Table 5.19).
const MADT_REVISION: u8 = 5;
/// DSDT revision 2: integers in AML are 64-bit (ACPI 6.4 §5.2.11.1).
const DSDT_REVISION: u8 = 2;
/// FACS version 2 (ACPI 6.4 §5.2.10, Table 5.14); `acpi_tables` defaults to 1.
const FACS_VERSION: u8 = 2;

/// What varies between machines; everything else is fixed by the PC model above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiConfig {
    /// Number of vCPUs, 1..=[`MAX_CPUS`]; CPU n has ACPI processor UID n and local APIC id n.
    pub num_cpus: u8,
}

impl Default for AcpiConfig {
    fn default() -> Self {
        AcpiConfig { num_cpus: 1 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcpiError {
    #[error("{0} vCPUs requested; the ACPI tables describe 1 to {MAX_CPUS}")]
    UnsupportedCpuCount(u8),
    #[error("ACPI tables end at {end:#x}, past the BIOS area's end {BIOS_AREA_END:#x}")]
    TooLarge { end: u64 },
    #[error("guest RAM does not cover the ACPI tables at {addr:#x}+{len:#x}")]
    OutOfRam { addr: u64, len: u64 },
}

/// Writes all tables and returns the guest-physical address of the RSDP ([`RSDP_ADDR`]).
///
/// Layout, each table 16-byte aligned (the FACS 64-byte aligned, ACPI 6.4 §5.2.10) in this
/// order from 0xE0000: RSDP, XSDT, FADT, FACS, DSDT, MADT; about 1 KiB in all.
pub fn write_tables(ram: &GuestRam, cfg: &AcpiConfig) -> Result<u64, AcpiError> {
    if cfg.num_cpus == 0 || cfg.num_cpus > MAX_CPUS {
        return Err(AcpiError::UnsupportedCpuCount(cfg.num_cpus));
    }

    let dsdt = dsdt();
    let madt = madt(cfg);

    let mut area = Placer {
        next: RSDP_ADDR + Rsdp::len() as u64,
    };
    let xsdt_addr = area.place(36 + 2 * 8, 16)?;
    let fadt_addr = area.place(FADT::len(), 16)?;
    let facs_addr = area.place(FACS::len(), 64)?;
    let dsdt_addr = area.place(dsdt.len(), 16)?;
    let madt_addr = area.place(madt.len(), 16)?;

    let fadt = fadt(facs_addr, dsdt_addr);
    let mut facs = FACS::new();
    facs.version = FACS_VERSION;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let rsdp = Rsdp::new(OEM_ID, xsdt_addr);

    put(ram, RSDP_ADDR, &bytes(&rsdp))?;
    put(ram, xsdt_addr, &bytes(&xsdt))?;
    put(ram, fadt_addr, &fadt)?;
    put(ram, facs_addr, &bytes(&facs))?;
    put(ram, dsdt_addr, dsdt.as_slice())?;
    put(ram, madt_addr, madt.as_slice())?;
    tracing::debug!(
        rsdp = RSDP_ADDR,
        xsdt = xsdt_addr,
        fadt = fadt_addr,
        facs = facs_addr,
        dsdt = dsdt_addr,
        madt = madt_addr,
        end = area.next,
        "ACPI tables written"
    );
    Ok(RSDP_ADDR)
}

/// Bump allocator over the BIOS area.
struct Placer {
    next: u64,
}

impl Placer {
    fn place(&mut self, len: usize, align: u64) -> Result<u64, AcpiError> {
        let addr = self.next.next_multiple_of(align);
        let end = addr + len as u64;
        if end > BIOS_AREA_END {
            return Err(AcpiError::TooLarge { end });
        }
        self.next = end;
        Ok(addr)
    }
}

fn put(ram: &GuestRam, addr: u64, data: &[u8]) -> Result<(), AcpiError> {
    if ram.write(addr, data) {
        Ok(())
    } else {
        Err(AcpiError::OutOfRam {
            addr,
            len: data.len() as u64,
        })
    }
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

/// Fixed ACPI Description Table, ACPI 6.4 §5.2.9 (Table 5.9), as `acpi_tables` lays it out:
/// revision 6.5, 276 bytes.
fn fadt(facs_addr: u64, dsdt_addr: u64) -> Vec<u8> {
    // Everything lives below 1 MiB, so the 32-bit pointers are exact.
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .preferred_pm_profile(PmProfile::Unspecified)
        // Only FIRMWARE_CTRL, as QEMU does: ACPICA warns when both it and X_FIRMWARE_CTRL are
        // set and differ, and needs only one.
        .firmware_ctrl_32(facs_addr as u32)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        // Set PWR_BUTTON / SLP_BUTTON = "no fixed-feature button" (ACPI 6.4 §4.8.2.2): the
        // machine has no power or sleep button.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::TmrValExt)
        .flag(Flags::ResetRegSup);
    // Both DSDT pointers, equal (ACPICA prefers X_DSDT and warns only if they differ).
    f.dsdt = (dsdt_addr as u32).into();
    f.x_dsdt = dsdt_addr.into();
    f.sci_int = SCI_IRQ.into();
    // SMI_CMD = 0: no SMM, the platform is always in ACPI mode (ACPI 6.4 §4.8.2.1), so
    // ACPI_ENABLE / ACPI_DISABLE stay 0.
    f.smi_cmd = 0.into();
    f.pm1a_evt_blk = u32::from(PM1A_EVT_PORT).into();
    f.pm1a_cnt_blk = u32::from(PM1A_CNT_PORT).into();
    f.pm_tmr_blk = u32::from(PM_TMR_PORT).into();
    f.pm1_evt_len = PM1_EVT_LEN;
    f.pm1_cnt_len = PM1_CNT_LEN;
    f.pm_tmr_len = PM_TMR_LEN;
    // No GPE blocks (GPE0_BLK = 0): ACPI does not require them and nothing raises a GPE.
    // Latencies above 100 / 1000 us mean C2 / C3 are not supported.
    f.p_lvl2_lat = 101.into();
    f.p_lvl3_lat = 1001.into();
    f.century = CMOS_CENTURY_INDEX;
    f.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    f.reset_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        RESET_PORT.into(),
    );
    f.reset_value = RESET_VALUE;
    // The X_ blocks carry the same ports with their widths (ACPICA warns on a 32/64X width
    // mismatch); access sizes follow the registers: PM1 status/enable/control are 16-bit,
    // the timer 32-bit.
    f.x_pm1a_evt_blk = io_gas(PM1A_EVT_PORT, PM1_EVT_LEN, AccessSize::WordAccess);
    f.x_pm1a_cnt_blk = io_gas(PM1A_CNT_PORT, PM1_CNT_LEN, AccessSize::WordAccess);
    f.x_pm_tmr_blk = io_gas(PM_TMR_PORT, PM_TMR_LEN, AccessSize::DwordAccess);
    bytes(&f.finalize())
}

/// IA-PC boot architecture flags, ACPI 6.4 §5.2.9.3 (Table 5.11).
mod iapc {
    /// Legacy (ISA/LPC) devices exist: the i8042, COM1, the RTC, the 8259s, the PIT.
    pub const LEGACY_DEVICES: u16 = 1 << 0;
    /// An 8042 (or equivalent) at ports 0x60/0x64; without it Linux skips the i8042.
    pub const I8042: u16 = 1 << 1;
    /// VGA is not present: the OS must not probe the VGA ports and memory.
    pub const VGA_NOT_PRESENT: u16 = 1 << 2;
    /// MSI must not be enabled. True and harmless: there is no PCI bus, so no MSI capable
    /// device (Linux logs that it disables MSI). Clear this when a PCI bus with MSI comes.
    pub const MSI_NOT_SUPPORTED: u16 = 1 << 3;
}
const IAPC_BOOT_ARCH: u16 =
    iapc::LEGACY_DEVICES | iapc::I8042 | iapc::VGA_NOT_PRESENT | iapc::MSI_NOT_SUPPORTED;

/// A System I/O generic address (ACPI 6.4 §5.2.3.2) for a `len`-byte register block.
fn io_gas(port: u16, len: u8, access: AccessSize) -> GAS {
    GAS::new(AddressSpace::SystemIo, len * 8, 0, access, port.into())
}

/// Multiple APIC Description Table, ACPI 6.4 §5.2.12 (Table 5.19).
///
/// Built on the crate's generic `Sdt` rather than its `MADT` type: that one can set neither
/// the flags nor add structures other than its own (they must be zerocopy types).
fn madt(cfg: &AcpiConfig) -> Sdt {
    /// Flags: PCAT_COMPAT, the system also has dual 8259s (ACPI 6.4 Table 5.20); Linux masks
    /// them when it switches to the I/O APIC.
    const PCAT_COMPAT: u32 = 1 << 0;

    let mut t = Sdt::new(
        *b"APIC",
        44,
        MADT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    t.write_u32(36, LAPIC_ADDR);
    t.write_u32(40, PCAT_COMPAT);

    let mut entries: Vec<u8> = Vec::new();
    for cpu in 0..cfg.num_cpus {
        ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled).to_aml_bytes(&mut entries);
    }
    IoApic::new(IOAPIC_ID, IOAPIC_ADDR, 0).to_aml_bytes(&mut entries);
    // The PIT's IRQ 0 is wired to I/O APIC pin 2 on every PC (pin 0 carries the 8259's
    // ExtINT); edge / active-high as ISA.
    InterruptSourceOverride {
        source: 0,
        gsi: 2,
        flags: mps_inti::ACTIVE_HIGH | mps_inti::EDGE,
    }
    .to_aml_bytes(&mut entries);
    // The SCI is level-triggered; active-high here (as QEMU), not the default active-low.
    InterruptSourceOverride {
        source: SCI_IRQ as u8,
        gsi: SCI_IRQ.into(),
        flags: mps_inti::ACTIVE_HIGH | mps_inti::LEVEL,
    }
    .to_aml_bytes(&mut entries);
    // NMI arrives on every local APIC's LINT1, as on a PC.
    LocalApicNmi {
        processor_uid: 0xFF,
        flags: 0,
        lint: 1,
    }
    .to_aml_bytes(&mut entries);
    t.append_slice(&entries);
    t
}

/// MPS INTI flags of the MADT's interrupt structures, ACPI 6.4 §5.2.12.5 (Table 5.26).
mod mps_inti {
    pub const ACTIVE_HIGH: u16 = 0b01;
    pub const EDGE: u16 = 0b01 << 2;
    pub const LEVEL: u16 = 0b11 << 2;
}

/// Interrupt Source Override structure on the ISA bus, ACPI 6.4 §5.2.12.5 (Table 5.25).
struct InterruptSourceOverride {
    source: u8,
    gsi: u32,
    flags: u16,
}

impl Aml for InterruptSourceOverride {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(2); // Type
        sink.byte(10); // Length
        sink.byte(0); // Bus: ISA
        sink.byte(self.source);
        sink.dword(self.gsi);
        sink.word(self.flags);
    }
}

/// Local APIC NMI structure, ACPI 6.4 §5.2.12.7 (Table 5.28).
struct LocalApicNmi {
    /// 0xFF: all processors.
    processor_uid: u8,
    flags: u16,
    /// Local APIC LINT# input the NMI is connected to.
    lint: u8,
}

impl Aml for LocalApicNmi {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(4); // Type
        sink.byte(6); // Length
        sink.byte(self.processor_uid);
        sink.word(self.flags);
        sink.byte(self.lint);
    }
}

/// `Device (name) { Name (_HID, EISAID (hid)) [Name (_UID, uid)] Name (_CRS, ResourceTemplate
/// () { resources }) }`, as AML bytes (ACPI 6.4 §6.1.5 _HID, §6.1.12 _UID, §6.2.2 _CRS).
fn pnp_device(name: &str, hid: &str, uid: Option<u8>, resources: &[&dyn Aml]) -> Vec<u8> {
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new(hid));
    let uid = uid.map(|u| aml::Name::new("_UID".into(), &u));
    let crs = aml::Name::new(
        "_CRS".into(),
        &aml::ResourceTemplate::new(resources.to_vec()),
    );
    let mut children: Vec<&dyn Aml> = vec![&hid];
    children.extend(uid.as_ref().map(|u| u as &dyn Aml));
    children.push(&crs);
    bytes(&aml::Device::new(name.into(), children))
}

/// Differentiated System Description Table, ACPI 6.4 §5.2.11.1:
///
/// ```text
/// Name (_S5, Package () { 5, 5, 0, 0 })   // SLP_TYPa, SLP_TYPb, reserved (§7.4.2)
/// Scope (\_SB) {
///     Device (COM1) { _HID PNP0501, _UID 1, _CRS { IO 0x3F8/8, IRQ 4 } }
///     Device (RTC0) { _HID PNP0B00,         _CRS { IO 0x70/2,  IRQ 8 } }
///     Device (KBD0) { _HID PNP0303,         _CRS { IO 0x60/1, IO 0x64/1, IRQ 1 } }
///     Device (PEVT) { _HID "QEMU0001",      _CRS { IO 0x505/1 } }   // pvpanic
/// }
/// ```
///
/// There is no PCI bus, hence no PCI root bridge (PNP0A03) and no `_PRT`: the ISA IRQs reach
/// the I/O APIC pins named by the MADT. There is no PS/2 mouse (PNP0F13) either: Linux's i8042
/// driver then warns "PS/2 appears to have AUX port disabled" and leaves the AUX port alone
/// (add a PNP0F13 device with IRQ 12 once the i8042 model has one).
fn dsdt() -> Sdt {
    let mut t = Sdt::new(
        *b"DSDT",
        36,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    let mut body = Vec::new();
    aml::Name::new(
        "_S5_".into(),
        &aml::Package::new(vec![&SLP_TYP_S5, &SLP_TYP_S5, &0u8, &0u8]),
    )
    .to_aml_bytes(&mut body);

    // Extended interrupt descriptors (ACPI 6.4 §6.4.3.6): consumer, edge, active-high,
    // exclusive, like the ISA IRQs they are.
    let irq = |n| aml::Interrupt::new(true, true, false, false, n);
    // IO port descriptors with 16-bit decode (ACPI 6.4 §6.4.2.5): min = max, alignment 1.
    let io = |port, len| aml::IO::new(port, port, 1, len);

    let mut devices = Vec::new();
    devices.extend(pnp_device(
        "COM1",
        "PNP0501",
        Some(1),
        &[&io(0x3F8, 8), &irq(4)],
    ));
    devices.extend(pnp_device(
        "RTC0",
        "PNP0B00",
        None,
        &[&io(0x70, 2), &irq(8)],
    ));
    // Linux's i8042 takes the data port from the first IO resource, the command port from
    // the second.
    devices.extend(pnp_device(
        "KBD0",
        "PNP0303",
        None,
        &[&io(0x60, 1), &io(0x64, 1), &irq(1)],
    ));
    // pvpanic (QEMU's docs/specs/pvpanic.rst): an ACPI id, not an EISA one, so a string _HID.
    // Linux's pvpanic driver writes "panicked" to its port, which stops the VM with an error.
    {
        let hid = aml::Name::new("_HID".into(), &PVPANIC_HID);
        let crs = aml::Name::new(
            "_CRS".into(),
            &aml::ResourceTemplate::new(vec![&io(PVPANIC_PORT, 1)]),
        );
        aml::Device::new("PEVT".into(), vec![&hid, &crs]).to_aml_bytes(&mut devices);
    }
    body.extend(aml::Scope::raw("\\_SB_".into(), devices));
    t.append_slice(&body);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram() -> GuestRam {
        GuestRam::new(64 << 20).expect("guest RAM")
    }

    fn read(ram: &GuestRam, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        assert!(ram.read(addr, &mut b), "read {addr:#x}+{len:#x}");
        b
    }

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    /// A whole SDT read by its header's length; checks signature, checksum and OEM id.
    fn table(ram: &GuestRam, addr: u64, sig: &[u8; 4]) -> Vec<u8> {
        let len = ram.read_u32(addr + 4).expect("header") as usize;
        let t = read(ram, addr, len);
        assert_eq!(&t[0..4], sig, "signature at {addr:#x}");
        assert_eq!(sum(&t), 0, "{} checksum", String::from_utf8_lossy(sig));
        assert_eq!(
            &t[10..16],
            b"BTVSOR",
            "{} OEM id",
            String::from_utf8_lossy(sig)
        );
        t
    }

    /// Every table's address by following the pointers from the RSDP, as an OS does.
    struct Found {
        rsdp: Vec<u8>,
        xsdt: (u64, Vec<u8>),
        fadt: (u64, Vec<u8>),
        facs: (u64, Vec<u8>),
        dsdt: (u64, Vec<u8>),
        madt: (u64, Vec<u8>),
    }

    fn walk(ram: &GuestRam) -> Found {
        let rsdp_addr = write_tables(ram, &AcpiConfig::default()).expect("tables");
        assert_eq!(rsdp_addr, 0xE0000);
        let rsdp = read(ram, rsdp_addr, 36);
        let xsdt_addr = u64_at(&rsdp, 24);
        let xsdt = table(ram, xsdt_addr, b"XSDT");
        let entries: Vec<u64> = (36..xsdt.len())
            .step_by(8)
            .map(|o| u64_at(&xsdt, o))
            .collect();
        assert_eq!(entries.len(), 2, "XSDT lists the FADT and the MADT");
        let fadt_addr = entries[0];
        let madt_addr = entries[1];
        let fadt = table(ram, fadt_addr, b"FACP");
        let madt = table(ram, madt_addr, b"APIC");
        let facs_addr = u64::from(u32_at(&fadt, 36));
        let facs = read(ram, facs_addr, 64);
        let dsdt_addr = u64_at(&fadt, 140);
        let dsdt = table(ram, dsdt_addr, b"DSDT");
        Found {
            rsdp,
            xsdt: (xsdt_addr, xsdt),
            fadt: (fadt_addr, fadt),
            facs: (facs_addr, facs),
            dsdt: (dsdt_addr, dsdt),
            madt: (madt_addr, madt),
        }
    }

    #[test]
    fn rsdp_is_revision_2_with_both_checksums_and_points_to_the_xsdt() {
        let ram = ram();
        let f = walk(&ram);
        // ACPI 6.4 §5.2.5.3, Table 5.3.
        assert_eq!(&f.rsdp[0..8], b"RSD PTR ");
        assert_eq!(sum(&f.rsdp[0..20]), 0, "ACPI 1.0 checksum over 20 bytes");
        assert_eq!(sum(&f.rsdp), 0, "extended checksum over 36 bytes");
        assert_eq!(&f.rsdp[9..15], b"BTVSOR");
        assert_eq!(f.rsdp[15], 2, "revision");
        assert_eq!(u32_at(&f.rsdp, 20), 36, "length");
        assert_eq!(
            u32_at(&f.rsdp, 16),
            0,
            "RsdtAddress: no RSDT, only the XSDT"
        );
        assert_eq!(f.rsdp[33..36], [0, 0, 0], "reserved");
        assert_eq!(f.xsdt.1[8], 1, "XSDT revision");
        assert_eq!(f.xsdt.1.len(), 36 + 16);
    }

    #[test]
    fn tables_are_disjoint_aligned_and_inside_the_bios_area() {
        let ram = ram();
        let f = walk(&ram);
        let mut spans = vec![
            (RSDP_ADDR, 36u64),
            (f.xsdt.0, f.xsdt.1.len() as u64),
            (f.fadt.0, f.fadt.1.len() as u64),
            (f.facs.0, 64),
            (f.dsdt.0, f.dsdt.1.len() as u64),
            (f.madt.0, f.madt.1.len() as u64),
        ];
        spans.sort();
        for &(a, l) in &spans {
            assert!(a >= 0xE0000 && a + l <= 0x100000, "{a:#x}+{l:#x}");
            assert_eq!(a % 16, 0, "{a:#x} aligned");
        }
        for w in spans.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0,
                "{:x?} overlaps {:x?}",
                w[0],
                w[1]
            );
        }
        assert_eq!(f.facs.0 % 64, 0, "FACS is 64-byte aligned");
    }

    #[test]
    fn fadt_fields_at_their_spec_offsets() {
        let ram = ram();
        let f = walk(&ram);
        let t = &f.fadt.1;
        // ACPI 6.4 §5.2.9, Table 5.9.
        assert_eq!(t.len(), 276);
        assert_eq!(t[8], 6, "FADT major revision");
        assert_eq!(t[131], 5, "FADT minor revision");
        assert_eq!(u32_at(t, 36), f.facs.0 as u32, "FIRMWARE_CTRL");
        assert_eq!(u32_at(t, 40), f.dsdt.0 as u32, "DSDT");
        assert_eq!(u64_at(t, 132), 0, "X_FIRMWARE_CTRL (FIRMWARE_CTRL used)");
        assert_eq!(u64_at(t, 140), f.dsdt.0, "X_DSDT");
        assert_eq!(u16_at(t, 46), 9, "SCI_INT");
        assert_eq!(u32_at(t, 48), 0, "SMI_CMD");
        assert_eq!((t[52], t[53]), (0, 0), "ACPI_ENABLE/DISABLE");
        assert_eq!(u32_at(t, 56), 0x600, "PM1a_EVT_BLK");
        assert_eq!(u32_at(t, 60), 0, "PM1b_EVT_BLK");
        assert_eq!(u32_at(t, 64), 0x604, "PM1a_CNT_BLK");
        assert_eq!(u32_at(t, 68), 0, "PM1b_CNT_BLK");
        assert_eq!(u32_at(t, 72), 0, "PM2_CNT_BLK");
        assert_eq!(u32_at(t, 76), 0x608, "PM_TMR_BLK");
        assert_eq!(u32_at(t, 80), 0, "GPE0_BLK");
        assert_eq!(
            (t[88], t[89], t[90], t[91]),
            (4, 2, 0, 4),
            "PM1_EVT/PM1_CNT/PM2_CNT/PM_TMR_LEN"
        );
        assert_eq!((t[92], t[93]), (0, 0), "GPE0/GPE1_BLK_LEN");
        assert!(u16_at(t, 96) > 100, "P_LVL2_LAT: no C2");
        assert!(u16_at(t, 98) > 1000, "P_LVL3_LAT: no C3");
        assert_eq!(t[108], 0x32, "CENTURY");
        assert_eq!(
            u16_at(t, 109),
            0b1111,
            "IAPC_BOOT_ARCH: legacy devices, 8042, no VGA, no MSI"
        );
        let flags = u32_at(t, 112);
        // WBINVD | PROC_C1 | PWR_BUTTON | SLP_BUTTON | TMR_VAL_EXT | RESET_REG_SUP.
        assert_eq!(flags, 1 | 1 << 2 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 10);
        assert_eq!(flags & 1 << 20, 0, "not HW_REDUCED_ACPI");
        // GAS: space, bit width, bit offset, access size, address (ACPI 6.4 §5.2.3.2).
        let gas = |o: usize| (t[o], t[o + 1], t[o + 2], t[o + 3], u64_at(t, o + 4));
        assert_eq!(gas(116), (1, 8, 0, 1, 0xCF9), "RESET_REG: I/O, byte");
        assert_eq!(t[128], 6, "RESET_VALUE");
        assert_eq!(gas(148), (1, 32, 0, 2, 0x600), "X_PM1a_EVT_BLK");
        assert_eq!(gas(160), (0, 0, 0, 0, 0), "X_PM1b_EVT_BLK");
        assert_eq!(gas(172), (1, 16, 0, 2, 0x604), "X_PM1a_CNT_BLK");
        assert_eq!(gas(184), (0, 0, 0, 0, 0), "X_PM1b_CNT_BLK");
        assert_eq!(gas(208), (1, 32, 0, 3, 0x608), "X_PM_TMR_BLK");
        assert_eq!(gas(220), (0, 0, 0, 0, 0), "X_GPE0_BLK");
        assert_eq!(
            gas(244),
            (0, 0, 0, 0, 0),
            "SLEEP_CONTROL_REG (not HW-reduced)"
        );

        // FACS, ACPI 6.4 §5.2.10, Table 5.14.
        let facs = &f.facs.1;
        assert_eq!(&facs[0..4], b"FACS");
        assert_eq!(u32_at(facs, 4), 64, "FACS length");
        assert_eq!(facs[32], 2, "FACS version");
    }

    #[test]
    fn madt_describes_one_lapic_one_ioapic_the_isa_overrides_and_lint1_nmi() {
        let ram = ram();
        let f = walk(&ram);
        let t = &f.madt.1;
        assert_eq!(t[8], 5, "MADT revision");
        assert_eq!(u32_at(t, 36), 0xFEE0_0000, "local APIC address");
        assert_eq!(u32_at(t, 40), 1, "flags: PCAT_COMPAT");
        let mut entries = Vec::new();
        let mut o = 44;
        while o < t.len() {
            let len = t[o + 1] as usize;
            assert!(len >= 2 && o + len <= t.len(), "entry at {o} length {len}");
            entries.push(t[o..o + len].to_vec());
            o += len;
        }
        assert_eq!(o, t.len(), "entries fill the table exactly");
        // ACPI 6.4 §5.2.12.2 / .3 / .5 / .7.
        let expected: Vec<Vec<u8>> = vec![
            vec![0, 8, 0, 0, 1, 0, 0, 0], // LAPIC: UID 0, id 0, enabled
            vec![1, 12, 1, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0], // IOAPIC 1 @FEC00000, GSI 0
            vec![2, 10, 0, 0, 2, 0, 0, 0, 0x05, 0], // ISA IRQ0 -> GSI2, edge high
            vec![2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0], // ISA IRQ9 -> GSI9, level high
            vec![4, 6, 0xFF, 0, 0, 1],    // LAPIC NMI: all CPUs, LINT1
        ];
        assert_eq!(entries, expected);
    }

    #[test]
    fn dsdt_holds_s5_and_the_legacy_devices() {
        let ram = ram();
        let f = walk(&ram);
        let t = &f.dsdt.1;
        assert_eq!(t[8], 2, "DSDT revision: 64-bit integers");
        let has = |needle: &[u8]| t.windows(needle.len()).any(|w| w == needle);
        // NameOp "_S5_" PackageOp PkgLength(8) NumElements(4) BytePrefix 5 BytePrefix 5
        // ZeroOp ZeroOp (ACPI 6.4 §20.2.5.1, §20.2.5.4, §20.2.3).
        assert!(has(&[
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0A, 5, 0x0A, 5, 0x00, 0x00
        ]));
        // ScopeOp ... "\_SB_".
        assert!(has(b"\\_SB_"));
        // _HIDs as EISA ids: DWordPrefix + compressed "PNP" (0x41D0) + product number.
        for (name, hid) in [
            (b"COM1", [0x05, 0x01]),
            (b"RTC0", [0x0B, 0x00]),
            (b"KBD0", [0x03, 0x03]),
        ] {
            assert!(has(name), "{}", String::from_utf8_lossy(name));
            assert!(has(&[
                b'_', b'H', b'I', b'D', 0x0C, 0x41, 0xD0, hid[0], hid[1]
            ]));
        }
        // IO(Decode16, min, max, align 1, len) and Interrupt(consumer, edge, high) {n}.
        let io = |p: u16, l: u8| {
            let [lo, hi] = p.to_le_bytes();
            [0x47, 0x01, lo, hi, lo, hi, 1, l]
        };
        let irq = |n: u8| [0x89, 0x06, 0x00, 0x03, 0x01, n, 0, 0, 0];
        assert!(has(&[&io(0x3F8, 8)[..], &irq(4)].concat()), "COM1 _CRS");
        assert!(has(&[&io(0x70, 2)[..], &irq(8)].concat()), "RTC _CRS");
        assert!(
            has(&[&io(0x60, 1)[..], &io(0x64, 1), &irq(1)].concat()),
            "KBD _CRS"
        );
        // No PCI root bridge: no "PNP0A03" EISA id (0x41D0 0x0A03) and no _PRT.
        assert!(!has(&[0x41, 0xD0, 0x0A, 0x03]));
        assert!(!has(b"_PRT"));
    }

    #[test]
    fn rejects_cpu_counts_it_cannot_describe() {
        let ram = ram();
        for n in [0, 2] {
            assert_eq!(
                write_tables(&ram, &AcpiConfig { num_cpus: n }),
                Err(AcpiError::UnsupportedCpuCount(n))
            );
        }
    }

    #[test]
    fn fails_cleanly_when_ram_does_not_reach_the_bios_area() {
        let ram = GuestRam::new(0x80000).expect("guest RAM");
        assert!(matches!(
            write_tables(&ram, &AcpiConfig::default()),
            Err(AcpiError::OutOfRam { addr: 0xE0000, .. })
        ));
    }

    /// The rust-osdev `acpi` crate as an independent parser: it finds the RSDP by the same
    /// BIOS-area scan Linux does, validates every checksum it touches and decodes the FADT
    /// and MADT its own way.
    mod oracle {
        use super::*;
        use ::acpi::address::{AccessSize as Acc, AddressSpace as Space};
        use ::acpi::fadt::Fadt;
        use ::acpi::madt::{Madt, MadtEntry};
        use ::acpi::rsdp::Rsdp as ParsedRsdp;
        use ::acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
        use std::ptr::NonNull;

        #[derive(Clone, Copy)]
        struct RamHandler<'a>(&'a GuestRam);

        impl AcpiHandler for RamHandler<'_> {
            unsafe fn map_physical_region<T>(
                &self,
                phys: usize,
                size: usize,
            ) -> PhysicalMapping<Self, T> {
                assert!(
                    self.0.contains(phys as u64, size as u64),
                    "map {phys:#x}+{size:#x}"
                );
                let ptr = self.0.host_ptr(phys as u64).expect("in RAM") as *mut T;
                // SAFETY: the range lies inside guest RAM (checked above), which outlives the
                // handler's borrow; the parser's types are packed, so any address is aligned.
                unsafe {
                    PhysicalMapping::new(phys, NonNull::new_unchecked(ptr), size, size, *self)
                }
            }

            fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
        }

        #[test]
        fn independent_parser_finds_the_tables_and_agrees() {
            let ram = ram();
            let rsdp = write_tables(&ram, &AcpiConfig::default()).expect("tables");
            let h = RamHandler(&ram);

            // SAFETY: the handler maps only guest RAM; the BIOS area lies inside it.
            let found =
                unsafe { ParsedRsdp::search_for_on_bios(h) }.expect("RSDP found by scanning");
            assert_eq!(found.physical_start() as u64, rsdp);

            // SAFETY: `rsdp` is where write_tables put a valid RSDP.
            let tables =
                unsafe { AcpiTables::from_rsdp(h, rsdp as usize) }.expect("RSDP/XSDT valid");
            assert_eq!(tables.revision(), 2);

            let fadt = tables.find_table::<Fadt>().expect("FADT");
            let tmr = fadt
                .pm_timer_block()
                .expect("PM timer GAS")
                .expect("PM timer present");
            assert_eq!(tmr.address_space, Space::SystemIo);
            assert_eq!((tmr.address, tmr.bit_width), (0x608, 32));
            assert!({ fadt.flags }.pm_timer_is_32_bit());
            assert!(!{ fadt.flags }.system_is_hw_reduced_acpi());
            assert!({ fadt.flags }.supports_system_reset_via_fadt());
            assert!({ fadt.flags }.power_button_is_control_method());
            assert!({ fadt.flags }.sleep_button_is_control_method());
            let arch = { fadt.iapc_boot_arch };
            assert!(arch.legacy_devices_are_accessible());
            assert!(arch.motherboard_implements_8042());
            assert!(arch.dont_probe_vga());
            let cnt = fadt.pm1a_control_block().expect("PM1a_CNT");
            assert_eq!(
                (cnt.address_space, cnt.address, cnt.bit_width),
                (Space::SystemIo, 0x604, 16)
            );
            let evt = fadt.pm1a_event_block().expect("PM1a_EVT");
            assert_eq!((evt.address, evt.bit_width), (0x600, 32));
            let reset = fadt.reset_register().expect("RESET_REG");
            assert_eq!(
                (
                    reset.address_space,
                    reset.address,
                    reset.bit_width,
                    reset.access_size
                ),
                (Space::SystemIo, 0xCF9, 8, Acc::ByteAccess)
            );
            assert_eq!({ fadt.reset_value }, 6);
            assert_eq!({ fadt.sci_interrupt }, 9);
            assert_eq!({ fadt.century }, 0x32);
            let facs = fadt.facs_address().expect("FACS");
            assert_eq!(
                ram.read_u32(facs as u64),
                Some(u32::from_le_bytes(*b"FACS"))
            );

            let dsdt = tables.dsdt().expect("DSDT");
            assert_eq!(
                dsdt.address,
                fadt.dsdt_address().expect("DSDT pointer") + 36
            );
            assert!(dsdt.length > 0);

            let madt = tables.find_table::<Madt>().expect("MADT");
            assert!(madt.get().supports_8259());
            assert_eq!({ madt.get().local_apic_address }, 0xFEE0_0000);
            let (mut lapics, mut ioapics, mut overrides, mut nmis) =
                (vec![], vec![], vec![], vec![]);
            for e in madt.get().entries() {
                match e {
                    MadtEntry::LocalApic(l) => {
                        lapics.push((l.processor_id, l.apic_id, { l.flags }))
                    }
                    MadtEntry::IoApic(i) => ioapics.push((i.io_apic_id, { i.io_apic_address }, {
                        i.global_system_interrupt_base
                    })),
                    MadtEntry::InterruptSourceOverride(o) => {
                        overrides.push((o.bus, o.irq, { o.global_system_interrupt }, { o.flags }))
                    }
                    MadtEntry::LocalApicNmi(n) => {
                        nmis.push((n.processor_id, { n.flags }, n.nmi_line))
                    }
                    other => panic!("unexpected MADT entry {other:?}"),
                }
            }
            assert_eq!(lapics, [(0, 0, 1)]);
            assert_eq!(ioapics, [(1, 0xFEC0_0000, 0)]);
            assert_eq!(overrides, [(0, 0, 2, 0x5), (0, 9, 9, 0xD)]);
            assert_eq!(nmis, [(0xFF, 0, 1)]);
        }
    }
}
