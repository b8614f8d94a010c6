//! Multiboot v1 loader for kernels in an ELF32 container (the format of QEMU's `-kernel` and of
//! kvm-unit-tests). Multiboot Specification 0.6.96: the header must be in the first 8192 bytes,
//! 4-byte aligned; the kernel is entered in 32-bit protected mode with paging off, flat
//! segments, EAX = 0x2BADB002 and EBX = the physical address of the multiboot information.

use crate::memory::GuestRam;
use btvisor_translator::cpu::{cr, CpuState, TableReg};
use goblin::elf::{program_header::PT_LOAD, Elf};

pub const MULTIBOOT_MAGIC: u32 = 0x1BAD_B002;
pub const MULTIBOOT_BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}: not an ELF file ({1})")]
    NotElf(String, String),
    #[error(
        "{0}: not a 32-bit ELF (multiboot kernels are ELF32; convert with objcopy -O elf32-i386)"
    )]
    NotElf32(String),
    #[error("{0}: no multiboot header in the first 8 KiB")]
    NoMultibootHeader(String),
    #[error("{0}: multiboot header flags {1:#x} ask for features this loader does not provide")]
    UnsupportedFlags(String, u32),
    #[error("{0}: segment at {1:#x}+{2:#x} lies outside guest RAM ({3:#x} bytes)")]
    SegmentOutsideRam(String, u64, u64, u64),
    #[error(
        "{0}: segment data at file offset {1:#x}+{2:#x} runs past the end of the file ({3} bytes)"
    )]
    Truncated(String, u64, u64, usize),
    #[error("{0}: no loadable segments")]
    NoSegments(String),
    #[error("command line is too long ({0} bytes, at most 4095)")]
    CmdlineTooLong(usize),
}

/// Where the loader puts its own structures: below the usual 1 MiB kernel load address.
const INFO_ADDR: u64 = 0x9000;
const MMAP_ADDR: u64 = 0x9100;
const CMDLINE_ADDR: u64 = 0xa000;
const GDT_ADDR: u64 = 0x8000;

/// Find the multiboot header: magic, flags, checksum summing to zero.
fn find_header(image: &[u8]) -> Option<(usize, u32)> {
    let end = image.len().min(8192);
    let word = |i: usize| {
        image
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    (0..end.saturating_sub(11)).step_by(4).find_map(|off| {
        let (magic, flags, sum) = (word(off)?, word(off + 4)?, word(off + 8)?);
        (magic == MULTIBOOT_MAGIC && magic.wrapping_add(flags).wrapping_add(sum) == 0)
            .then_some((off, flags))
    })
}

/// Load `image` into RAM and set up `cpu` for the multiboot entry.
pub fn load(
    name: &str,
    image: &[u8],
    cmdline: &str,
    ram: &GuestRam,
    cpu: &mut CpuState,
) -> Result<(), LoadError> {
    let elf = Elf::parse(image).map_err(|e| LoadError::NotElf(name.into(), e.to_string()))?;
    if elf.is_64 {
        return Err(LoadError::NotElf32(name.into()));
    }
    let (_, flags) = find_header(image).ok_or_else(|| LoadError::NoMultibootHeader(name.into()))?;
    // Bit 2 (video mode) and bit 16 (a.out kludge addresses) are not provided; unknown required
    // bits (0..15) make the loader refuse, as the specification demands.
    if flags & 0xffff & !0x3 != 0 {
        return Err(LoadError::UnsupportedFlags(name.into(), flags));
    }
    if cmdline.len() > 4095 {
        return Err(LoadError::CmdlineTooLong(cmdline.len()));
    }
    let mut loaded = 0;
    for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD) {
        let (paddr, memsz, filesz, off) = (ph.p_paddr, ph.p_memsz, ph.p_filesz, ph.p_offset);
        if memsz == 0 {
            continue;
        }
        if filesz > memsz || !ram.contains(paddr, memsz) || paddr < 0x1_0000 {
            return Err(LoadError::SegmentOutsideRam(
                name.into(),
                paddr,
                memsz,
                ram.size(),
            ));
        }
        let end = off
            .checked_add(filesz)
            .filter(|&e| e as usize <= image.len());
        let Some(end) = end else {
            return Err(LoadError::Truncated(name.into(), off, filesz, image.len()));
        };
        ram.write(paddr, &image[off as usize..end as usize]);
        ram.write(paddr + filesz, &vec![0u8; (memsz - filesz) as usize]);
        loaded += 1;
    }
    if loaded == 0 {
        return Err(LoadError::NoSegments(name.into()));
    }
    write_info(ram, cmdline);
    setup_cpu(ram, cpu, elf.entry);
    Ok(())
}

/// The multiboot information structure (spec 3.3): memory bounds, command line, memory map.
fn write_info(ram: &GuestRam, cmdline: &str) {
    let mut cl = cmdline.as_bytes().to_vec();
    cl.push(0);
    ram.write(CMDLINE_ADDR, &cl);
    // Memory map entries: size(4) base(8) length(8) type(4).
    let regions = [
        (0u64, 0x9_fc00u64, 1u32),
        (0x9_fc00, 0x400, 2),
        (0xf_0000, 0x1_0000, 2),
        (0x10_0000, ram.size() - 0x10_0000, 1),
    ];
    let mut mmap = Vec::new();
    for (base, len, typ) in regions {
        mmap.extend_from_slice(&20u32.to_le_bytes());
        mmap.extend_from_slice(&base.to_le_bytes());
        mmap.extend_from_slice(&len.to_le_bytes());
        mmap.extend_from_slice(&typ.to_le_bytes());
    }
    ram.write(MMAP_ADDR, &mmap);
    let mut info = [0u32; 22];
    info[0] = (1 << 0) | (1 << 2) | (1 << 6); // mem_lower/upper, cmdline, mmap
    info[1] = 639; // KiB below 1 MiB
    info[2] = ((ram.size() - 0x10_0000) / 1024) as u32;
    info[4] = CMDLINE_ADDR as u32;
    info[11] = mmap.len() as u32;
    info[12] = MMAP_ADDR as u32;
    let bytes: Vec<u8> = info.iter().flat_map(|w| w.to_le_bytes()).collect();
    ram.write(INFO_ADDR, &bytes);
}

/// The machine state at the multiboot entry (spec 3.2): flat 4 GiB code and data segments,
/// protected mode, paging off, interrupts off. A GDT with those descriptors is placed in RAM
/// so that a kernel reloading segment registers before its own LGDT still finds them.
pub fn setup_cpu(ram: &GuestRam, cpu: &mut CpuState, entry: u64) {
    let gdt = [0, 0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    super::load_boot_segments(ram, cpu, GDT_ADDR, &gdt, 0xc09b, 0xc093);
    cpu.idtr = TableReg {
        base: 0,
        limit: 0x3ff,
    };
    cpu.cr0 = cr::CR0_PE | cr::CR0_ET;
    cpu.set_rflags(0x2);
    cpu.rip = entry;
    cpu.gpr[0] = MULTIBOOT_BOOTLOADER_MAGIC as u64;
    cpu.gpr[3] = INFO_ADDR;
}
