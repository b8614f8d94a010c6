# PAE paging in 32-bit protected mode (CR4.PAE, 3 levels, 2 MiB and 4 KiB pages) with EFER.NXE:
# fetching from an NX page (2 MiB and 4 KiB) raises #PF with error code bit 4 (I/D), while a data
# read of it and an execute alias without NX work; an instruction fetch from a not-present page
# also sets I/D; Accessed/Dirty in a 2 MiB PDE; PAE writes through a 4 KiB alias.
# Linear layout: 0-2 MiB identity (4 KiB pages, 0x1f0000 NX, 0x1f1000 not present),
# 2-4 MiB identity (2 MiB page), 4-6 MiB -> phys 4 MiB NX (2 MiB page),
# 6-8 MiB -> phys 4 MiB executable alias, 8-10 MiB -> phys 8 MiB (A/D test).
# expect-exit: 1
.include "multiboot.inc"
.include "serial32.inc"
.include "util32.inc"
.include "idt32.inc"

.set PG_P, 0x001
.set PG_RW, 0x002
.set PG_A, 0x020
.set PG_D, 0x040
.set PG_PS, 0x080
.set NX_HI, 0x80000000               # bit 63 in the high dword

.section .data
saved_esp: .long 0
code_bytes:                          # mov $0x42, %eax; ret
    mov $0x42, %eax
    ret
code_end:

.section .text
.globl _start
_start:
    mov $stack_top, %esp
    call gdt_init
    call idt_init
    PUTS "pae32\n"
    # PT0: identity 0-2 MiB in 4 KiB pages
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    or $(PG_P | PG_RW), %eax
    mov %eax, pt0(,%ecx,8)
    movl $0, pt0+4(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jb 1b
    movl $NX_HI, pt0 + 0x1f0 * 8 + 4    # 0x1f0000: NX
    movl $0, pt0 + 0x1f1 * 8            # 0x1f1000: not present
    movl $pt0 + (PG_P | PG_RW), pd0
    movl $0x200000 + (PG_P | PG_RW | PG_PS), pd0 + 8
    movl $0x400000 + (PG_P | PG_RW | PG_PS), pd0 + 16
    movl $NX_HI, pd0 + 20
    movl $0x400000 + (PG_P | PG_RW | PG_PS), pd0 + 24
    movl $0x800000 + (PG_P | PG_RW | PG_PS), pd0 + 32
    movl $pd0 + PG_P, pdpt               # PDPTEs have no R/W or U/S bits
    # copy the test routine to phys 0x400000 and 0x1f0000 (paging still off)
    mov $code_bytes, %esi
    mov $0x400000, %edi
    mov $(code_end - code_bytes), %ecx
    rep movsb
    mov $code_bytes, %esi
    mov $0x1f0000, %edi
    mov $(code_end - code_bytes), %ecx
    rep movsb
    # EFER.NXE, CR4.PAE, CR3, CR0.PG
    mov $0xC0000080, %ecx
    rdmsr
    or $0x800, %eax
    wrmsr
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $pdpt, %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80010000, %eax
    mov %eax, %cr0
    PUTS "pae paging on\n"
    mov %cr4, %eax
    and $0x30, %eax
    PUTHEX "cr4_pae_pse", %eax
    mov $0xC0000080, %ecx
    rdmsr
    and $0xD00, %eax                 # NXE, LMA, LME
    PUTHEX "efer", %eax

    # executable alias of the NX page works
    mov $0x600000, %eax
    call *%eax
    PUTHEX "call_alias", %eax
    # data read from the NX page works
    mov 0x400000, %eax
    PUTHEX "read_nx", %eax
    # fetch from the 2 MiB NX page
    mov %esp, saved_esp
    EXPECT_FAULT 1f
    mov $0x400000, %eax
    call *%eax
1:  mov saved_esp, %esp
    REPORT "nx_2m", 0x400000
    PUTHEX "cr2", exc_cr2
    # fetch from the 4 KiB NX page
    EXPECT_FAULT 1f
    mov $0x1f0000, %eax
    call *%eax
1:  mov saved_esp, %esp
    REPORT "nx_4k", 0x1f0000
    PUTHEX "cr2", exc_cr2
    # fetch from a not-present page (I/D is reported because NXE = 1)
    EXPECT_FAULT 1f
    mov $0x1f1000, %eax
    call *%eax
1:  mov saved_esp, %esp
    REPORT "fetch_np", 0x1f1000
    PUTHEX "cr2", exc_cr2
    # data write to a not-present page
    EXPECT_FAULT 1f
pf_w:
    movl $1, 0x1f1010
1:  REPORT "write_np", pf_w
    PUTHEX "cr2", exc_cr2
    # clear NX on the 4 KiB PTE, invlpg: now it executes
    movl $0, pt0 + 0x1f0 * 8 + 4
    invlpg 0x1f0000
    mov $0x1f0000, %eax
    call *%eax
    PUTHEX "call_after_clear_nx", %eax
    # Accessed / Dirty in a 2 MiB PDE
    mov pd0 + 32, %eax
    and $(PG_A | PG_D), %eax
    PUTHEX "pde2m_ad_initial", %eax
    mov 0x800100, %eax
    mov pd0 + 32, %eax
    and $(PG_A | PG_D), %eax
    PUTHEX "pde2m_ad_read", %eax
    movl $7, 0x800100
    mov pd0 + 32, %eax
    and $(PG_A | PG_D), %eax
    PUTHEX "pde2m_ad_write", %eax
    mov pd0 + 36, %eax
    PUTHEX "pde2m_high", %eax
    # 4 KiB PTE accessed/dirty for the page we wrote code into (before paging: none)
    mov pt0 + 0x1f0 * 8, %eax
    and $(PG_A | PG_D), %eax
    PUTHEX "pte_1f0_ad", %eax
    PUTHEX "exc_count", exc_count
    PUTS "done\n"
    mov $0, %al
    call exit

.section .bss
.align 4096
pd0:  .skip 4096
pt0:  .skip 4096
pdpt: .skip 32
.align 16
    .skip 8192
stack_top:
