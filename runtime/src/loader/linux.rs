//! The Linux x86-64 boot protocol (Documentation/arch/x86/boot.rst, "64-bit boot protocol"):
//! a bzImage or an ELF vmlinux loaded through linux-loader, the zero page (`boot_params` with
//! the setup header, the e820 map, the command line, the initrd), identity-mapped page tables,
//! and the vCPU in long mode at the kernel's 64-bit entry with RSI pointing at the zero page.
//!
//! Guest-physical layout below 1 MiB (the rest of that range is reserved for ACPI tables):
//!
//! | address           | what                                                     |
//! |-------------------|----------------------------------------------------------|
//! | 0x0500            | boot GDT (`__BOOT_CS` = 0x10, `__BOOT_DS` = 0x18)         |
//! | 0x7000            | zero page (`struct boot_params`)                          |
//! | 0x8ff0            | initial stack top (the protocol needs none; harmless)     |
//! | 0x9000            | PML4; 0xA000 PDPT; 0xB000-0xEFFF four page directories    |
//! | 0x20000           | command line                                             |
//! | 0x9fc00-0xfffff   | reserved (EBDA, ACPI tables, BIOS area)                  |
//!
//! The kernel goes where its header asks (bzImage: `code32_start`, 1 MiB; vmlinux: its
//! physical load addresses); the initrd goes at the top of RAM below `initrd_addr_max`.

use crate::memory::GuestRam;
use btvisor_translator::cpu::{cr, CpuState, TableReg};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{BzImage, Elf, KernelLoader, KernelLoaderResult};
use vm_memory::{Address, GuestAddress};

pub const GDT_ADDR: u64 = 0x500;
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
pub const BOOT_STACK_TOP: u64 = 0x8ff0;
pub const PML4_ADDR: u64 = 0x9000;
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Longest command line accepted (the kernel's COMMAND_LINE_SIZE on x86 is 2048).
pub const CMDLINE_MAX: usize = 2047;
/// Start of the reserved area below 1 MiB (EBDA, ACPI tables, BIOS ROM).
pub const LOW_RESERVED_START: u64 = 0x9_fc00;
pub const HIGH_MEMORY_START: u64 = 0x10_0000;
/// Identity map of the first 4 GiB with 2 MiB pages: everything the kernel, the zero page and
/// the initrd can occupy (RAM ends below 3 GiB).
const IDENTITY_MAP_BYTES: u64 = 4 << 30;

/// `setup_header.type_of_loader`: 0xff, "undefined loader" (boot.rst).
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `loadflags` bit: the protected-mode kernel is loaded at 0x100000.
const LOADED_HIGH: u8 = 1 << 0;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const HDRS_MAGIC: u32 = 0x5372_6448; // "HdrS"
const BOOT_FLAG: u16 = 0xaa55;

#[derive(Debug, thiserror::Error)]
pub enum LinuxLoadError {
    #[error("{0}: not a Linux bzImage or ELF vmlinux: {1}")]
    BadKernel(String, String),
    #[error("{0}: the kernel's boot protocol {1:#x} is older than 2.12 (no 64-bit entry)")]
    OldProtocol(String, u16),
    #[error("command line is too long ({0} bytes, at most {CMDLINE_MAX})")]
    CmdlineTooLong(usize),
    #[error("{0}: the initrd ({1} bytes) does not fit in guest RAM above the kernel")]
    InitrdTooBig(String, usize),
    #[error("guest RAM ({0} MiB) is too small for a Linux kernel (at least 32 MiB)")]
    RamTooSmall(u64),
    #[error("cannot write the boot information: {0}")]
    Boot(String),
    #[error(transparent)]
    Memory(#[from] crate::memory::MemoryError),
}

/// What the caller passes in.
#[derive(Clone, Copy)]
pub struct LinuxBoot<'a> {
    pub name: &'a str,
    pub kernel: &'a [u8],
    pub initrd: Option<(&'a str, &'a [u8])>,
    pub cmdline: &'a str,
    /// Guest-physical address of the ACPI RSDP, if the machine has ACPI tables.
    pub acpi_rsdp: Option<u64>,
}

/// Is this image a bzImage (the setup header's "HdrS" magic at 0x202)?
pub fn is_bzimage(image: &[u8]) -> bool {
    image
        .get(0x202..0x206)
        .is_some_and(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]) == HDRS_MAGIC)
}

/// Is this image a 64-bit ELF (a vmlinux)?
pub fn is_elf64(image: &[u8]) -> bool {
    image.len() > 4 && &image[..4] == b"\x7fELF" && image[4] == 2
}

/// Load a Linux kernel and set the vCPU up at its 64-bit entry point.
pub fn load(ram: &GuestRam, cpu: &mut CpuState, boot: &LinuxBoot) -> Result<(), LinuxLoadError> {
    if ram.size() < 32 << 20 {
        return Err(LinuxLoadError::RamTooSmall(ram.size() >> 20));
    }
    if boot.cmdline.len() > CMDLINE_MAX || boot.cmdline.contains('\0') {
        return Err(LinuxLoadError::CmdlineTooLong(boot.cmdline.len()));
    }
    let mem = ram.guest_memory()?;
    let bad = |e: String| LinuxLoadError::BadKernel(boot.name.into(), e);
    let mut image = std::io::Cursor::new(boot.kernel);
    let high = Some(GuestAddress(HIGH_MEMORY_START));
    let (loaded, entry): (KernelLoaderResult, u64) = if is_bzimage(boot.kernel) {
        let r = BzImage::load(&mem, None, &mut image, high).map_err(|e| bad(e.to_string()))?;
        // startup_64 sits 0x200 bytes into the protected-mode code (boot.rst, 64-bit protocol).
        let entry = r.kernel_load.raw_value() + 0x200;
        (r, entry)
    } else if is_elf64(boot.kernel) {
        let r = Elf::load(&mem, None, &mut image, high).map_err(|e| bad(e.to_string()))?;
        let entry = r.kernel_load.raw_value();
        (r, entry)
    } else {
        return Err(bad("no setup header magic and no ELF64 header".into()));
    };

    let mut params = boot_params::default();
    if let Some(hdr) = loaded.setup_header {
        if hdr.version < 0x020c {
            return Err(LinuxLoadError::OldProtocol(boot.name.into(), hdr.version));
        }
        params.hdr = hdr;
    } else {
        // An ELF vmlinux carries no setup header: write the fields the kernel reads.
        params.hdr.boot_flag = BOOT_FLAG;
        params.hdr.header = HDRS_MAGIC;
        params.hdr.version = 0x020f;
        params.hdr.kernel_alignment = 0x100_0000;
    }
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.loadflags |= LOADED_HIGH;
    params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    params.hdr.cmdline_size = boot.cmdline.len() as u32 + 1;
    let mut cmdline = boot.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    ram.write(CMDLINE_ADDR, &cmdline);

    if let Some((initrd_name, initrd)) = boot.initrd {
        let kernel_end = loaded.kernel_end;
        let max = if params.hdr.initrd_addr_max != 0 {
            u64::from(params.hdr.initrd_addr_max)
        } else {
            0x37ff_ffff
        };
        let top = ram.size().min(max + 1);
        let size = initrd.len() as u64;
        let start = top
            .checked_sub(size)
            .map(|s| s & !0xfff)
            .filter(|&s| s >= kernel_end && s >= HIGH_MEMORY_START)
            .ok_or_else(|| LinuxLoadError::InitrdTooBig(initrd_name.into(), initrd.len()))?;
        ram.write(start, initrd);
        params.hdr.ramdisk_image = start as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    if let Some(rsdp) = boot.acpi_rsdp {
        params.acpi_rsdp_addr = rsdp;
    }
    let e820 = [
        (0, LOW_RESERVED_START, E820_RAM),
        (
            LOW_RESERVED_START,
            HIGH_MEMORY_START - LOW_RESERVED_START,
            E820_RESERVED,
        ),
        (HIGH_MEMORY_START, ram.size() - HIGH_MEMORY_START, E820_RAM),
    ];
    for (i, (addr, size, type_)) in e820.into_iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr,
            size,
            r#type: type_,
        };
    }
    params.e820_entries = e820.len() as u8;
    LinuxBootConfigurator::write_bootparams::<vm_memory::GuestMemoryMmap>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_ADDR)),
        &mem,
    )
    .map_err(|e| LinuxLoadError::Boot(e.to_string()))?;
    tracing::debug!(
        target: "btvisor::loader",
        "linux: kernel at {:#x}..{:#x}, entry {entry:#x}, initrd {:#x}+{:#x}",
        loaded.kernel_load.raw_value(),
        loaded.kernel_end,
        { params.hdr.ramdisk_image },
        { params.hdr.ramdisk_size }
    );

    write_page_tables(ram);
    setup_long_mode(ram, cpu, entry);
    Ok(())
}

/// Identity-map the first 4 GiB with 2 MiB pages: PML4[0] -> PDPT, PDPT[0..4] -> four PDs.
fn write_page_tables(ram: &GuestRam) {
    const P_RW: u64 = 0x3; // present, writable
    const PS: u64 = 0x80; // 2 MiB page
    let pdpt = PML4_ADDR + 0x1000;
    let pd0 = PML4_ADDR + 0x2000;
    ram.write(PML4_ADDR, &[0; 0x1000]);
    ram.write_u64(PML4_ADDR, pdpt | P_RW);
    ram.write(pdpt, &[0; 0x1000]);
    let pds = IDENTITY_MAP_BYTES >> 30;
    for i in 0..pds {
        ram.write_u64(pdpt + i * 8, (pd0 + i * 0x1000) | P_RW);
        for j in 0..512u64 {
            let phys = (i << 30) | (j << 21);
            ram.write_u64(pd0 + i * 0x1000 + j * 8, phys | P_RW | PS);
        }
    }
}

/// Long mode, paging on with the identity map, flat 64-bit code and data segments from a boot
/// GDT, interrupts off (boot.rst: "the CPU must be in 64-bit mode with paging enabled ...
/// __BOOT_CS and __BOOT_DS ... interrupts disabled").
fn setup_long_mode(ram: &GuestRam, cpu: &mut CpuState, entry: u64) {
    let gdt = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    super::load_boot_segments(ram, cpu, GDT_ADDR, &gdt, 0xa09b, 0xc093);
    cpu.idtr = TableReg { base: 0, limit: 0 };
    cpu.cr3 = PML4_ADDR;
    cpu.cr4 = cr::CR4_PAE;
    cpu.efer = cr::EFER_LME | cr::EFER_LMA;
    cpu.cr0 = cr::CR0_PE | cr::CR0_ET | cr::CR0_NE | cr::CR0_PG;
    cpu.set_rflags(0x2);
    cpu.rip = entry;
    cpu.gpr[4] = BOOT_STACK_TOP;
    cpu.gpr[6] = ZERO_PAGE_ADDR;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_and_tiny_ram() {
        let ram = GuestRam::new(64 << 20).unwrap();
        let mut cpu = CpuState::new();
        let boot = LinuxBoot {
            name: "junk",
            kernel: &[0u8; 4096],
            initrd: None,
            cmdline: "",
            acpi_rsdp: None,
        };
        assert!(matches!(
            load(&ram, &mut cpu, &boot),
            Err(LinuxLoadError::BadKernel(..))
        ));
        let small = GuestRam::new(16 << 20).unwrap();
        assert!(matches!(
            load(&small, &mut cpu, &boot),
            Err(LinuxLoadError::RamTooSmall(16))
        ));
    }

    #[test]
    fn page_tables_identity_map_low_memory() {
        let ram = GuestRam::new(64 << 20).unwrap();
        write_page_tables(&ram);
        let pml4e = ram.read_u64(PML4_ADDR).unwrap();
        let pdpte = ram.read_u64(pml4e & !0xfff).unwrap();
        let pde = ram.read_u64((pdpte & !0xfff) + 8 * 8).unwrap();
        assert_eq!(pde, (8 << 21) | 0x83);
    }
}
